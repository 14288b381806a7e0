"""The model catalogue: which models exist, where each deploys, and its default quota.

The facts live in ``models.json`` beside this module (versioned by ``catalogVersion``);
this module reads, validates and indexes them; the packaged file is parsed once.
Quota units follow ARM: thousands of TPM (``sku.capacity``) for the Standard-type SKUs,
PTUs for the provisioned ones. ``rateLimit`` is RPM per ``tokensPerUnit`` TPM.
The specs are frozen, but their ``dict`` fields are shared by every caller: never
mutate them. A malformed file raises ``ValueError`` naming the offending entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["KINDS", "TOKENIZERS", "SKU_NAMES", "PROVISIONED_SKUS", "LIFECYCLE_STATUSES",
           "Catalogue", "ModelSpec", "VersionSpec", "load_catalogue", "parse_catalogue"]

KINDS = ("chat", "embeddings", "completions")
TOKENIZERS = ("o200k_base", "cl100k_base")
# Deployment types (sku.name) in the order offers are listed.
SKU_NAMES = (
    "Standard", "GlobalStandard", "DataZoneStandard",
    "ProvisionedManaged", "GlobalProvisionedManaged", "DataZoneProvisionedManaged",
    "GlobalBatch", "DataZoneBatch",
)
PROVISIONED_SKUS = frozenset({"ProvisionedManaged", "GlobalProvisionedManaged", "DataZoneProvisionedManaged"})
LIFECYCLE_STATUSES = ("GenerallyAvailable", "Preview", "Deprecating", "Deprecated")
_SKU_BY_LOWER = {s.lower(): s for s in SKU_NAMES}


@dataclass(frozen=True, slots=True)
class VersionSpec:
    version: str
    lifecycle_status: str
    context_window: int
    max_output_tokens: int
    deprecation: dict[str, str] = field(hash=False)  # e.g. {"inference": "2027-...Z"}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    format: str
    kind: str  # one of KINDS
    tokenizer: str  # one of TOKENIZERS
    default_version: str
    versions: tuple[VersionSpec, ...]
    price_in_per_1k: float  # USD
    price_out_per_1k: float
    requests_per_unit: int  # RPM granted per `tokens_per_unit` TPM
    tokens_per_unit: int
    default_max_tokens: int  # completion budget charged at admission when a request sets none
    tokens_per_ptu: int  # tokens per minute one provisioned throughput unit serves
    skus: dict[str, dict[str, int]] = field(hash=False)  # sku -> location -> default quota
    capabilities: dict[str, str] = field(hash=False)  # ARM strings: {"chatCompletion": "true"}
    embedding_dimensions: int | None
    supports_dimensions: bool

    def version(self, v: str | None = None) -> VersionSpec | None:
        """The named version, or the default version when ``v`` is None."""
        wanted = self.default_version if v is None else v
        return next((s for s in self.versions if s.version == wanted), None)

    def deployable(self, sku: str, location: str) -> bool:
        return location.lower() in self.skus.get(_canonical_sku(sku), {})

    def rpm_for(self, tpm: int) -> int:
        """Requests per minute granted with ``tpm`` tokens per minute (at least 1 if tpm > 0)."""
        if tpm <= 0:
            return 0
        return max(1, tpm * self.requests_per_unit // self.tokens_per_unit)

    def capabilities_for(self, version: str | None = None) -> dict[str, str]:
        """A fresh copy of ``capabilities`` with the token limits of one version."""
        caps = dict(self.capabilities)
        spec = self.version(version)
        if spec is not None:
            if "maxContextToken" in caps:
                caps["maxContextToken"] = str(spec.context_window)
            if "maxOutputToken" in caps:
                caps["maxOutputToken"] = str(spec.max_output_tokens)
        return caps


@dataclass(frozen=True, slots=True, eq=False)
class Catalogue:
    version: str
    models: tuple[ModelSpec, ...]
    _regions: dict[str, str] = field(repr=False)
    _by_name: dict[str, ModelSpec] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {m.name.lower(): m for m in self.models})

    @property
    def regions(self) -> dict[str, str]:
        """Location name -> display name, e.g. {"eastus": "East US"} (a copy)."""
        return dict(self._regions)

    def model(self, name: str) -> ModelSpec | None:
        return self._by_name.get(name.lower())

    def region_display(self, location: str) -> str | None:
        return self._regions.get(location.lower())

    def offers(self, location: str) -> list[tuple[ModelSpec, VersionSpec, str]]:
        """Every (model, version, sku name) deployable in ``location``.

        Ordered by model (file order), version (file order), then SKU_NAMES order.
        Retired (``Deprecated``) versions are left out.
        """
        loc = location.lower()
        return [
            (m, v, sku)
            for m in self.models
            for v in m.versions
            if v.lifecycle_status != "Deprecated"
            for sku in SKU_NAMES
            if loc in m.skus.get(sku, {})
        ]

    def default_quota(self, model: str, sku: str, location: str) -> int | None:
        """Default quota (thousands of TPM, or PTUs for provisioned SKUs), None if not offered."""
        spec = self.model(model)
        if spec is None:
            return None
        return spec.skus.get(_canonical_sku(sku), {}).get(location.lower())


def load_catalogue(path: str | None = None) -> Catalogue:
    """Load the packaged catalogue (parsed once, then cached), or the file at ``path``."""
    if path is None:
        return _packaged()
    with open(path, encoding="utf-8") as f:
        return _parse_text(f.read(), path)


@lru_cache(maxsize=1)
def _packaged() -> Catalogue:
    text = resources.files(__name__).joinpath("models.json").read_text(encoding="utf-8")
    return _parse_text(text, "models.json")


def _parse_text(text: str, source: str) -> Catalogue:
    try:
        return parse_catalogue(json.loads(text))
    except json.JSONDecodeError as e:
        raise ValueError(f"{source}: not valid JSON: {e}") from None
    except ValueError as e:  # prefix the file, so the message says where to look
        raise ValueError(f"{source}: {e}") from None


def parse_catalogue(doc: Any) -> Catalogue:
    """Validate an already-decoded catalogue document and build a Catalogue."""
    _check(isinstance(doc, dict), "catalogue: top level must be a JSON object")
    version = _get(doc, "catalogVersion", str, "catalogue")
    regions = _get(doc, "regions", dict, "catalogue")
    for loc, display in regions.items():
        _check(loc == loc.lower() and isinstance(display, str) and display,
               f"regions[{loc!r}]: keys must be lower-case location names, values display names")
    models: list[ModelSpec] = []
    for i, raw in enumerate(_get(doc, "models", list, "catalogue")):
        spec = _parse_model(raw, f"models[{i}]", regions)
        _check(spec.name.lower() not in {m.name.lower() for m in models},
               f"models[{i}]: duplicate model name {spec.name!r}")
        models.append(spec)
    return Catalogue(version=version, models=tuple(models), _regions=dict(regions))


def _parse_model(raw: Any, where: str, regions: dict[str, str]) -> ModelSpec:
    name = _get(raw, "name", str, where)
    where = f"{where} ({name!r})"
    kind = _one_of(_get(raw, "kind", str, where), KINDS, "kind", where)
    tokenizer = _one_of(_get(raw, "tokenizer", str, where), TOKENIZERS, "tokenizer", where)
    raw_versions = _get(raw, "versions", list, where)
    versions = tuple(_parse_version(v, f"{where}.versions[{j}]") for j, v in enumerate(raw_versions))
    names = [v.version for v in versions]
    _check(versions and len(set(names)) == len(names),
           f"{where}: versions must be non-empty and unique, got {names}")
    default = _get(raw, "defaultVersion", str, where)
    _check(default in names, f"{where}: defaultVersion {default!r} is not among its versions {names}")
    skus: dict[str, dict[str, int]] = {}
    for sku, quotas in _get(raw, "skus", dict, where).items():
        _check(sku in SKU_NAMES, f"{where}: unknown sku {sku!r}")
        _check(isinstance(quotas, dict), f"{where}.skus.{sku}: expected an object of location -> quota")
        for loc, quota in quotas.items():
            _check(loc in regions, f"{where}.skus.{sku}: unknown region {loc!r}")
            _check(type(quota) is int and quota > 0,
                   f"{where}.skus.{sku}.{loc}: quota must be a positive integer")
        skus[sku] = dict(quotas)
    caps = _get(raw, "capabilities", dict, where)
    _check(all(isinstance(v, str) for v in caps.values()),
           f"{where}: capability values must be strings, as ARM shows them")
    dv = versions[names.index(default)]
    for key, want in (("maxContextToken", dv.context_window), ("maxOutputToken", dv.max_output_tokens)):
        _check(caps.get(key, str(want)) == str(want),
               f"{where}: capabilities.{key} {caps.get(key)!r} disagrees with the default version ({want})")
    dims: int | None = None
    supports = False
    if kind == "embeddings":
        dims = _get(raw, "embeddingDimensions", int, where)
        supports = _get(raw, "supportsDimensions", bool, where)
        _check(dims > 0, f"{where}: embeddingDimensions must be positive")
    else:
        _check("embeddingDimensions" not in raw and "supportsDimensions" not in raw,
               f"{where}: embeddingDimensions/supportsDimensions are for embeddings models only")
    rate = _get(raw, "rateLimit", dict, where)
    rpu = _get(rate, "requestsPerUnit", int, f"{where}.rateLimit")
    tpu = _get(rate, "tokensPerUnit", int, f"{where}.rateLimit")
    _check(rpu > 0 and tpu > 0, f"{where}.rateLimit: requestsPerUnit and tokensPerUnit must be positive")
    default_max = _get(rate, "defaultMaxTokens", int, f"{where}.rateLimit")
    per_ptu = _get(rate, "tokensPerPTU", int, f"{where}.rateLimit")
    _check(default_max >= 0 and per_ptu > 0, f"{where}.rateLimit: defaultMaxTokens >= 0 and tokensPerPTU > 0")
    price = _get(raw, "price", dict, where)
    pin = _get(price, "inputPer1K", (int, float), f"{where}.price")
    pout = _get(price, "outputPer1K", (int, float), f"{where}.price")
    _check(pin >= 0 and pout >= 0, f"{where}.price: prices must not be negative")
    return ModelSpec(
        name=name, format=_get(raw, "format", str, where), kind=kind, tokenizer=tokenizer,
        default_version=default, versions=versions,
        price_in_per_1k=float(pin), price_out_per_1k=float(pout),
        requests_per_unit=rpu, tokens_per_unit=tpu, default_max_tokens=default_max, tokens_per_ptu=per_ptu,
        skus=skus, capabilities=dict(caps),
        embedding_dimensions=dims, supports_dimensions=supports,
    )


def _parse_version(raw: Any, where: str) -> VersionSpec:
    version = _get(raw, "version", str, where)
    where = f"{where} ({version!r})"
    status = _one_of(_get(raw, "lifecycleStatus", str, where), LIFECYCLE_STATUSES, "lifecycleStatus", where)
    ctx = _get(raw, "contextWindow", int, where)
    out = _get(raw, "maxOutputTokens", int, where)
    _check(0 < ctx and 0 <= out <= ctx,
           f"{where}: need contextWindow > 0 and 0 <= maxOutputTokens <= contextWindow")
    deprecation = raw.get("deprecation", {})
    _check(isinstance(deprecation, dict) and all(isinstance(v, str) for v in deprecation.values()),
           f"{where}: deprecation must map names to date-time strings")
    return VersionSpec(version, status, ctx, out, dict(deprecation))


def _canonical_sku(sku: str) -> str:
    return _SKU_BY_LOWER.get(sku.lower(), sku)


def _check(ok: Any, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _one_of(value: str, allowed: tuple[str, ...], what: str, where: str) -> str:
    _check(value in allowed, f"{where}: {what} {value!r} is not one of {', '.join(allowed)}")
    return value


def _get(obj: Any, key: str, typ: type | tuple[type, ...], where: str) -> Any:
    """obj[key], checked to be a ``typ`` (JSON true/false never counts as a number)."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object")
    if key not in obj:
        raise ValueError(f"{where}: missing {key!r}")
    val = obj[key]
    if (isinstance(val, bool) and typ is not bool) or not isinstance(val, typ):
        want = typ.__name__ if isinstance(typ, type) else "number"
        raise ValueError(f"{where}: {key!r} must be {want}, got {type(val).__name__}")
    return val
