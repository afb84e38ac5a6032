"""The notification ledger (the outbox when no provider is configured)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CurrentPrincipal, SessionDep, visible_person_ids
from api.pagination import Limit, Offset
from api.schemas import NotificationRead
from services import notifications

router = APIRouter(prefix="/notifications", tags=["notifications"])


@router.get("", response_model=list[NotificationRead])
def list_notifications(
    session: SessionDep,
    principal: CurrentPrincipal,
    status: Annotated[
        str | None,
        Query(
            description="pending, sent, delivered, retrying, failed, held (a provider refused "
            "Duly's credentials), skipped (the person left or is on leave), queued, folded"
        ),
    ] = None,
    workflow_id: Annotated[str | None, Query()] = None,
    person: Annotated[str | None, Query(description="A person's external id")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[NotificationRead]:
    """Messages Duly sent or queued, newest first, scoped like obligations."""
    rows = notifications.list_notifications(
        session,
        scope=visible_person_ids(session, principal),
        status=status,
        workflow_id=workflow_id,
        person=person,
        limit=limit,
        offset=offset,
    )
    return [
        NotificationRead(
            id=n.id,
            workflow_id=n.workflow_id,
            person=external_id,
            channel=n.channel,
            provider=n.provider,
            kind=n.kind,
            stage=n.stage,
            pack_hash=n.pack_hash,
            subject=n.subject,
            body=n.body,
            status=n.status,
            provider_message_id=n.provider_message_id,
            error_code=n.error_code,
            recipient_role=n.recipient_role,
            error_reason=n.error_reason,
            attempts=n.attempts,
            delivered_at=n.delivered_at,
            acknowledged_at=n.acknowledged_at,
            fallback_of=n.fallback_of,
            fired_at=n.fired_at,
            created_at=n.created_at,
        )
        for n, external_id in rows
    ]
