"""Rules pack contract: how running workflows take up a new pack (rollout)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from domain.base import Contract


class PackMigration(StrEnum):
    """How running workflows take up a newly deployed pack (see store.packs.Migration)."""

    REBASE = "rebase"
    APPLY_NOW = "apply_now"


class AdoptPackSignal(Contract):
    """Signal: a new pack was deployed with ``rebase`` or ``apply_now``."""

    pack_hash: str
    mode: PackMigration
    deployed_by: str = Field(default="hr_admin", max_length=128)


class RolloutRequest(Contract):
    """Activity input: signal every running workflow pinned to another pack."""

    pack_hash: str
    mode: PackMigration
    deployed_by: str


class RolloutResult(Contract):
    """Activity output: how many workflows were signalled or had already finished."""

    signalled: int
    finished: int
