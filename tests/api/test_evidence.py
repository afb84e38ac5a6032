"""Evidence packs: what the ZIP holds, its SHA-256 manifest, the API route and the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from api.app import create_app
from domain.roles import Role
from duly.cli import app as cli
from duly.demo import load_demo_people
from duly.settings import Settings
from services import evidence
from store import audit
from store.db import Database
from store.decisions import record_decision
from store.models import AuditEntry, Notification, Obligation, Person
from tests.conftest import bearer
from tests.fakes.temporal import FakeTemporal

NOW = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
SINCE, UNTIL = date(2026, 1, 1), date(2026, 6, 30)
HIPAA = "assignment/p-1020/hipaa/1"
BLS = "certification/p-1020/bls"


async def fixed_clock() -> datetime:
    return NOW


def _seed(db: Database) -> None:
    with db.session() as session:
        assert load_demo_people(session).errors == []
    with db.session() as session:
        ids = {p.external_id: p.id for p in session.scalars(select(Person))}
        for wid, kind, requirement in ((HIPAA, "training", "hipaa"), (BLS, "certification", "bls")):
            session.add(
                Obligation(
                    workflow_id=wid,
                    person_id=ids["p-1020"],
                    kind=kind,
                    requirement_id=requirement,
                    requirement_title=requirement.upper(),
                    due_date=date(2026, 5, 1),
                    status="completed" if kind == "training" else "compliant",
                    pack_hash="pack-v1",
                    as_of=datetime(2026, 4, 2, tzinfo=UTC),
                    acknowledged_at=datetime(2026, 3, 3, tzinfo=UTC),
                    completed_at=datetime(2026, 4, 2, tzinfo=UTC) if kind == "training" else None,
                )
            )
        # Someone else's obligation: never in p-1020's pack.
        session.add(
            Obligation(
                workflow_id="assignment/p-1021/hipaa/1",
                person_id=ids["p-1021"],
                kind="training",
                requirement_id="hipaa",
                requirement_title="HIPAA",
                due_date=date(2026, 5, 1),
                status="overdue",
                pack_hash="pack-v1",
                as_of=datetime(2026, 5, 2, tzinfo=UTC),
            )
        )
        for at, status in (
            (datetime(2025, 12, 20, tzinfo=UTC), "assigned"),  # before the range
            (datetime(2026, 3, 1, tzinfo=UTC), "due_soon"),
            (datetime(2026, 4, 2, tzinfo=UTC), "completed"),
        ):
            record_decision(
                session,
                workflow_id=HIPAA,
                person_id=ids["p-1020"],
                kind="training",
                requirement_id="hipaa",
                status=status,
                rule=status,
                pack_hash="pack-v1",
                facts={"completed": status == "completed"},
                decided_at=at,
                source="rules",
                trigger="signal: complete" if status == "completed" else "stage: -30d",
            )
        for n, fired in enumerate(
            (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 7, 5, tzinfo=UTC))
        ):
            session.add(
                Notification(
                    idempotency_key=f"k-{n}",
                    workflow_id=HIPAA,
                    person_id=ids["p-1020"],
                    recipient_address="ava.fakeworth@demo.duly.example",
                    channel="email",
                    provider="outbox",
                    kind="training",
                    stage="-30d",
                    pack_hash="pack-v1",
                    subject="HIPAA is due",
                    body="Please complete HIPAA",
                    status="delivered",
                    provider_message_id=f"msg-{n}",
                    recipient_role="learner",
                    fired_at=fired,
                    delivered_at=fired,
                    acknowledged_at=datetime(2026, 3, 3, tzinfo=UTC) if n == 0 else None,
                )
            )
        audit.record(
            session,
            actor="hr:x",
            actor_role="hr_admin",
            action="assignment.extend",
            target=HIPAA,
            after={"new_due_date": "2026-05-01"},
        )
        audit.record(
            session,
            actor="hr:x",
            actor_role="hr_admin",
            action="assignment.extend",
            target="assignment/p-1021/hipaa/1",
            after={"new_due_date": "2026-05-01"},
        )
        # The audit log stamps the wall clock; move the two entries into the range.
        session.flush()
    with db.session() as session:
        if db.engine.dialect.name == "sqlite":
            session.execute(sa.text("DROP TRIGGER IF EXISTS audit_log_no_update"))
        else:
            session.execute(sa.text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update"))
    with db.session() as session:
        # Re-stamp and re-chain as if written on 2026-04-01 (test set-up, not tampering).
        prev = audit.GENESIS
        for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.id)):
            entry.at = datetime(2026, 4, 1, tzinfo=UTC)
            entry.prev_hash = prev
            fields = {
                k: getattr(entry, k)
                for k in ("actor", "actor_role", "action", "target", "before", "after")
            }
            entry.hash = audit._digest(prev, entry.at, fields)
            prev = entry.hash


def _unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _check_manifest(files: dict[str, bytes]) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(files["manifest.json"])
    listed = manifest["files"]
    assert set(listed) == set(files) - {"manifest.json", "SHA256SUMS"}
    for name, meta in listed.items():
        assert hashlib.sha256(files[name]).hexdigest() == meta["sha256"], name
        assert len(files[name]) == meta["bytes"]
    sums = dict(reversed(line.split("  ", 1)) for line in files["SHA256SUMS"].decode().splitlines())
    assert {n: m["sha256"] for n, m in listed.items()} == sums
    return manifest


async def _fetch(workflow_id: str) -> dict[str, Any] | None:
    return (
        {"events": [{"eventId": "1", "workflowId": workflow_id}]} if workflow_id == HIPAA else None
    )


@pytest.mark.asyncio
async def test_a_persons_pack_holds_their_evidence_in_range(db: Database) -> None:
    _seed(db)
    with db.session() as session:
        gathered = evidence.gather(session, since=SINCE, until=UNTIL, person="p-1020")
    data = await evidence.evidence_pack(gathered, fetch=_fetch, generated_at=NOW)
    files = _unzip(data)
    manifest = _check_manifest(files)
    assert manifest["selection"] == {"person": "p-1020"}
    obligations = json.loads(files["obligations.json"])
    assert [o["workflow_id"] for o in obligations] == [HIPAA, BLS]
    assert files["obligations.csv"].decode().splitlines()[0].startswith("workflow_id,person,")
    decided = json.loads(files["decisions.json"])
    assert [(d["status"], d["trigger"]) for d in decided] == [
        ("due_soon", "stage: -30d"),
        ("completed", "signal: complete"),
    ]
    messages = json.loads(files["notifications.json"])
    assert [(m["provider_message_id"], m["status"]) for m in messages] == [("msg-0", "delivered")]
    assert b"ava.fakeworth" not in data  # receipts, never addresses
    acks = json.loads(files["acknowledgements.json"])
    assert {a["via"].split(" ")[0] for a in acks} == {"notification", "recorded"}
    log = json.loads(files["audit_log.json"])
    assert [(e["target"], e["hash_recomputes"]) for e in log] == [(HIPAA, True)]
    verified = json.loads(files["audit_verification.json"])
    assert verified["chain_intact"] is True and verified["slice_entries"] == 1
    history = json.loads(files["histories/assignment_p-1020_hipaa_1.json"])
    assert history["events"][0]["workflowId"] == HIPAA
    assert json.loads(files["histories/_missing.json"]) == {
        BLS: "Temporal has no such workflow (retention may have removed it)"
    }
    # The same data gives the same bytes.
    with db.session() as session:
        again = evidence.gather(session, since=SINCE, until=UNTIL, person="p-1020")
    assert await evidence.evidence_pack(again, fetch=_fetch, generated_at=NOW) == data


@pytest.mark.asyncio
async def test_a_broken_chain_shows_in_the_pack(db: Database) -> None:
    _seed(db)
    with db.session() as session:
        session.execute(
            sa.text("UPDATE audit_log SET target = 'forged' WHERE target = :t"),
            {"t": "assignment/p-1021/hipaa/1"},
        )
    with db.session() as session:
        gathered = evidence.gather(session, since=SINCE, until=UNTIL, requirement="hipaa")
    files = _unzip(await evidence.evidence_pack(gathered, fetch=None, generated_at=NOW))
    verified = json.loads(files["audit_verification.json"])
    assert verified["chain_intact"] is False and len(verified["broken_entry_ids"]) == 1
    assert {o["person"] for o in json.loads(files["obligations.json"])} == {"p-1020", "p-1021"}
    assert set(json.loads(files["histories/_missing.json"])) == {HIPAA, "assignment/p-1021/hipaa/1"}


def test_selection_is_required_and_ranges_are_checked(sqlite_db: Database) -> None:
    _seed(sqlite_db)
    from services.errors import Invalid, NotFound

    with sqlite_db.session() as session:
        with pytest.raises(Invalid):
            evidence.gather(session, since=SINCE, until=UNTIL)
        with pytest.raises(Invalid):
            evidence.gather(session, since=UNTIL, until=SINCE, person="p-1020")
        with pytest.raises(NotFound):
            evidence.gather(session, since=SINCE, until=UNTIL, person="nobody")
        team = evidence.gather(session, since=SINCE, until=UNTIL, team="p-1010")
        assert {o["person"] for o in json.loads(team.files["obligations.json"])} == {
            "p-1020",
            "p-1021",
        }


@pytest.fixture
def client(sqlite_db: Database) -> Iterator[TestClient]:
    _seed(sqlite_db)
    settings = Settings(env="test", temporal_address="127.0.0.1:1", rate_limit_per_token="off")
    app = create_app(
        settings,
        database=sqlite_db,
        temporal_client=FakeTemporal(),  # type: ignore[arg-type]
        clock=fixed_clock,
    )
    with TestClient(app) as test_client:
        yield test_client


def test_the_api_downloads_a_pack_and_audits_it(client: TestClient, sqlite_db: Database) -> None:
    url = f"/audit/evidence?person=p-1020&since={SINCE}&until={UNTIL}"
    answer = client.get(url, headers=bearer(sqlite_db, Role.AUDITOR))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    assert (
        "evidence-person-p-1020-2026-01-01-2026-06-30.zip" in answer.headers["content-disposition"]
    )
    manifest = _check_manifest(_unzip(answer.content))
    assert manifest["generated_at"] == NOW.isoformat()
    with sqlite_db.session() as session:
        exported = session.scalar(select(AuditEntry).where(AuditEntry.action == "evidence.export"))
        assert exported is not None and exported.after is not None
        assert exported.after["person"] == "p-1020"
    refused = client.get(url, headers=bearer(sqlite_db, Role.LEARNER, "p-1020"))
    assert refused.status_code == 403
    missing = client.get(
        f"/audit/evidence?since={SINCE}&until={UNTIL}", headers=bearer(sqlite_db, Role.HR_ADMIN)
    )
    assert missing.status_code == 422


def test_duly_audit_export_writes_the_pack(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(sqlite_db)
    monkeypatch.setenv("DULY_DATABASE_URL", sqlite_db.engine.url.render_as_string(False))
    out = tmp_path / "pack.zip"
    result = CliRunner().invoke(
        cli,
        [
            "audit",
            "export",
            "--team",
            "p-1010",
            "--since",
            str(SINCE),
            "--until",
            str(UNTIL),
            "--out",
            str(out),
            "--no-histories",
        ],
    )
    assert result.exit_code == 0, result.output
    files = _unzip(out.read_bytes())
    assert _check_manifest(files)["selection"] == {"team": "p-1010", "people": 5}
    bad = CliRunner().invoke(
        cli, ["audit", "export", "--since", "x", "--until", str(UNTIL), "--out", str(out)]
    )
    assert bad.exit_code == 2
