"""Metrics without a server: the live counters' exposition (parsed back with
prometheus_client's parser), the Azure Monitor query parameters and their
errors, the per-metric arithmetic, rollup flushes that fail, and the CLI chart."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lapis.cli import monitor
from lapis.errors.base import ApiError
from lapis.metrics import params
from lapis.metrics.definitions import BY_NAME, METRICS
from lapis.metrics.exposition import MetricsHub
from lapis.metrics.live import BUCKETS_MS, LiveMetrics
from lapis.metrics.query import Cell, values
from lapis.metrics.rollup import Rollups, speeds

NOW = datetime(2026, 7, 14, 10, 30, 27, tzinfo=timezone.utc)


def key(deployment: str = "dep", status: int = 200, streaming: bool = False) -> tuple:
    return ("id1", "acct", deployment, "gpt-4o-mini", "2024-07-18", "eastus", status, streaming,
            "ChatCompletions_Create")


def families(hub: MetricsHub) -> dict:
    return {f.name: f for f in text_string_to_metric_families(hub.render().decode())}


def test_live_counters_and_histograms_parse_back():
    live = LiveMetrics()
    observed = [(key(), 10, 5, 2, 3.0, 40.0), (key(), 20, 7, 0, 700.0, 900.0), (key("other"), 1, 0, 0, 5.0, 5.0),
                (key(status=429), 0, 0, 0, 1.0, 1.0), (key(streaming=True), 4, 4, 0, 2.0, 200000.0)]
    for k, *numbers in observed:
        live.observe(k, *numbers)
    hub = MetricsHub()
    hub.register(live.collect)
    found = families(hub)

    def total(name: str, suffix: str = "_total") -> float:
        return sum(s.value for s in found[name].samples if s.name == name + suffix)

    assert total("ProcessedPromptTokens") == sum(o[1] for o in observed)
    assert total("GeneratedTokens") == sum(o[2] for o in observed)
    assert total("TokenTransaction") == sum(o[1] + o[2] for o in observed)
    assert total("ActiveTokens") == sum(o[1] + o[2] - o[3] for o in observed)
    assert total("AzureOpenAIRequests") == len(observed)
    statuses = {s.labels["status_code"] for s in found["AzureOpenAIRequests"].samples}
    assert statuses == {"200", "429"}
    assert {s.labels["stream_type"] for s in found["AzureOpenAIRequests"].samples} == {"Streaming", "Non-Streaming"}
    for name in ("AzureOpenAITimeToResponse", "AzureOpenAITTLTInMS"):
        assert found[name].type == "histogram"
        series: dict[tuple, list] = {}
        for s in found[name].samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            series.setdefault(labels, []).append(s)
        for samples in series.values():
            buckets = [(float(s.labels["le"]), s.value) for s in samples if s.name.endswith("_bucket")]
            count = next(s.value for s in samples if s.name.endswith("_count"))
            assert [le for le, _ in buckets] == sorted(le for le, _ in buckets)
            assert all(a <= b for (_, a), (_, b) in zip(buckets, buckets[1:]))
            assert buckets[-1] == (float("inf"), count)
    one = next(s for s in found["AzureOpenAITTLTInMS"].samples
               if s.name.endswith("_bucket") and s.labels["deployment"] == "dep" and s.labels["status_code"] == "200"
               and s.labels["stream_type"] == "Non-Streaming" and s.labels["le"] == "50.0")
    assert one.value == 1  # 40 ms is within 50, 900 ms is not
    streamed = [s for s in found["AzureOpenAITTLTInMS"].samples if s.name.endswith("_bucket")
                and s.labels["stream_type"] == "Streaming"]
    assert [s.value for s in streamed][-2:] == [0, 1]  # beyond the last bound: only +Inf holds it
    assert 200000.0 > BUCKETS_MS[-1]


def test_utilization_gauge_is_last_whole_minute_over_capacity():
    clock = [120 * 60 + 5.0]
    live = LiveMetrics(limit_of=lambda account, deployment: 1000, clock=lambda: clock[0])
    live.observe_provisioned("id1", "ptu", 119, 250)
    live.observe_provisioned("id1", "ptu", 120, 900)
    hub = MetricsHub()
    hub.register(live.collect)
    sample = families(hub)["AzureOpenAIProvisionedManagedUtilizationV2"].samples[0]
    assert sample.value == pytest.approx(25.0)
    clock[0] += 60
    assert families(hub)["AzureOpenAIProvisionedManagedUtilizationV2"].samples[0].value == pytest.approx(90.0)
    clock[0] += 120
    assert families(hub)["AzureOpenAIProvisionedManagedUtilizationV2"].samples[0].value == 0.0


def test_a_broken_collector_does_not_blank_the_page():
    hub = MetricsHub()
    hub.register(lambda: 1 / 0)
    live = LiveMetrics()
    live.observe(key(), 1, 1, 0, 1.0, 1.0)
    hub.register(live.collect)
    assert "AzureOpenAIRequests" in families(hub)


def _error(call) -> dict:
    with pytest.raises(ApiError) as caught:
        call()
    assert caught.value.status == 400 and caught.value.code == "BadRequest"
    body = json.loads(caught.value.body)
    assert set(body) == {"code", "message"}  # Azure Monitor: no "error" envelope
    return body


def test_query_parameters():
    q = params.parse({"metricnames": "processedprompttokens,AzureOpenAIRequests",
                      "timespan": "2026-07-14T10:02:30Z/2026-07-14T10:30:00Z", "interval": "pt5m",
                      "aggregation": "total,AVERAGE", "$filter": "ModelDeploymentName eq 'A' or "
                      "modeldeploymentname eq 'b' and StatusCode eq '*'", "top": "3", "orderby": "Average asc"})
    assert [m.name for m in q.metrics] == ["ProcessedPromptTokens", "AzureOpenAIRequests"]
    assert q.start == datetime(2026, 7, 14, 10, 0, tzinfo=timezone.utc)  # aligned down to the interval
    assert (q.interval, q.step, q.aggregations) == ("PT5M", 5, ["Total", "Average"])
    assert q.splits == {"ModelDeploymentName": {"a", "b"}, "StatusCode": None}
    assert (q.top, q.order_by) == (3, ("Average", False))
    default = params.parse({}, now=NOW)
    assert [m.name for m in default.metrics] == ["AzureOpenAIRequests"]
    assert default.end == NOW and default.start == datetime(2026, 7, 14, 9, 30, tzinfo=timezone.utc)
    assert (default.interval, default.aggregations, default.splits) == ("PT1M", None, {})
    full = params.parse({"timespan": "2026-07-14T08:00:00Z/PT2H30M", "interval": "FULL"})
    assert (full.interval, full.step, full.end) == ("PT2H30M", 150, datetime(2026, 7, 14, 10, 30,
                                                                               tzinfo=timezone.utc))
    assert params.parse({"timespan": "P1D"}, now=NOW).start == datetime(2026, 7, 13, 10, 30, tzinfo=timezone.utc)


def test_query_parameter_errors_have_azure_monitors_body():
    body = _error(lambda: params.parse({"metricnames": "AzureOpenAIRequests,Nope"}))
    assert body["message"] == ("Failed to find metric configuration for provider: Microsoft.CognitiveServices, "
                               "resource Type: accounts, metric: Nope, Valid metrics: "
                               + ",".join(m.name for m in METRICS))
    assert "interval" in _error(lambda: params.parse({"interval": "PT2M"}))["message"]
    assert "timespan" in _error(lambda: params.parse({"timespan": "yesterday"}))["message"]
    backwards = {"timespan": "2026-07-14T10:00:00Z/2026-07-14T09:00:00Z"}
    assert "end must be after" in _error(lambda: params.parse(backwards))["message"]
    assert "aggregation" in _error(lambda: params.parse({"aggregation": "Median"}))["message"]
    assert "Colour" in _error(lambda: params.parse({"$filter": "Colour eq 'red'"}))["message"]
    assert "$filter" in _error(lambda: params.parse({"$filter": "ModelDeploymentName = 'x'"}))["message"]
    assert "one dimension" in _error(lambda: params.parse({"$filter": "Region eq 'a' or StatusCode eq '1'"}))["message"]
    assert "top" in _error(lambda: params.parse({"top": "0"}))["message"]


def test_metric_arithmetic():
    cell = Cell()
    for status, requests, prompt, generated, cached in ((200, 3, 300, 30, 100), (429, 1, 0, 0, 0), (500, 1, 0, 0, 0)):
        cell.add({"status_code": status, "requests": requests, "prompt_tokens": prompt, "generated_tokens": generated,
                  "cached_tokens": cached, "ttfb_sum": 10.0 * requests, "ttlt_sum": 20.0 * requests,
                  "tps_sum": 100.0, "tps_count": 2, "tbt_sum": 0.0, "tbt_count": 0, "ttfb_min": 1.0,
                  "ttfb_max": 9.0 + status, "ttlt_min": 2.0, "ttlt_max": 30.0})
    assert values(BY_NAME["azureopenairequests"], cell) == {"Total": 5.0, "Count": 5.0}
    assert values(BY_NAME["clienterrors"], cell)["Total"] == 1.0
    assert values(BY_NAME["servererrors"], cell)["Total"] == 1.0
    assert values(BY_NAME["successfulcalls"], cell)["Total"] == 3.0
    assert values(BY_NAME["activetokens"], cell)["Total"] == 230.0
    assert values(BY_NAME["processedprompttokens"], cell) == {"Total": 300.0, "Count": 5.0, "Average": 60.0}
    assert values(BY_NAME["azureopenaicontexttokenscachematchrate"], cell) == {"Average": pytest.approx(100 / 3)}
    assert values(BY_NAME["azureopenaiavailabilityrate"], cell) == {"Average": 80.0}
    ttfb = values(BY_NAME["azureopenaitimetoresponse"], cell)
    assert (ttfb["Average"], ttfb["Maximum"], ttfb["Minimum"]) == (10.0, 509.0, 1.0)
    assert values(BY_NAME["azureopenaitokenpersecond"], cell)["Average"] == pytest.approx(50.0)
    assert values(BY_NAME["azureopenainormalizedtbtinms"], cell) == {"Count": 0.0}
    assert values(BY_NAME["azureopenaitimetoresponse"], None) == {"Count": 0.0}  # no data: no average
    assert values(BY_NAME["generatedtokens"], None) == {"Total": 0.0, "Count": 0.0}
    assert speeds(11, True, 100.0, 600.0) == (pytest.approx(22.0), pytest.approx(50.0))
    assert speeds(10, False, 500.0, 500.0) == (pytest.approx(20.0), None)
    assert speeds(0, True, 1.0, 2.0) == (None, None)


class FlakyStore:
    def __init__(self) -> None:
        self.fail = True
        self.rows: list = []

    async def add_rollups(self, rows):
        if self.fail:
            self.fail = False
            raise ConnectionError("database went away")
        self.rows.extend(rows)


async def test_a_failed_flush_keeps_and_merges_its_cells():
    store = FlakyStore()
    rollups = Rollups(store)  # type: ignore[arg-type]
    rollups.observe(7, key(), 10, 1, 0, 4.0, 8.0)
    assert not await rollups.flush()
    rollups.observe(7, key(), 5, 2, 0, 2.0, 9.0)
    assert await rollups.flush()
    assert (rollups.failures, rollups.flushes) == (1, 1)
    (row,) = store.rows
    assert row[:9] == ("id1", 7, "dep", "gpt-4o-mini", "2024-07-18", "eastus", 200, 0, "ChatCompletions_Create")
    assert row[9:13] == (2, 15, 3, 0)  # requests, prompt, generated, cached
    assert (row[14], row[15]) == (2.0, 4.0)  # ttfb min and max


def test_chart_and_cli_time_helpers():
    start = datetime(2026, 7, 14, 10, 0, tzinfo=timezone.utc)
    data = [{"timeStamp": (start + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"), "total": float(v)}
            for i, v in enumerate((0, 4, 8, 2))]
    result = {"interval": "PT1M", "value": [{"name": {"value": "GeneratedTokens"}, "unit": "Count", "timeseries": [
        {"metadatavalues": [{"name": {"value": "modeldeploymentname"}, "value": "dep"}], "data": data}]}]}
    text = monitor.chart(result)
    assert "GeneratedTokens (Count, total)  [modeldeploymentname=dep]" in text
    assert "|▁▄█▂|" in text and "peak 8" in text and "sum 14" in text
    assert [r["Total"] for r in monitor.rows(result)] == [0.0, 4.0, 8.0, 2.0]
    assert [monitor._interval(v) for v in ("1m", "5m", "1h", "1d", "PT15M", "full")] == \
        ["PT1M", "PT5M", "PT1H", "P1D", "PT15M", "FULL"]
    assert monitor.timespan("2026-07-14T10:00:00Z", None, "2h") == "2026-07-14T10:00:00Z/2026-07-14T12:00:00Z"
    assert monitor.timespan(None, "2026-07-14T10:00:00+02:00", "30m") == "2026-07-14T07:30:00Z/2026-07-14T08:00:00Z"


class PruneRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    async def prune(self, rollups_before_minute: int, usage_before_ms: int) -> tuple[int, int]:
        self.calls.append((rollups_before_minute, usage_before_ms))
        return 0, 0


async def test_retention_task_prunes_at_start_with_the_configured_days():
    import asyncio
    import time as clock

    from lapis.metrics.metering import Metering
    from lapis.settings import load

    metering = Metering.__new__(Metering)
    metering.settings = load({"LAPIS_HOME": "/nonexistent", "LAPIS_METRICS_RETENTION_DAYS": "2",
                              "LAPIS_USAGE_RETENTION_DAYS": "30"})
    metering.store = PruneRecorder()  # type: ignore[assignment]
    before = clock.time()
    task = asyncio.get_running_loop().create_task(metering._retention())
    for _ in range(100):
        if metering.store.calls:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    (minute, usage_ms), = metering.store.calls
    assert int(before // 60) - 2 * 1440 <= minute <= int(clock.time() // 60) - 2 * 1440
    assert (before - 30 * 86400) * 1000 - 1 <= usage_ms <= (clock.time() - 30 * 86400) * 1000


async def test_provisioned_utilization_per_minute_averaged_per_interval():
    from types import SimpleNamespace

    from lapis.metrics.query import query_metrics

    minute0 = int(datetime(2026, 7, 14, 10, 0, tzinfo=timezone.utc).timestamp() // 60)

    class Store:
        async def rollup_buckets(self, *args):
            return []

        async def deployment_minutes(self, account_id, start, end):
            assert (start, end) == (minute0, minute0 + 10)
            return [{"minute": minute0, "deployment": "ptu", "prompt_tokens": 300, "generated_tokens": 200},
                    {"minute": minute0 + 1, "deployment": "PTU", "prompt_tokens": 1000, "generated_tokens": 0},
                    {"minute": minute0 + 7, "deployment": "ptu", "prompt_tokens": 100, "generated_tokens": 0},
                    {"minute": minute0, "deployment": "standard", "prompt_tokens": 999, "generated_tokens": 0}]

    def dep(name: str, sku: str) -> SimpleNamespace:
        return SimpleNamespace(name=name, sku=sku, limits=SimpleNamespace(tokens=1000))

    directory = SimpleNamespace(by_id={"id1": SimpleNamespace(deployments={
        "ptu": dep("ptu", "ProvisionedManaged"), "standard": dep("standard", "Standard")})})
    account = SimpleNamespace(id="id1", subscription_id="s", group="g", name="a", location="eastus")
    query = params.parse({"metricnames": "AzureOpenAIProvisionedManagedUtilizationV2", "interval": "PT5M",
                          "timespan": "2026-07-14T10:00:00Z/2026-07-14T10:10:00Z", "aggregation": "Average,Maximum",
                          "$filter": "ModelDeploymentName eq '*'"})
    answer = await query_metrics(Store(), directory, account, query)  # type: ignore[arg-type]
    (series,) = answer["value"][0]["timeseries"]
    assert series["metadatavalues"][0]["value"] == "ptu"
    first, second = series["data"]
    assert (first["average"], first["maximum"]) == (pytest.approx((50 + 100) / 5), 100.0)
    assert (second["average"], second["maximum"]) == (pytest.approx(10 / 5), 10.0)
    assert answer["value"][0]["unit"] == "Percent"


def test_full_interval_is_one_bucket_even_for_a_timespan_off_the_minute() -> None:
    from lapis.metrics import params

    query = params.parse({"timespan": "2026-11-27T08:00:50Z/2026-11-27T08:02:10Z", "interval": "FULL"})
    assert query.end_minute - query.start_minute == query.step  # one bucket: 08:00 to 08:03 (80 s touching three minutes)
