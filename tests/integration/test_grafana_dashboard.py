"""dashboards/lapis-grafana.json against a real server's /metrics: every metric name
any panel's PromQL (or a template variable's label_values) uses is a series the
exposition has, with the suffix its type gives it (`_total` for counters;
`_bucket`, `_sum`, `_count` for histograms; gauges bare). Families the workload
did not touch are still declared (HELP and TYPE, no samples), so the check runs
against the declared family names and types."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from support.server import LapisProcess

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "lapis-grafana.json"
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
            "inf", "nan"}
SUFFIXES = (("_total", {"counter"}), ("_bucket", {"histogram"}), ("_sum", {"histogram", "summary"}),
            ("_count", {"histogram", "summary"}))
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBER = re.compile(r"\b\d+(\.\d+)?([eE][+-]?\d+)?((ms|[smhdwy])(\d+(ms|[smhdwy]))*)?\b")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not
    functions (followed by '('), keywords, label names (inside {...} or a
    by/without/on list), Grafana variables or numbers."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # $__rate_interval, ${account}
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # ranges
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)  # 0.95, 1e-9, and durations such as `offset 5m`
    names = set()
    for match in _IDENT.finditer(text):
        name, rest = match.group(), text[match.end():].lstrip()
        if not rest.startswith("(") and name.lower() not in KEYWORDS:
            names.add(name)
    return names


def test_the_extractor():
    assert metric_names('histogram_quantile(0.95, sum by (le, deployment) (rate(A_bucket{x=~"a|b", le!="1"}'
                        '[$__rate_interval])))') == {"A_bucket"}
    assert metric_names("100 * sum(rate(B_total{s=~\"4..\"}[5m])) / clamp_min(sum(rate(B_total[5m])), 1e-9)") \
        == {"B_total"}
    assert metric_names("max by (budget_id) (g) / on (budget_id) group_left max(h offset 1h30m)") == {"g", "h"}
    assert metric_names("rate(D_count[1h30m]) * 60 + 1.5e3") == {"D_count"}
    assert metric_names("label_values(C_total{account=~\"$account\"}, deployment)") == {"C_total", "deployment"}


def families_of(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def series_family(name: str, families: dict[str, str]) -> str | None:
    """The family whose exposition holds series called `name`, or None."""
    if families.get(name) in ("gauge", "untyped", "unknown"):
        return name
    for suffix, types in SUFFIXES:
        if name.endswith(suffix) and families.get(name[:-len(suffix)]) in types:
            return name[:-len(suffix)]
    return None


def panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # a collapsed row keeps its panels inside
    return out


@pytest.fixture(scope="module")
def scrape(lapis_server: LapisProcess, demo: dict[str, str]) -> str:
    base, key = demo["AZURE_OPENAI_ENDPOINT"], demo["AZURE_OPENAI_KEY"]
    chat = f"{base}/openai/deployments/gpt-4o-mini/chat/completions"
    for stream in (False, True, False):
        answer = requests.post(chat, params={"api-version": "2024-10-21"}, headers={"api-key": key}, timeout=30,
                               json={"messages": [{"role": "user", "content": "Chart me."}], "stream": stream})
        assert answer.status_code == 200
        answer.content  # noqa: B018 - read the stream to its end
    wrong = requests.post(chat, params={"api-version": "2024-10-21"}, headers={"api-key": key}, timeout=30,
                          json={"messages": "not a list"})
    assert wrong.status_code == 400
    return requests.get(f"{lapis_server.url}/metrics", timeout=10).text


def test_every_metric_a_panel_uses_is_on_metrics(scrape: str):
    dashboard = json.loads(DASHBOARD.read_text())
    families = families_of(scrape)
    assert families["AzureOpenAIRequests"] == "counter" and families["AzureOpenAITimeToResponse"] == "histogram"
    used: dict[str, str] = {}
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, f"{panel['title']}: no metric in {target['expr']}"
            for name in names:
                family = series_family(name, families)
                assert family is not None, f"{panel['title']}: '{name}' is not a series on /metrics"
                used[name] = family
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["definition"]
            label = re.search(r",\s*(\w+)\s*\)\s*$", query).group(1)
            assert series_family(next(iter(metric_names(query) - {label})), families) is not None
    # what the dashboard promises to chart
    for family in ("AzureOpenAIRequests", "ProcessedPromptTokens", "GeneratedTokens", "AzureOpenAITimeToResponse",
                   "AzureOpenAITTLTInMS", "lapis_ratelimit_decisions", "lapis_backend_tokens_generated",
                   "lapis_balancer_attempts", "lapis_breaker_transitions", "lapis_usage_queue_depth",
                   "lapis_rollup_cells", "lapis_budget_spend_usd"):
        assert family in used.values(), f"no panel charts {family}"
    quantiles = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])
                 if t["expr"].startswith("histogram_quantile(")]
    assert any("AzureOpenAITimeToResponse_bucket" in e for e in quantiles)
    assert any("AzureOpenAITTLTInMS_bucket" in e for e in quantiles)


def test_the_dashboard_is_importable_as_is():
    dashboard = json.loads(DASHBOARD.read_text())
    [source] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert source["name"] == "datasource" and source["query"] == "prometheus"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs))
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36
