"""Evidence packs: one ZIP an auditor can take away for a person, a team or a requirement.

What it holds, for a date range (UTC days, both included):

- ``obligations.json`` / ``obligations.csv``: the read model of every selected obligation;
- ``decisions.json``: every status decision recorded in the range (rule, pack hash, facts, the
  triggering event);
- ``notifications.json``: every message fired in the range with its delivery receipt (status,
  provider message id, delivered/acknowledged at, failure codes; no addresses);
- ``acknowledgements.json``: who acknowledged what, when (ledger and read model);
- ``audit_log.json``: the audit-log entries about the selection in the range, each with its
  hashes and whether it recomputes, and ``audit_verification.json``: the whole chain verified;
- ``histories/<workflow id>.json``: each workflow's raw Temporal history (what Temporal's
  Replayer accepts), or why it could not be fetched;
- ``manifest.json`` and ``SHA256SUMS``: the SHA-256 of every other file (``sha256sum -c``).

The ZIP is deterministic for the same data: entries are sorted and stamped with the pack's
generation instant.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from services.errors import Invalid, NotFound
from services.exports import csv_text
from store import audit, decisions
from store.models import AuditEntry, Notification, Obligation, Person
from store.people import reports_of

#: At most this many workflow histories are fetched into one pack (the rest are listed).
MAX_HISTORIES = 500
#: The longest date range one pack covers.
MAX_RANGE_DAYS = 3660

#: Fetches one workflow's raw history as JSON (None: Temporal does not know the workflow).
HistoryFetcher = Callable[[str], Awaitable[dict[str, Any] | None]]


@dataclass
class Evidence:
    """What the store says about a selection (everything but the workflow histories)."""

    selection: dict[str, Any]
    since: datetime
    until: datetime
    files: dict[str, bytes] = field(default_factory=dict)
    workflow_ids: list[str] = field(default_factory=list)


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()


def _range(since: date, until: date) -> tuple[datetime, datetime]:
    if until < since:
        raise Invalid("until is before since")
    if (until - since).days > MAX_RANGE_DAYS:
        raise Invalid(f"the range may cover at most {MAX_RANGE_DAYS} days")
    start = datetime.combine(since, time.min, tzinfo=UTC)
    end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC) - timedelta(
        microseconds=1
    )
    return start, end


def _people(
    session: Session, *, person: str | None, team: str | None
) -> tuple[list[Person] | None, dict[str, Any]]:
    if person is not None:
        row = session.scalar(select(Person).where(Person.external_id == person))
        if row is None:
            raise NotFound(f"no person {person!r}")
        return [row], {"person": person}
    if team is not None:
        lead = session.scalar(select(Person).where(Person.external_id == team))
        if lead is None:
            raise NotFound(f"no manager {team!r}")
        ids = sorted(reports_of(session, lead.id))
        rows = list(session.scalars(select(Person).where(Person.id.in_(ids)).order_by(Person.id)))
        return rows, {"team": team, "people": len(rows)}
    return None, {}


def gather(
    session: Session,
    *,
    since: date,
    until: date,
    person: str | None = None,
    team: str | None = None,
    requirement: str | None = None,
) -> Evidence:
    """Read everything the store holds about a selection in a date range.

    The selection is a person, a team (a manager's reports, direct and indirect) or a
    requirement; a requirement may narrow a person or a team.

    Raises:
        Invalid: Nothing selected, or a bad range.
        NotFound: An unknown person or manager.
    """
    if person is None and team is None and requirement is None:
        raise Invalid("choose a person, a team (its manager) or a requirement")
    if person is not None and team is not None:
        raise Invalid("choose a person or a team, not both")
    start, end = _range(since, until)
    people, selection = _people(session, person=person, team=team)
    if requirement is not None:
        selection["requirement"] = requirement
    person_ids = None if people is None else [p.id for p in people]

    stmt = select(Obligation).order_by(Obligation.workflow_id)
    if person_ids is not None:
        stmt = stmt.where(Obligation.person_id.in_(person_ids))
    if requirement is not None:
        stmt = stmt.where(Obligation.requirement_id == requirement)
    obligations = list(session.scalars(stmt).unique())
    wids = [o.workflow_id for o in obligations]
    external = {o.person_id: o.person.external_id for o in obligations}
    for p in people or []:
        external[p.id] = p.external_id

    evidence = Evidence(selection=selection, since=start, until=end, workflow_ids=wids)
    ob_rows = [
        {
            "workflow_id": o.workflow_id,
            "person": o.person.external_id,
            "kind": o.kind,
            "requirement_id": o.requirement_id,
            "requirement_title": o.requirement_title,
            "cycle": o.cycle,
            "status": o.status,
            "stage": o.stage,
            "due_date": _iso(o.due_date),
            "expiry_date": _iso(o.expiry_date),
            "pack_hash": o.pack_hash,
            "started_at": _iso(o.started_at),
            "acknowledged_at": _iso(o.acknowledged_at),
            "completed_at": _iso(o.completed_at),
            "exempt": o.exempt,
            "exempt_until": _iso(o.exempt_until),
            "as_of": _iso(o.as_of),
        }
        for o in obligations
    ]
    evidence.files["obligations.json"] = _json(ob_rows)
    header = list(ob_rows[0]) if ob_rows else ["workflow_id"]
    evidence.files["obligations.csv"] = csv_text(
        header, ([row[h] for h in header] for row in ob_rows)
    ).encode()

    recorded = decisions.history(session, workflow_ids=wids, since=start, until=end)
    evidence.files["decisions.json"] = _json(
        [
            {
                "workflow_id": d.workflow_id,
                "person": external.get(d.person_id),
                "requirement_id": d.requirement_id,
                "status": d.status,
                "severity": d.severity,
                "rule": d.rule,
                "pack_hash": d.pack_hash,
                "facts": d.facts,
                "trigger": d.trigger,
                "source": d.source,
                "decided_at": _iso(d.decided_at),
            }
            for d in recorded
        ]
    )

    messages = list(
        session.scalars(
            select(Notification)
            .where(Notification.workflow_id.in_(wids))
            .where(Notification.fired_at >= start)
            .where(Notification.fired_at <= end)
            .order_by(Notification.fired_at, Notification.id)
        )
    )
    evidence.files["notifications.json"] = _json(
        [
            {
                "id": n.id,
                "workflow_id": n.workflow_id,
                "stage": n.stage,
                "kind": n.kind,
                "recipient_role": n.recipient_role,
                "channel": n.channel,
                "provider": n.provider,
                "subject": n.subject,
                "status": n.status,
                "attempts": n.attempts,
                "provider_message_id": n.provider_message_id,
                "error_code": n.error_code,
                "error_reason": n.error_reason,
                "fired_at": _iso(n.fired_at),
                "delivered_at": _iso(n.delivered_at),
                "acknowledged_at": _iso(n.acknowledged_at),
                "fallback_of": n.fallback_of,
                "pack_hash": n.pack_hash,
            }
            for n in messages
        ]
    )
    acks = [
        {
            "workflow_id": n.workflow_id,
            "via": f"notification {n.id} ({n.channel})",
            "acknowledged_at": _iso(n.acknowledged_at),
        }
        for n in messages
        if n.acknowledged_at is not None
    ] + [
        {
            "workflow_id": o.workflow_id,
            "via": "recorded by the workflow",
            "acknowledged_at": _iso(o.acknowledged_at),
        }
        for o in obligations
        if o.acknowledged_at is not None and start <= o.acknowledged_at <= end
    ]
    evidence.files["acknowledgements.json"] = _json(
        sorted(acks, key=lambda a: (str(a["acknowledged_at"]), str(a["workflow_id"])))
    )

    targets = set(wids) | {f"person/{e}" for e in external.values()} | set(external.values())
    audit_stmt = (
        select(AuditEntry)
        .where(AuditEntry.at >= start)
        .where(AuditEntry.at <= end)
        .order_by(AuditEntry.id)
    )
    if requirement is not None and person_ids is None:
        audit_stmt = audit_stmt.where(AuditEntry.target.in_(sorted(targets)))
    else:
        audit_stmt = audit_stmt.where(
            or_(
                AuditEntry.target.in_(sorted(targets)),
                *(AuditEntry.target.like(f"track/%/{e}") for e in sorted(set(external.values()))),
            )
        )
    entries = list(session.scalars(audit_stmt))
    evidence.files["audit_log.json"] = _json(
        [
            {
                "id": e.id,
                "at": _iso(e.at),
                "actor": e.actor,
                "actor_role": e.actor_role,
                "action": e.action,
                "target": e.target,
                "before": e.before,
                "after": e.after,
                "prev_hash": e.prev_hash,
                "hash": e.hash,
                "hash_recomputes": audit.entry_intact(e),
            }
            for e in entries
        ]
    )
    broken = audit.verify_chain(session)
    evidence.files["audit_verification.json"] = _json(
        {
            "chain_intact": not broken,
            "broken_entry_ids": broken,
            "slice_entries": len(entries),
            "slice_entries_recomputing": sum(1 for e in entries if audit.entry_intact(e)),
            "how": "each entry's hash is SHA-256 of its fields and the previous entry's hash; "
            "the whole log was walked from the first entry",
        }
    )
    return evidence


def history_fetcher(client: Client) -> HistoryFetcher:
    """Fetch raw histories from Temporal (None for a workflow Temporal does not know)."""

    async def fetch(workflow_id: str) -> dict[str, Any] | None:
        try:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        data: dict[str, Any] = json.loads(history.to_json())
        return data

    return fetch


def _safe_name(workflow_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", workflow_id)


async def add_histories(
    evidence: Evidence, fetch: HistoryFetcher | None, *, limit: int = MAX_HISTORIES
) -> None:
    """Add each workflow's raw history (or why it is missing) to the pack."""
    missing: dict[str, str] = {}
    for index, workflow_id in enumerate(evidence.workflow_ids):
        if fetch is None:
            missing[workflow_id] = "Temporal was not reachable"
            continue
        if index >= limit:
            missing[workflow_id] = f"more than {limit} workflows: fetch with `duly audit export`"
            continue
        try:
            data = await fetch(workflow_id)
        except Exception as exc:  # noqa: BLE001 - the pack says why, the rest still ships
            missing[workflow_id] = f"could not be fetched ({type(exc).__name__})"
            continue
        if data is None:
            missing[workflow_id] = "Temporal has no such workflow (retention may have removed it)"
            continue
        evidence.files[f"histories/{_safe_name(workflow_id)}.json"] = _json(data)
    if missing:
        evidence.files["histories/_missing.json"] = _json(missing)


def build_zip(evidence: Evidence, *, generated_at: datetime) -> bytes:
    """The ZIP: the files, ``manifest.json`` and ``SHA256SUMS`` over them."""
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(evidence.files.items())}
    manifest = {
        "generated_at": generated_at.isoformat(),
        "selection": evidence.selection,
        "since": evidence.since.isoformat(),
        "until": evidence.until.isoformat(),
        "workflows": len(evidence.workflow_ids),
        "files": {
            name: {"sha256": digest, "bytes": len(evidence.files[name])}
            for name, digest in sums.items()
        },
    }
    stamp = generated_at.astimezone(UTC).timetuple()[:6]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        entries = {
            **evidence.files,
            "manifest.json": _json(manifest),
            "SHA256SUMS": "".join(f"{d}  {n}\n" for n, d in sums.items()).encode(),
        }
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name])
    return out.getvalue()


async def evidence_pack(
    gathered: Evidence,
    *,
    fetch: HistoryFetcher | None,
    generated_at: datetime,
    limit: int = MAX_HISTORIES,
) -> bytes:
    """Add the histories to what :func:`gather` read and build the ZIP."""
    await add_histories(gathered, fetch, limit=limit)
    return build_zip(gathered, generated_at=generated_at)


def file_name(selection: dict[str, Any], since: date, until: date) -> str:
    """A download name such as ``evidence-person-p-1020-2026-01-01-2026-06-30.zip``."""
    what = "-".join(
        f"{k}-{_safe_name(str(v))}"
        for k, v in selection.items()
        if k in ("person", "team", "requirement")
    )
    return f"evidence-{what}-{since.isoformat()}-{until.isoformat()}.zip"
