"""Metrics, rollups and cost against a real server, after a scripted workload
through the openai client: what /metrics, Azure Monitor's Metrics - List, Cost
Management's query and the CLI report must equal what the client was told
(`usage` of every answer), per deployment, per minute and per model."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from lapis.catalog import load_catalogue
from support.cli import Cli
from support.server import DEFAULT_SUBSCRIPTION, start_server

MONITOR_API = "2023-10-01"
COST_API = "2023-03-01"
GROUP = "lapis-demo"


@dataclass
class Call:
    deployment: str
    model: str
    streaming: bool
    status: int
    prompt: int
    completion: int
    t0: float
    t1: float


@dataclass
class Workload:
    server: object
    account: str
    calls: list[Call]
    start: float
    end: float

    def ok(self, deployment: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.status == 200 and deployment in (None, c.deployment)]


def run_workload(server) -> Workload:
    env = server.demo_env()
    client = openai.AzureOpenAI(azure_endpoint=env["AZURE_OPENAI_ENDPOINT"], api_key=env["AZURE_OPENAI_KEY"],
                                api_version="2024-10-21", max_retries=0)
    calls: list[Call] = []

    def record(deployment: str, model: str, streaming: bool, fn) -> None:
        t0 = time.time()
        try:
            prompt, completion = fn()
            status = 200
        except openai.APIStatusError as error:
            prompt, completion, status = 0, 0, error.status_code
        calls.append(Call(deployment, model, streaming, status, prompt, completion, t0, time.time()))

    def chat(deployment: str, content: str, max_tokens: int):
        def go():
            answer = client.chat.completions.create(model=deployment, max_tokens=max_tokens,
                                                    messages=[{"role": "user", "content": content}])
            return answer.usage.prompt_tokens, answer.usage.completion_tokens
        return go

    def stream(content: str):
        def go():
            usage = None
            for chunk in client.chat.completions.create(model="gpt-4o-mini", stream=True, max_tokens=30,
                                                        stream_options={"include_usage": True},
                                                        messages=[{"role": "user", "content": content}]):
                usage = chunk.usage or usage
            return usage.prompt_tokens, usage.completion_tokens
        return go

    def embed(texts: list[str]):
        def go():
            answer = client.embeddings.create(model="text-embedding-3-small", input=texts)
            return answer.usage.prompt_tokens, 0
        return go

    start = time.time()
    for i in range(6):
        record("gpt-4o-mini", "gpt-4o-mini", False, chat("gpt-4o-mini", f"Question {i}: " + "why? " * i, 8 + i))
    for i in range(4):
        record("gpt-4o-mini", "gpt-4o-mini", True, stream(f"Stream {i} " + "tell me more " * i))
    for i in range(3):
        record("text-embedding-3-small", "text-embedding-3-small", False, embed([f"text {i}"] * (i + 1)))
    long_prompt = " ".join(f"line{n}" for n in range(6000))
    for i in range(4):
        record("gpt-4o", "gpt-4o", False, chat("gpt-4o", f"{i} {long_prompt}", 40))
    record("nope", "", False, chat("nope", "hello", 5))
    record("gpt-4o-mini", "gpt-4o-mini", False, lambda: client.chat.completions.create(
        model="gpt-4o-mini", temperature=5, messages=[{"role": "user", "content": "hi"}]))
    return Workload(server, server.account_path(GROUP, "lapis-demo"), calls, start, time.time())


def wait_for(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def metrics(w: Workload, **query: str) -> dict:
    params = "&".join(f"{k.replace('filter', '$filter')}={v}" for k, v in query.items())
    response = w.server.arm("GET", f"{w.account}/providers/Microsoft.Insights/metrics?{params}",
                            api_version=MONITOR_API)
    assert response.status_code == 200, response.text
    return response.json()


def span(w: Workload) -> str:
    return f"{iso(w.start - 120)}/{iso(w.end + 120)}"


def cost_query(w: Workload, dataset: dict, scope: str = f"/subscriptions/{DEFAULT_SUBSCRIPTION}") -> dict:
    body = {"type": "ActualCost", "timeframe": "Custom",
            "timePeriod": {"from": iso(w.start - 60), "to": iso(w.end + 60)}, "dataset": dataset}
    response = w.server.arm("POST", f"{scope}/providers/Microsoft.CostManagement/query", body, api_version=COST_API)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("metering"), demo=True, LAPIS_METRICS_FLUSH_SECONDS="0.2",
                          LAPIS_RATELIMIT="off")
    try:
        account = server.account_path(GROUP, "lapis-demo")
        assert server.arm("PATCH", account, {"tags": {"team": "search"}}).status_code == 200
        created = server.arm("PUT", f"{account}/deployments/gpt-4o", {
            "sku": {"name": "Standard", "capacity": 10},
            "properties": {"model": {"format": "OpenAI", "name": "gpt-4o", "version": "2024-11-20"}}})
        assert created.status_code in (200, 201), created.text
        w = run_workload(server)
        assert [c.status for c in w.calls if c.status != 200] == [404, 400]

        def settled() -> bool:
            found = metrics(w, metricnames="AzureOpenAIRequests", timespan=span(w), aggregation="Total")
            total = sum(p.get("total", 0) for s in found["value"][0]["timeseries"] for p in s["data"])
            rows = cost_query(w, {"aggregation": {"t": {"name": "TotalTokens", "function": "Sum"}}})
            tokens = rows["properties"]["rows"][0][0]
            return total == len(w.calls) and tokens == sum(c.prompt + c.completion for c in w.ok())

        wait_for(settled, "the rollups and the usage to reach the store")
        yield w
    finally:
        server.stop()


def test_prometheus_counters_equal_the_clients_usage(workload):
    text = requests.get(f"{workload.server.url}/metrics", timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def total(name: str, **labels: str) -> float:
        return sum(s.value for s in families[name].samples if s.name == f"{name}_total"
                   and all(s.labels.get(k) == v for k, v in labels.items()))

    ok = workload.ok()
    assert total("ProcessedPromptTokens") == sum(c.prompt for c in ok)
    assert total("GeneratedTokens") == sum(c.completion for c in ok)
    assert total("TokenTransaction") == sum(c.prompt + c.completion for c in ok)
    assert total("AzureOpenAIRequests", status_code="200") == len(ok)
    assert total("AzureOpenAIRequests") == len(workload.calls)
    assert total("AzureOpenAIRequests", status_code="404", deployment="") == 1
    assert total("AzureOpenAIRequests", status_code="400", deployment="gpt-4o-mini") == 1
    for deployment in ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small"):
        calls = workload.ok(deployment)
        assert total("ProcessedPromptTokens", deployment=deployment, account="lapis-demo") == \
            sum(c.prompt for c in calls)
    assert {s.labels["resource_id"].lower() for s in families["AzureOpenAIRequests"].samples} == \
        {workload.account.lower()}
    assert total("AzureOpenAIRequests", stream_type="Streaming") == len([c for c in ok if c.streaming])
    assert total("AzureOpenAIRequests", api_name="Embeddings_Create") == 3
    assert {s.labels["model_version"] for s in families["AzureOpenAIRequests"].samples
            if s.labels["deployment"] == "gpt-4o"} == {"2024-11-20"}
    assert total("lapis_ratelimit_decisions", decision="admitted") == len(ok)  # the failed two never got that far
    assert total("lapis_ratelimit_decisions", decision="denied") == 0
    assert families["lapis_usage_dropped"].samples[0].value == 0
    metered = len([c for c in ok if c.prompt or c.completion])
    assert total("lapis_usage_journal_writes") == metered  # one line each, streams too (journalled before [DONE])
    assert total("lapis_usage_records_written") == metered
    assert total("lapis_usage_journal_failures") == total("lapis_usage_deferred") == 0
    assert "before [DONE] failed" not in workload.server.log()  # streams were journalled by the hook


def test_histograms_are_sane(workload):
    text = requests.get(f"{workload.server.url}/metrics", timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("AzureOpenAITimeToResponse", "AzureOpenAITTLTInMS"):
        series: dict[tuple, dict] = {}
        for s in families[name].samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            entry = series.setdefault(labels, {"buckets": []})
            if s.name.endswith("_bucket"):
                entry["buckets"].append((float(s.labels["le"]), s.value))
            else:
                entry[s.name.rsplit("_", 1)[1]] = s.value
        assert sum(e["count"] for e in series.values()) == len(workload.calls)
        for entry in series.values():
            bounds = [le for le, _ in entry["buckets"]]
            counts = [n for _, n in entry["buckets"]]
            assert bounds == sorted(bounds) and bounds[-1] == float("inf")
            assert counts == sorted(counts)  # cumulative: never decreasing
            assert counts[-1] == entry["count"] and entry["sum"] >= 0


def test_metrics_per_deployment_and_minute(workload):
    found = metrics(workload, metricnames="AzureOpenAIRequests,ProcessedPromptTokens,GeneratedTokens",
                    timespan=span(workload), interval="PT1M", aggregation="Total",
                    filter="ModelDeploymentName eq '*'")
    assert found["interval"] == "PT1M" and found["namespace"] == "Microsoft.CognitiveServices/accounts"
    assert found["resourceregion"] == "eastus"
    fields = {"AzureOpenAIRequests": None, "ProcessedPromptTokens": "prompt", "GeneratedTokens": "completion"}
    for metric in found["value"]:
        name = metric["name"]["value"]
        assert metric["id"] == f"{workload.account}/providers/Microsoft.Insights/metrics/{name}"
        assert metric["type"] == "Microsoft.Insights/metrics" and metric["errorCode"] == "Success"
        seen = {}
        for series in metric["timeseries"]:
            (meta,) = series["metadatavalues"]
            assert meta["name"] == {"value": "modeldeploymentname", "localizedValue": "modeldeploymentname"}
            stamps = [datetime.fromisoformat(p["timeStamp"]).timestamp() for p in series["data"]]
            assert all(b - a == 60 for a, b in zip(stamps, stamps[1:]))
            seen[meta["value"]] = {int(t // 60): p["total"] for t, p in zip(stamps, series["data"])}
        calls_by_deployment: dict[str, list[Call]] = {}
        for c in workload.calls:
            if c.status == 200 or name == "AzureOpenAIRequests":  # failed calls used no tokens
                # a deployment that does not exist is no dimension value: Azure shows it empty
                calls_by_deployment.setdefault("" if c.deployment == "nope" else c.deployment, []).append(c)
        assert set(seen) == {"", "gpt-4o", "gpt-4o-mini", "text-embedding-3-small"}  # the 404 too, with no tokens
        for deployment in seen:
            calls = calls_by_deployment.get(deployment, [])
            size = (lambda c: 1) if fields[name] is None else (lambda c, f=fields[name]: getattr(c, f))
            per_minute = seen.get(deployment, {})
            assert sum(per_minute.values()) == sum(size(c) for c in calls), (name, deployment)
            for minute, value in per_minute.items():
                certain = sum(size(c) for c in calls if int(c.t0 // 60) == int(c.t1 // 60) == minute)
                maybe = sum(size(c) for c in calls if int(c.t0 // 60) <= minute <= int(c.t1 // 60))
                assert certain <= value <= maybe, (name, deployment, minute)


def test_latency_and_ratio_metrics(workload):
    found = metrics(workload, metricnames="AzureOpenAITimeToResponse,AzureOpenAIAvailabilityRate,ClientErrors",
                    timespan=span(workload), interval="FULL", aggregation="Average,Maximum,Count,Total")
    ttfb, availability, client_errors = found["value"]
    (point,) = ttfb["timeseries"][0]["data"]
    assert point["count"] == len(workload.calls) and 0 <= point["average"] <= point["maximum"]
    assert "total" not in point  # Time to Response has no Total
    assert availability["timeseries"][0]["data"][0]["average"] == 100.0  # no 5xx
    assert client_errors["timeseries"][0]["data"][0]["total"] == 2.0
    assert client_errors["unit"] == "Count" and ttfb["unit"] == "Milliseconds"


def test_metrics_errors_are_azure_monitors(workload):
    response = workload.server.arm("GET", f"{workload.account}/providers/Microsoft.Insights/metrics?"
                                   "metricnames=TotalTokens", api_version=MONITOR_API)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "BadRequest" and set(body) == {"code", "message"}
    assert body["message"].startswith("Failed to find metric configuration for provider: Microsoft.CognitiveServices,"
                                      " resource Type: accounts, metric: TotalTokens, Valid metrics: ")
    missing = workload.server.arm("GET", f"{workload.account[:-4]}nope/providers/Microsoft.Insights/metrics",
                                  api_version=MONITOR_API)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFound"


def test_cost_per_model_matches_catalogue_prices(workload):
    catalogue = load_catalogue()
    answer = cost_query(workload, {"granularity": "None", "aggregation": {
        "cost": {"name": "Cost", "function": "Sum"}, "in": {"name": "InputTokens", "function": "Sum"},
        "out": {"name": "OutputTokens", "function": "Sum"}}, "grouping": [{"type": "Dimension", "name": "ModelName"}]})
    assert answer["type"] == "Microsoft.CostManagement/query" and answer["properties"]["nextLink"] is None
    assert [c["name"] for c in answer["properties"]["columns"]] == ["Cost", "InputTokens", "OutputTokens",
                                                                     "ModelName", "Currency"]
    rows = {row[3]: row for row in answer["properties"]["rows"]}
    assert set(rows) == {"gpt-4o", "gpt-4o-mini", "text-embedding-3-small"}
    for model, (cost, tokens_in, tokens_out, _, currency) in rows.items():
        calls = [c for c in workload.ok() if c.model == model]
        spec = catalogue.model(model)
        expected = sum(c.prompt * spec.price_in_per_1k + c.completion * spec.price_out_per_1k for c in calls) / 1000
        assert (tokens_in, tokens_out, currency) == (sum(c.prompt for c in calls), sum(c.completion for c in calls),
                                                     "USD")
        assert round(cost, 2) == round(expected, 2) and cost == pytest.approx(expected, abs=1e-6)
    assert rows["gpt-4o"][0] >= 0.05  # a workload that costs cents, so "to the cent" means something


def test_cost_by_day_tag_and_group_scope(workload):
    dataset = {"granularity": "Daily", "aggregation": {"t": {"name": "TotalTokens", "function": "Sum"}},
               "grouping": [{"type": "TagKey", "name": "team"}]}
    answer = cost_query(workload, dataset, f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/LAPIS-DEMO")
    assert answer["id"].startswith(f"subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/lapis-demo/providers/"
                                   "Microsoft.CostManagement/query/")
    rows = answer["properties"]["rows"]
    assert {(r[2], r[3]) for r in rows} == {("team", "search")}
    assert {r[1] for r in rows} <= {int(datetime.fromtimestamp(t, timezone.utc).strftime("%Y%m%d"))
                                   for t in (workload.start, workload.end)}
    assert sum(r[0] for r in rows) == sum(c.prompt + c.completion for c in workload.ok())
    bad = workload.server.arm("POST", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.CostManagement/"
                              "query", {"type": "Usage", "timeframe": "Custom"}, api_version=COST_API)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "BadRequest"


def test_cli_chart_and_consumption(workload, tmp_path):
    cli = Cli(workload.server.home, tmp_path / "cwd")
    ok = workload.ok()
    chart = cli("monitor", "metrics", "list", "--resource", workload.account, "--metric", "ProcessedPromptTokens",
                "--interval", "1m", "--aggregation", "Total", "--start-time", iso(workload.start - 120),
                "--end-time", iso(workload.end + 120), "-o", "chart").stdout
    assert chart.startswith("ProcessedPromptTokens (Count, total)")
    assert f"sum {sum(c.prompt for c in ok):g}" in chart and "█" in chart
    table = cli("monitor", "metrics", "list", "--resource", workload.account, "--metrics", "GeneratedTokens",
                "--filter", "ModelDeploymentName eq 'gpt-4o'", "--offset", "30m", "-o", "table").stdout
    assert "modeldeploymentname=gpt-4o" in table
    usage = cli.json("consumption", "usage", "list", "--group-by", "model")
    by_model = {item["modelName"]: item for item in usage}
    for model in ("gpt-4o", "gpt-4o-mini"):
        calls = [c for c in ok if c.model == model]
        assert (by_model[model]["inputTokens"], by_model[model]["outputTokens"]) == (
            sum(c.prompt for c in calls), sum(c.completion for c in calls))
    tagged = cli.json("consumption", "usage", "list", "--group-by", "tag:team", "-g", GROUP)
    assert [(t["tagKey"], t["tagValue"]) for t in tagged] == [("team", "search")]
    definitions = cli.json("monitor", "metrics", "list-definitions", "--resource", workload.account)
    assert "AzureOpenAITTLTInMS" in {d["name"]["value"] for d in definitions}


def test_metering_can_be_switched_off(tmp_path):
    # A store of its own, whatever LAPIS_TEST_DATABASE_URL says: nothing else's usage can show up in it.
    server = start_server(tmp_path / "off", demo=True, LAPIS_METRICS="off",
                          LAPIS_DATABASE_URL=f"sqlite:///{tmp_path / 'off.sqlite3'}")
    try:
        assert requests.get(f"{server.url}/metrics", timeout=10).status_code == 404
        env = server.demo_env()
        started = time.time()
        answer = requests.post(f"{env['AZURE_OPENAI_ENDPOINT']}/openai/deployments/gpt-4o-mini/chat/completions",
                               params={"api-version": "2024-10-21"}, headers={"api-key": env["AZURE_OPENAI_KEY"]},
                               json={"messages": [{"role": "user", "content": "hi"}]}, timeout=10)
        assert answer.status_code == 200
        body = {"type": "Usage", "timeframe": "Custom",
                "timePeriod": {"from": iso(started - 1), "to": iso(time.time() + 5)},
                "dataset": {"aggregation": {"t": {"name": "TotalTokens", "function": "Sum"}}}}
        rows = server.arm("POST", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.CostManagement/query",
                          body, api_version=COST_API).json()["properties"]["rows"]
        assert rows == [[0, "USD"]]
    finally:
        server.stop()
