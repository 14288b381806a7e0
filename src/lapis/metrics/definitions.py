"""Azure OpenAI's metrics (namespace Microsoft.CognitiveServices/accounts) and their dimensions.

Names, display names and units after azure-wire-reference.md §10.1. How each
is worked out from the per-minute rollups (lapis.metrics.rollup) is `kind`:

    count      requests matching `statuses` (all, 2xx-3xx, 4xx-5xx, 4xx, 5xx)
    tokens     a sum of token counts over requests (`field`)
    latency    per-request milliseconds: average, minimum, maximum (`field`)
    mean       a per-request rate averaged over the requests that have one
    ratio      a percentage of two sums (cache match rate, availability)
    ptu        provisioned utilization: tokens in a minute over the
               deployment's tokens per minute, in percent, per minute

Aggregations a metric does not support are left out of its data points;
an aggregation with no data in an interval is left out too, except Total and
Count, which Azure reports as 0 (Lapis's choice after Azure's portal, which
draws count metrics as 0 where nothing happened).

Lapis leaves out what it has no data for: the RAI (content safety) metrics,
fine-tuning hours, Normalized TTFT and the IsSpillover, FeatureName and
UsageChannel dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE = "Microsoft.CognitiveServices/accounts"
AGGREGATIONS = ("Total", "Average", "Maximum", "Minimum", "Count")

COUNTS = ("Total", "Count")
SUMS = ("Total", "Average", "Count")
LATENCIES = ("Average", "Maximum", "Minimum", "Count")
MEANS = ("Average", "Count")
PERCENTS = ("Average",)


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    display: str
    unit: str  # Count | Milliseconds | Percent | CountPerSecond
    primary: str  # the aggregation Azure returns when none is asked for
    aggregations: tuple[str, ...]
    kind: str  # see the module docstring
    field: str = ""
    statuses: str = "all"  # for counts: all | ok | error | client | server
    description: str = ""


METRICS: tuple[MetricDef, ...] = (
    MetricDef("AzureOpenAIRequests", "Azure OpenAI Requests", "Count", "Total", COUNTS, "count",
              description="Number of calls made to the Azure OpenAI API over a period of time."),
    MetricDef("ProcessedPromptTokens", "Processed Prompt Tokens", "Count", "Total", SUMS, "tokens", "prompt",
              description="Number of prompt tokens processed (input) on an OpenAI model."),
    MetricDef("GeneratedTokens", "Generated Completion Tokens", "Count", "Total", SUMS, "tokens", "generated",
              description="Number of tokens generated (output) from an OpenAI model."),
    MetricDef("TokenTransaction", "Processed Inference Tokens", "Count", "Total", SUMS, "tokens", "transaction",
              description="Number of inference tokens processed on an OpenAI model: prompt plus generated."),
    MetricDef("ActiveTokens", "Active Tokens", "Count", "Total", SUMS, "tokens", "active",
              description="Total tokens minus cached tokens over a period of time."),
    MetricDef("AzureOpenAIContextTokensCacheMatchRate", "Prompt Token Cache Match Rate", "Percent", "Average",
              PERCENTS, "ratio", "cache", description="Percentage of prompt tokens served from the cache."),
    MetricDef("AzureOpenAIProvisionedManagedUtilizationV2", "Provisioned-managed Utilization V2", "Percent",
              "Average", ("Average", "Maximum"), "ptu",
              description="Utilization of a provisioned deployment: tokens per minute over its capacity."),
    MetricDef("AzureOpenAITimeToResponse", "Time to Response", "Milliseconds", "Average", LATENCIES, "latency",
              "ttfb", description="Time from the request to the first byte of the response."),
    MetricDef("AzureOpenAITTLTInMS", "Time to Last Byte", "Milliseconds", "Average", LATENCIES, "latency",
              "ttlt", description="Time from the request to the last byte of the response."),
    MetricDef("AzureOpenAINormalizedTBTInMS", "Time Between Tokens", "Milliseconds", "Average", MEANS, "mean",
              "tbt", description="For streamed responses, the time between generated tokens."),
    MetricDef("AzureOpenAITokenPerSecond", "Tokens per Second", "CountPerSecond", "Average", MEANS, "mean", "tps",
              description="Generation speed: generated tokens over the time spent generating them."),
    MetricDef("AzureOpenAIAvailabilityRate", "Availability rate", "Percent", "Average", PERCENTS, "ratio",
              "availability", description="Percentage of requests not failed by the service (status below 500)."),
    MetricDef("TotalCalls", "Total Calls", "Count", "Total", COUNTS, "count", statuses="all",
              description="Total number of calls."),
    MetricDef("SuccessfulCalls", "Successful Calls", "Count", "Total", COUNTS, "count", statuses="ok",
              description="Number of successful calls."),
    MetricDef("TotalErrors", "Total Errors", "Count", "Total", COUNTS, "count", statuses="error",
              description="Total number of calls with an error response (HTTP status 4xx or 5xx)."),
    MetricDef("ClientErrors", "Client Errors", "Count", "Total", COUNTS, "count", statuses="client",
              description="Number of calls with a client-side error (HTTP status 4xx)."),
    MetricDef("ServerErrors", "Server Errors", "Count", "Total", COUNTS, "count", statuses="server",
              description="Number of calls with a service error (HTTP status 5xx)."),
)
BY_NAME = {m.name.lower(): m for m in METRICS}

# Dimension name -> the rollup column it reads. Filters match names without
# regard to case; responses name them in lower case, as Azure does.
DIMENSIONS = {
    "ModelDeploymentName": "deployment",
    "ModelName": "model",
    "ModelVersion": "model_version",
    "Region": "region",
    "StatusCode": "status_code",
    "StreamType": "streaming",
    "ApiName": "operation",
    "OperationName": "operation",
}
DIMENSION_BY_LOWER = {d.lower(): d for d in DIMENSIONS}
STREAM_TYPES = {1: "Streaming", 0: "Non-Streaming"}


def dimension_value(name: str, row: dict) -> str:
    """The value of dimension `name` in a rollup row, as Azure shows it."""
    value = row[DIMENSIONS[name]]
    if name == "StreamType":
        return STREAM_TYPES[int(value)]
    return str(value)
