"""Metrics: /metrics (Prometheus) and Azure Monitor's metrics, from every data-plane request.

    live.py         hot-path counters and histograms, exposed when scraped
    rollup.py       per-minute rollups, flushed to the store in batches
    definitions.py  Azure OpenAI's metric names, units, aggregations, dimensions
    query.py        the metrics query (Azure Monitor's Metrics - List) over the rollups
    exposition.py   the per-app registry behind /metrics
    health.py       Lapis's own counters (limiter, backend, balancer)
    metering.py     the observer that feeds all of it, and usage (lapis.usage)
"""
