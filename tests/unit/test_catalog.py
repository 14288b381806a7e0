"""The model catalogue: packaged facts, lookups, and validation of broken files."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources

import pytest

from lapis.catalog import (
    KINDS,
    SKU_NAMES,
    TOKENIZERS,
    Catalogue,
    ModelSpec,
    VersionSpec,
    load_catalogue,
)


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue()


def _raw() -> dict:
    text = resources.files("lapis.catalog").joinpath("models.json").read_text(encoding="utf-8")
    return json.loads(text)


def _write(tmp_path, doc) -> str:
    p = tmp_path / "models.json"
    p.write_text(json.dumps(doc), encoding="utf-8")
    return str(p)


def _model(doc: dict, name: str) -> dict:
    return next(m for m in doc["models"] if m["name"] == name)


# -- the packaged data ---------------------------------------------------------------


def test_packaged_catalogue_loads_and_is_cached(cat):
    assert cat.version == "2026-11-27"
    assert load_catalogue() is cat
    assert all(isinstance(m, ModelSpec) for m in cat.models)
    assert all(isinstance(v, VersionSpec) for m in cat.models for v in m.versions)


def test_explicit_path_loads_the_same_facts(tmp_path, cat):
    other = load_catalogue(_write(tmp_path, _raw()))
    assert other is not cat
    assert other.version == cat.version
    assert [m.name for m in other.models] == [m.name for m in cat.models]
    assert other.model("gpt-4o") == cat.model("gpt-4o")


def test_required_models_present_with_default_versions(cat):
    expected = {
        "gpt-4o": "2024-11-20",
        "gpt-4o-mini": "2024-07-18",
        "gpt-4.1": "2025-04-14",
        "gpt-4.1-mini": "2025-04-14",
        "o3-mini": "2025-01-31",
        "gpt-35-turbo": "0125",
        "gpt-35-turbo-instruct": "0914",
        "text-embedding-3-small": "1",
        "text-embedding-3-large": "1",
        "text-embedding-ada-002": "2",
    }
    for name, default in expected.items():
        m = cat.model(name)
        assert m is not None, name
        assert m.default_version == default
        assert m.version(None) is m.version(default)
        assert m.format == "OpenAI"
        assert m.kind in KINDS and m.tokenizer in TOKENIZERS


def test_versions_and_token_limits(cat):
    gpt4o = cat.model("gpt-4o")
    assert [v.version for v in gpt4o.versions] == ["2024-05-13", "2024-08-06", "2024-11-20"]
    assert gpt4o.version("2024-11-20").context_window == 128000
    assert gpt4o.version("2024-05-13").max_output_tokens == 4096
    assert gpt4o.version("2099-01-01") is None
    o3 = cat.model("o3-mini").version(None)
    assert (o3.context_window, o3.max_output_tokens) == (200000, 100000)
    t35 = cat.model("gpt-35-turbo")
    assert {v.version for v in t35.versions} == {"0125", "1106"}
    assert (t35.version("0125").context_window, t35.version("0125").max_output_tokens) == (16385, 4096)
    instruct = cat.model("gpt-35-turbo-instruct")
    assert instruct.kind == "completions" and instruct.version(None).context_window == 4097
    mini = cat.model("gpt-4o-mini").version(None)
    assert mini.lifecycle_status == "GenerallyAvailable"
    assert mini.deprecation["inference"].endswith("T00:00:00Z")


def test_tokenizers(cat):
    assert cat.model("gpt-4o-mini").tokenizer == "o200k_base"
    assert cat.model("gpt-4.1").tokenizer == "o200k_base"
    assert cat.model("gpt-35-turbo").tokenizer == "cl100k_base"
    assert cat.model("text-embedding-3-small").tokenizer == "cl100k_base"


def test_embeddings_facts(cat):
    small, large, ada = (cat.model(n) for n in
                         ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"))
    assert (small.embedding_dimensions, small.supports_dimensions) == (1536, True)
    assert (large.embedding_dimensions, large.supports_dimensions) == (3072, True)
    assert (ada.embedding_dimensions, ada.supports_dimensions) == (1536, False)
    for m in (small, large, ada):
        assert m.kind == "embeddings"
        assert (m.version(None).context_window, m.version(None).max_output_tokens) == (8191, 0)
        assert m.price_out_per_1k == 0
    assert cat.model("gpt-4o").embedding_dimensions is None
    assert cat.model("gpt-4o").supports_dimensions is False


def test_prices_are_per_1k_tokens(cat):
    mini = cat.model("gpt-4o-mini")
    assert mini.price_in_per_1k == pytest.approx(0.00015)
    assert mini.price_out_per_1k == pytest.approx(0.0006)
    for m in cat.models:
        assert 0 < m.price_in_per_1k < 0.1 and 0 <= m.price_out_per_1k < 0.1


def test_capabilities_are_arm_strings(cat):
    caps = cat.model("gpt-4o-mini").capabilities
    assert caps["chatCompletion"] == "true"
    assert caps["maxContextToken"] == "128000"
    assert caps["maxOutputToken"] == "16384"
    assert cat.model("gpt-35-turbo").capabilities["maxContextToken"] == "16385"
    assert cat.model("text-embedding-ada-002").capabilities["embeddings"] == "true"
    assert all(isinstance(v, str) for m in cat.models for v in m.capabilities.values())


def test_capabilities_for_a_version_override_token_limits(cat):
    gpt4o = cat.model("gpt-4o")
    old = gpt4o.capabilities_for("2024-05-13")
    assert old["maxOutputToken"] == "4096"
    assert gpt4o.capabilities["maxOutputToken"] == "16384"  # the shared dict is untouched
    assert gpt4o.capabilities_for(None) == gpt4o.capabilities


# -- lookups ---------------------------------------------------------------------


def test_model_lookup_is_case_insensitive(cat):
    assert cat.model("GPT-4o-Mini") is cat.model("gpt-4o-mini")
    assert cat.model("gpt-5-imaginary") is None


def test_region_display(cat):
    assert cat.region_display("eastus") == "East US"
    assert cat.region_display("EastUS2") == "East US 2"
    assert cat.region_display("swedencentral") == "Sweden Central"
    assert cat.region_display("atlantis") is None
    regions = cat.regions
    assert len(regions) >= 15
    regions["eastus"] = "changed"
    assert cat.region_display("eastus") == "East US"


def test_deployable_rules_other_modules_rely_on(cat):
    assert cat.model("gpt-4o-mini").deployable("Standard", "eastus")
    assert cat.model("text-embedding-3-small").deployable("Standard", "eastus")
    gpt41 = cat.model("gpt-4.1")
    assert not gpt41.deployable("Standard", "eastus")
    assert gpt41.deployable("GlobalStandard", "eastus")
    assert gpt41.deployable("globalstandard", "EastUS")
    assert not cat.model("gpt-4o").deployable("NoSuchSku", "eastus")


def test_datazone_only_in_us_and_eu(cat):
    allowed = {"eastus", "eastus2", "northcentralus", "southcentralus", "westus", "westus3",
               "francecentral", "germanywestcentral", "italynorth", "polandcentral",
               "spaincentral", "swedencentral", "westeurope"}
    for m in cat.models:
        assert set(m.skus.get("DataZoneStandard", {})) <= allowed, m.name
    assert not cat.model("gpt-4o").deployable("DataZoneStandard", "japaneast")


def test_offers_eastus(cat):
    offers = cat.offers("eastus")
    triples = {(m.name, v.version, sku) for m, v, sku in offers}
    assert ("gpt-4o-mini", "2024-07-18", "Standard") in triples
    assert ("text-embedding-3-small", "1", "Standard") in triples
    assert ("gpt-4.1", "2025-04-14", "GlobalStandard") in triples
    assert not any(name == "gpt-4.1" and sku == "Standard" for name, _, sku in triples)
    assert len(triples) == len(offers)
    assert all(sku in SKU_NAMES for _, _, sku in offers)
    assert cat.offers("EASTUS") == offers == cat.offers("eastus")  # stable order
    assert cat.offers("atlantis") == []


def test_offers_follow_model_then_version_order(cat):
    names = [m.name for m in cat.models]
    order = [(names.index(m.name), m.versions.index(v), SKU_NAMES.index(sku))
             for m, v, sku in cat.offers("swedencentral")]
    assert order == sorted(order)


def test_default_quota_figures(cat):
    assert cat.default_quota("gpt-4o-mini", "Standard", "eastus") == 450
    assert cat.default_quota("gpt-4o-mini", "GlobalStandard", "eastus") == 2000
    assert cat.default_quota("gpt-4o-mini", "DataZoneStandard", "eastus") == 1000
    assert cat.default_quota("gpt-4o", "GlobalStandard", "swedencentral") == 450
    assert cat.default_quota("gpt-4o", "DataZoneStandard", "eastus2") == 300
    assert cat.default_quota("gpt-4o", "Standard", "eastus") == 150
    assert cat.default_quota("gpt-4.1", "GlobalStandard", "eastus") == 1000
    assert cat.default_quota("gpt-4.1-mini", "GlobalStandard", "eastus") == 5000
    assert cat.default_quota("o3-mini", "GlobalStandard", "eastus") == 5000
    assert cat.default_quota("GPT-4O-MINI", "standard", "EastUS") == 450
    assert cat.default_quota("gpt-4.1", "Standard", "eastus") is None
    assert cat.default_quota("nope", "Standard", "eastus") is None
    ptu = cat.default_quota("gpt-4o", "ProvisionedManaged", "swedencentral")
    assert ptu is not None and 50 <= ptu <= 500


def test_rpm_for_ratios(cat):
    assert cat.model("gpt-4o-mini").rpm_for(10_000) == 60
    assert cat.model("text-embedding-ada-002").rpm_for(120_000) == 720
    assert cat.model("gpt-35-turbo").rpm_for(240_000) == 1440
    assert cat.model("o3-mini").rpm_for(10_000) == 1
    assert cat.model("o3-mini").rpm_for(5_000_000) == 500
    assert cat.model("o3-mini").rpm_for(1_000) == 1  # never below 1 when tpm > 0
    assert cat.model("gpt-4.1").rpm_for(1_000_000) == 1000
    assert cat.model("gpt-4.1-mini").rpm_for(100_000) == 100
    assert cat.model("gpt-4o").rpm_for(0) == 0


def test_specs_are_frozen_and_hashable(cat):
    m = cat.model("gpt-4o")
    with pytest.raises(AttributeError):
        m.name = "x"  # type: ignore[misc]
    assert len({m, cat.model("gpt-4o"), cat.model("gpt-4o-mini")}) == 2


# -- validation ------------------------------------------------------------------


def _broken(mutate):
    doc = _raw()
    mutate(doc)
    return doc


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: _model(d, "gpt-4o").update(defaultVersion="2023-01-01"),
         "defaultVersion '2023-01-01' is not among its versions"),
        (lambda d: _model(d, "gpt-4o-mini")["skus"]["Standard"].update(atlantis=10),
         "unknown region 'atlantis'"),
        (lambda d: _model(d, "gpt-4o").update(kind="image"), "kind 'image'"),
        (lambda d: _model(d, "gpt-4o").update(tokenizer="p50k_base"), "tokenizer 'p50k_base'"),
        (lambda d: _model(d, "gpt-4o")["skus"].update(Turbo={"eastus": 1}), "unknown sku 'Turbo'"),
        (lambda d: _model(d, "gpt-4o")["skus"]["Standard"].update(eastus=0), "positive integer"),
        (lambda d: _model(d, "gpt-4o")["capabilities"].update(chatCompletion=True), "strings"),
        (lambda d: _model(d, "gpt-4o")["capabilities"].update(maxContextToken="4096"), "disagrees"),
        (lambda d: _model(d, "gpt-4o")["versions"][0].update(lifecycleStatus="Beta"), "lifecycleStatus"),
        (lambda d: _model(d, "gpt-4o")["versions"][0].pop("contextWindow"), "missing 'contextWindow'"),
        (lambda d: _model(d, "gpt-4o")["rateLimit"].update(tokensPerUnit=0), "must be positive"),
        (lambda d: _model(d, "gpt-4o")["rateLimit"].update(requestsPerUnit="6"), "must be int"),
        (lambda d: _model(d, "text-embedding-3-small").pop("embeddingDimensions"),
         "missing 'embeddingDimensions'"),
        (lambda d: _model(d, "gpt-4o").update(supportsDimensions=True), "embeddings models only"),
        (lambda d: d["models"].append(copy.deepcopy(_model(d, "gpt-4o")) | {"name": "GPT-4o"}),
         "duplicate model name"),
        (lambda d: d.pop("catalogVersion"), "missing 'catalogVersion'"),
    ],
)
def test_validation_rejects_broken_files(tmp_path, mutate, message):
    path = _write(tmp_path, _broken(mutate))
    with pytest.raises(ValueError, match=re.escape(message)):
        load_catalogue(path)


def test_validation_names_the_model(tmp_path):
    doc = _broken(lambda d: _model(d, "o3-mini").update(defaultVersion="9"))
    with pytest.raises(ValueError) as info:
        load_catalogue(_write(tmp_path, doc))
    assert "'o3-mini'" in str(info.value)


def test_invalid_json_is_a_value_error(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_catalogue(str(p))
