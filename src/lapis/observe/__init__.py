"""Observing the data plane: one record per request, handed to whoever listens (metrics, usage, logs)."""
