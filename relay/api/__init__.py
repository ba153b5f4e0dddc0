"""The HTTP API (Litestar): subscriptions, runs, signing secrets, health and metrics."""
