"""Duly's HTTP API: FastAPI app, auth and one router per domain."""
