"""The base of every contract model: frozen, unknown fields refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Contract(BaseModel):
    """Frozen, and unknown fields are refused: a typo in a payload fails loudly."""

    model_config = ConfigDict(frozen=True, extra="forbid")
