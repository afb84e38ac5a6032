"""People directory: import and read."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/people", tags=["people"])
