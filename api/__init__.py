"""Duly's HTTP API: FastAPI app, auth and one router per domain."""

# The id convertors must be registered before any router module builds its routes.
from api import paths as _paths  # noqa: F401
