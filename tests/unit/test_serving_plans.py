"""Which engines a deployment's route holds (lapis.serving.plans): residency
by SKU, own region first, simulators where nothing is registered."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from lapis.backends.simulator import SimulatorBackend
from lapis.catalog import load_catalogue
from lapis.dataplane.directory import DeploymentEntry, Directory
from lapis.ratelimit.policy import limits_for
from lapis.serving.balancer import Balancer
from lapis.serving.breaker import MemoryBreakerBoard
from lapis.serving.faults import FaultBoard
from lapis.serving.plans import Serving
from lapis.serving.specs import BackendSpec

CATALOGUE = load_catalogue()


def serving(*regions: str) -> Serving:
    services = SimpleNamespace(catalogue=CATALOGUE, backend=SimulatorBackend(), directory=Directory())
    s = Serving(services, Balancer(MemoryBreakerBoard(), FaultBoard()))
    s.specs = {f"{r}-engine": BackendSpec(f"{r}-engine", r, "gpt-4o-mini", "openai-compatible", url="http://x/v1")
               for r in regions}
    s.engines = {i: SimulatorBackend() for i in s.specs}
    return s


def deployment(sku: str) -> DeploymentEntry:
    model = CATALOGUE.model("gpt-4o-mini")
    return DeploymentEntry("d", model, model.version(), sku, 10, limits_for(model, sku, 10))


def placed(members) -> set[tuple[str, str, int]]:
    return {(m.key, m.region, m.priority) for m in members}


def test_standard_uses_only_its_own_regions_engines() -> None:
    s = serving("eastus", "westus", "westeurope")
    assert placed(s.engines_for("eastus", deployment("Standard"))) == {("backend:eastus-engine", "eastus", 1)}


def test_data_zone_uses_its_zone_own_region_first() -> None:
    s = serving("eastus", "westus", "westeurope")
    assert placed(s.engines_for("eastus", deployment("DataZoneStandard"))) == {
        ("backend:eastus-engine", "eastus", 1), ("backend:westus-engine", "westus", 2)}


def test_global_uses_every_region() -> None:
    s = serving("eastus", "westeurope")
    assert placed(s.engines_for("westus", deployment("GlobalStandard"))) == {
        ("backend:eastus-engine", "eastus", 2), ("backend:westeurope-engine", "westeurope", 2)}


def test_without_registered_engines_the_region_simulators_serve() -> None:
    s = serving()
    assert placed(s.engines_for("eastus", deployment("Standard"))) == {("sim:eastus", "eastus", 1)}
    members = s.engines_for("eastus", deployment("GlobalStandard"))
    assert ("sim:eastus", "eastus", 1) in placed(members)
    assert len(members) > 2 and all(m.priority == 2 for m in members if m.region != "eastus")


def test_a_registered_engine_elsewhere_keeps_a_standard_deployment_on_its_simulator() -> None:
    s = serving("westus")
    assert placed(s.engines_for("eastus", deployment("Standard"))) == {("sim:eastus", "eastus", 1)}


def test_other_models_engines_are_not_used() -> None:
    s = serving("eastus")
    s.specs = {k: dataclasses.replace(v, model="gpt-4o") for k, v in s.specs.items()}
    assert placed(s.engines_for("eastus", deployment("Standard"))) == {("sim:eastus", "eastus", 1)}
