"""Which regions may serve a deployment (lapis.serving.residency)."""

from __future__ import annotations

from lapis.serving.residency import DATA_ZONES, allowed_regions, zone_of

ALL = frozenset({"eastus", "westus", "swedencentral", "westeurope", "japaneast"})


def test_standard_and_provisioned_stay_in_their_region() -> None:
    assert allowed_regions("Standard", "eastus", ALL) == {"eastus"}
    assert allowed_regions("ProvisionedManaged", "swedencentral", ALL) == {"swedencentral"}


def test_data_zone_stays_in_its_zone() -> None:
    assert allowed_regions("DataZoneStandard", "eastus", ALL) == DATA_ZONES["US"]
    assert allowed_regions("DataZoneStandard", "westeurope", ALL) == DATA_ZONES["EU"]
    assert not DATA_ZONES["US"] & DATA_ZONES["EU"]
    assert zone_of("japaneast") == {"japaneast"}  # outside both zones: a zone of one


def test_global_may_use_any_region() -> None:
    assert allowed_regions("GlobalStandard", "eastus", ALL) == ALL
    assert allowed_regions("GlobalProvisionedManaged", "southindia", ALL) == ALL | {"southindia"}
