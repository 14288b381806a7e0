"""Diagnostic settings and resource logs (issue #6).

    settings.py    the ARM resource's properties, destinations, residency rule
    store.py       the diagnostic_settings table
    shaping.py     records as Azure writes them (resource logs, metrics, Log Analytics rows)
    pending.py     a data-plane request on the sinks' queues, shaped when a sink takes it
    stencils.py    the same bytes as shaping, cheaply, for requests alike
    queue.py       the bounded queue in front of each sink, with retries
    files.py       Log Analytics workspace and storage archive stand-ins (JSON lines)
    webhook.py     batched HTTP POST
    eventhubs.py   the Event Hubs stand-in on Redis Streams
    otlp.py        OTLP/HTTP JSON logs
    metrics.py     AllMetrics per minute
    query.py       the small query language of `lapis monitor log-analytics query`
    content.py     opt-in prompt and response text: capture, sealing at rest, opening on query
    dispatcher.py  Diagnostics: settings in force, sinks, the data-plane observer
    wiring.py      start and stop, from create_app
"""
