"""Learning-system integrations (HR): configure, test, schedule and sync connectors now.

Each integration (Moodle, xAPI LRS pull, CSV drop) is synced by its own Temporal Schedule;
creating or changing one creates or updates the schedule (idempotently). While Temporal is
unreachable the row is kept and the answer says the schedule is pending: the worker ensures every
integration's schedule when it starts. See :mod:`services.integrations`.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import SessionDep, SettingsDep, TemporalDep, require_roles
from domain.roles import Role
from duly.settings import Settings
from services import integrations as service
from services.integrations import IntegrationRead
from store.db import committed
from store.tokens import Principal

router = APIRouter(prefix="/integrations", tags=["integrations"])

HrAdmin = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN))]
IntegrationId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class IntegrationIn(BaseModel):
    """A new integration."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    kind: service.Kind
    config: dict[str, Any] = Field(default_factory=dict)
    secret_ref: str | None = Field(
        default=None, max_length=300, description="env:NAME or file:/path; never the secret."
    )
    enabled: bool = True


class IntegrationPatch(BaseModel):
    """Changes to an integration (omitted fields stay)."""

    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] | None = None
    secret_ref: str | None = Field(default=None, max_length=300)
    enabled: bool | None = None
    reset_cursor: bool = Field(default=False, description="Sync from the beginning next time.")


class IntegrationAnswer(BaseModel):
    """An integration and what became of its schedule."""

    integration: IntegrationRead
    schedule: str


class TestAnswer(BaseModel):
    """The connection test's outcome (never the secret)."""

    ok: bool
    detail: str


class SyncAnswer(BaseModel):
    """The sync started now."""

    workflow_id: str


async def _schedule(temporal: TemporalDep, row: IntegrationRead, settings: Settings) -> str:
    try:
        client = await temporal()
        return await service.ensure_schedule(client, row, settings)
    except Exception as exc:  # noqa: BLE001 - the row is kept; the worker ensures it at start
        return f"pending: Temporal unavailable ({type(exc).__name__}); the worker creates it"


@router.get("", response_model=list[IntegrationRead], summary="List integrations")
def list_integrations(session: SessionDep, principal: HrAdmin) -> list[IntegrationRead]:
    """Every integration with its cursor, last sync and error count."""
    return service.list_integrations(session)


@router.post(
    "",
    response_model=IntegrationAnswer,
    status_code=status.HTTP_201_CREATED,
    summary="Add an integration",
    responses={422: {"description": "Unknown kind, bad config or secret reference."}},
)
async def create_integration(
    body: IntegrationIn,
    session: SessionDep,
    principal: HrAdmin,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> IntegrationAnswer:
    """Store the integration (audited) and create its schedule."""
    row = await committed(
        session,
        lambda: service.create_integration(
            session,
            name=body.name,
            kind=body.kind,
            config=body.config,
            secret_ref=body.secret_ref,
            enabled=body.enabled,
            actor=principal.actor,
            actor_role=principal.role.value,
        ),
    )
    return IntegrationAnswer(integration=row, schedule=await _schedule(temporal, row, settings))


@router.get(
    "/{integration_id}",
    response_model=IntegrationRead,
    summary="One integration",
    responses={404: {"description": "No integration has this id."}},
)
def get_integration(
    integration_id: IntegrationId, session: SessionDep, principal: HrAdmin
) -> IntegrationRead:
    """The integration, its cursor and how its last sync went."""
    return service.get_integration(session, integration_id=integration_id)


@router.patch(
    "/{integration_id}",
    response_model=IntegrationAnswer,
    summary="Change an integration",
    responses={404: {"description": "No integration has this id."}, 422: {}},
)
async def update_integration(
    integration_id: IntegrationId,
    body: IntegrationPatch,
    session: SessionDep,
    principal: HrAdmin,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> IntegrationAnswer:
    """Change config, secret reference or enabled (audited); the schedule follows."""
    row = await committed(
        session,
        lambda: service.update_integration(
            session,
            integration_id=integration_id,
            actor=principal.actor,
            actor_role=principal.role.value,
            config=body.config,
            secret_ref=body.secret_ref,
            enabled=body.enabled,
            reset_cursor=body.reset_cursor,
        ),
    )
    return IntegrationAnswer(integration=row, schedule=await _schedule(temporal, row, settings))


@router.delete(
    "/{integration_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove an integration",
    responses={404: {"description": "No integration has this id."}},
)
async def delete_integration(
    integration_id: IntegrationId,
    session: SessionDep,
    principal: HrAdmin,
    temporal: TemporalDep,
) -> None:
    """Delete the integration (audited) and its schedule; its dead letters stay."""
    await committed(
        session,
        lambda: service.delete_integration(
            session,
            integration_id=integration_id,
            actor=principal.actor,
            actor_role=principal.role.value,
        ),
    )
    # A schedule left behind (Temporal down) only runs syncs that find no row.
    with suppress(Exception):
        await service.remove_schedule(await temporal(), integration_id)


@router.post(
    "/{integration_id}/test",
    response_model=TestAnswer,
    summary="Test an integration's connection",
    responses={404: {"description": "No integration has this id."}},
)
async def test_integration(
    integration_id: IntegrationId,
    session: SessionDep,
    principal: HrAdmin,
    settings: SettingsDep,
) -> TestAnswer:
    """Reach the source with the integration's credentials; ``ok`` false says why."""
    ok, detail = await service.check_connection(
        session, integration_id=integration_id, settings=settings
    )
    return TestAnswer(ok=ok, detail=detail)


@router.post(
    "/{integration_id}/sync",
    response_model=SyncAnswer,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Sync an integration now",
    responses={404: {"description": "No integration has this id."}},
)
async def sync_integration(
    integration_id: IntegrationId,
    session: SessionDep,
    principal: HrAdmin,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> SyncAnswer:
    """Start a sync outside the schedule (one at a time; a running one is answered)."""
    await committed(
        session, lambda: service.get_integration(session, integration_id=integration_id)
    )
    workflow_id = await service.sync_now(
        await temporal(), integration_id=integration_id, settings=settings, trigger="api"
    )
    return SyncAnswer(workflow_id=workflow_id)
