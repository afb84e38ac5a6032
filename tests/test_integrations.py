"""Learning-system connectors against local fakes of Moodle, an LRS and a drop folder."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.service import RPCError, RPCStatusCode

from domain.contracts.integration import SyncRequest, SyncResult
from duly.demo import load_demo_people
from duly.settings import Settings
from rules.loader import load_pack
from services import integrations
from services.connectors.base import ConnectorError, retry_after_seconds
from services.connectors.csvdrop import resolve_folder
from services.connectors.lrs import LrsConnector
from services.connectors.moodle import MoodleConnector
from store.db import Database
from store.integrations import Integration
from store.models import DeadLetter, Obligation, Person
from store.packs import Migration, deploy
from tests.fakes.lms import FakeLrs, FakeMoodle
from tests.fakes.temporal import FakeTemporal

PERSON = "p-1002"
EMAIL = "marcus.testwell@demo.duly.example"
REQUIREMENT = "hipaa-privacy-security"
WORKFLOW = f"assignment/{PERSON}/{REQUIREMENT}/1"
HIPAA_IRI = "https://lms.demo.duly.example/xapi/activities/hipaa-privacy-security"
COURSE = 101
#: Evidence is judged against this instant; every completion below lies before it.
NOW = datetime(2030, 5, 1, 12, tzinfo=UTC)
DONE = int(datetime(2030, 4, 20, 9, tzinfo=UTC).timestamp())
VERB = "http://adlnet.gov/expapi/verbs/"


@pytest.fixture
def pack_dir(tmp_path: Path) -> Path:
    """The demo pack with the HIPAA course mapped to Moodle course 101."""
    target = tmp_path / "pack"
    shutil.copytree("rules/packs/medical-practice", target)
    path = target / "requirements.yaml"
    text = path.read_text()
    anchor = f"    xapi_activity_id: {HIPAA_IRI}\n"
    assert anchor in text
    path.write_text(text.replace(anchor, anchor + f"    moodle_course_id: {COURSE}\n", 1))
    return target


@pytest.fixture
def world(db: Database, pack_dir: Path) -> Database:
    with db.session() as session:
        load_demo_people(session)
        version = deploy(
            session,
            load_pack(pack_dir),
            author="test",
            message=None,
            migration=Migration.GRANDFATHER,
        )
        person = session.scalar(select(Person).where(Person.external_id == PERSON))
        assert person is not None
        session.add(
            Obligation(
                workflow_id=WORKFLOW,
                person_id=person.id,
                kind="training",
                requirement_id=REQUIREMENT,
                requirement_title="HIPAA Privacy & Security",
                cycle=1,
                due_date=date(2031, 3, 14),
                stage=None,
                status="assigned",
                pack_hash=version.content_hash,
                as_of=NOW,
            )
        )
    return db


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(env="test", data_dir=tmp_path / "data")


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TEST_MOODLE_TOKEN", "moodle-token")
    monkeypatch.setenv("TEST_LRS_SECRET", "lrs-key:lrs-secret")
    yield


class Sleeps:
    """Records the waits a connector asks for instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def add(db: Database, kind: str, config: dict[str, Any], secret_ref: str | None) -> int:
    with db.session() as session:
        row = integrations.create_integration(
            session,
            name=f"{kind}-{uuid.uuid4().hex[:6]}",
            kind=kind,
            config=config,
            secret_ref=secret_ref,
            enabled=True,
            actor="hr_admin:test",
            actor_role="hr_admin",
        )
    return row.id


async def sync(
    db: Database,
    temporal: FakeTemporal,
    settings: Settings,
    integration_id: int,
    transport: Any = None,
    sleep: Sleeps | None = None,
) -> SyncResult:
    async def client() -> Any:
        return temporal

    return await integrations.run_sync(
        db,
        client,
        settings,
        SyncRequest(integration_id=integration_id, trigger="test"),
        now=NOW,
        wiring=integrations.Wiring(transport=transport, sleep=sleep or Sleeps()),
    )


def row_of(db: Database, integration_id: int) -> Integration:
    with db.session() as session:
        row = session.get(Integration, integration_id)
        assert row is not None
        session.expunge(row)
        return row


def dead_letters(db: Database) -> list[DeadLetter]:
    with db.session() as session:
        rows = list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))
        for row in rows:
            session.expunge(row)
        return rows


# --- configuration ------------------------------------------------------------------------------


def test_config_is_validated_and_secrets_are_references(world: Database) -> None:
    with world.session() as session:
        with pytest.raises(integrations.IntegrationInvalid, match="kind must be"):
            integrations.validate_config("cornerstone", {}, None)
        with pytest.raises(integrations.IntegrationInvalid, match=r"config\.base_url"):
            integrations.validate_config("moodle", {"base_url": "not a url"}, "env:X")
        with pytest.raises(integrations.IntegrationInvalid, match="needs secret_ref"):
            integrations.validate_config("moodle", {"base_url": "https://m.example"}, None)
        with pytest.raises(integrations.IntegrationInvalid, match="the secret is not stored"):
            integrations.validate_config("xapi_lrs", {"endpoint": "https://l.example"}, "abc")
        with pytest.raises(integrations.IntegrationInvalid, match=r"config\.surprise"):
            integrations.validate_config("csv_drop", {"folder": "x", "surprise": 1}, None)
        assert integrations.list_integrations(session) == []


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("7") == 7
    assert retry_after_seconds(None) == 1
    now = datetime(2030, 5, 1, 12, tzinfo=UTC)
    assert retry_after_seconds("Wed, 01 May 2030 12:00:30 GMT", now) == 30


# --- Moodle -------------------------------------------------------------------------------------


def moodle_site() -> FakeMoodle:
    site = FakeMoodle()
    site.enrolled[COURSE] = [
        {"id": 7, "email": EMAIL, "idnumber": PERSON},
        {"id": 8, "email": "stranger@elsewhere.example", "idnumber": "x-999"},
        {"id": 9, "email": "never@elsewhere.example", "idnumber": "x-998"},
    ]
    site.completed[(COURSE, 7)] = DONE
    site.completed[(COURSE, 8)] = DONE + 60
    return site


@pytest.mark.asyncio
async def test_moodle_connector_pages_enrolled_users_and_reads_completions() -> None:
    site = moodle_site()
    connector = MoodleConnector(
        "https://moodle.example",
        "moodle-token",
        courses={COURSE: REQUIREMENT},
        integration_id=1,
        page_size=2,
        transport=site.transport(),
    )
    batches = [b async for b in connector.pull({})]
    # Two pages of users (2 + 1), then the closing batch that advances the cursor.
    assert [b.label for b in batches] == [
        f"course {COURSE} from 0",
        f"course {COURSE} from 2",
        "done",
    ]
    people = [c.body.person for b in batches for c in b.completions]
    assert people == [PERSON, "x-999"]
    assert batches[0].completions[0].completed_at == datetime.fromtimestamp(DONE, UTC)
    assert batches[-1].cursor == {"since": DONE + 60}
    assert site.calls.count("core_enrol_get_enrolled_users") == 2
    # From that cursor, the older completion is not handed again.
    again = [c.body.person async for b in connector.pull({"since": DONE + 60}) for c in _c(b)]
    assert again == ["x-999"]


def _c(batch: Any) -> list[Any]:
    return list(batch.completions)


@pytest.mark.asyncio
async def test_moodle_sync_records_dead_letters_pushes_and_waits_out_429(
    world: Database, settings: Settings, secrets: None
) -> None:
    site = moodle_site()
    site.rate_limited = 1
    temporal = FakeTemporal()
    sleeps = Sleeps()
    integration = add(
        world, "moodle", {"base_url": "https://moodle.example"}, "env:TEST_MOODLE_TOKEN"
    )
    result = await sync(world, temporal, settings, integration, site.transport(), sleeps)
    assert result.ok, result.error
    assert sleeps.waits == [2.0]  # the 429's Retry-After, honoured once
    assert [(w, n) for w, n, _ in temporal.signals] == [(WORKFLOW, "complete")]
    signal = temporal.signals[0][2]
    assert signal.source == "moodle" and signal.completed_at == datetime.fromtimestamp(DONE, UTC)
    assert (result.pulled, result.recorded, result.dead_lettered) == (2, 1, 1)
    [letter] = dead_letters(world)
    assert letter.source == f"moodle:{integration}" and "unknown person" in letter.reason
    # The open obligation was pushed as an enrolment of Moodle user 7 in course 101.
    assert result.pushed == 1
    assert site.enrolments == [{"roleid": "5", "userid": "7", "courseid": str(COURSE)}]
    row = row_of(world, integration)
    assert row.cursor["since"] == DONE + 60 and row.last_status == "ok" and row.error_count == 0
    # A second sync records nothing twice and pushes nothing twice.
    again = await sync(world, temporal, settings, integration, site.transport())
    assert again.ok and again.recorded == 0 and again.pushed == 0
    assert len(temporal.signals) == 1 and len(site.enrolments) == 1


@pytest.mark.asyncio
async def test_moodle_token_failure_counts_errors_and_never_shows_the_token(
    world: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_MOODLE_TOKEN", "wrong-token-value")
    site = moodle_site()
    temporal = FakeTemporal()
    integration = add(
        world, "moodle", {"base_url": "https://moodle.example"}, "env:TEST_MOODLE_TOKEN"
    )
    for expected in (1, 2):
        result = await sync(world, temporal, settings, integration, site.transport())
        assert not result.ok and result.error is not None
        assert "invalidtoken" in result.error and "wrong-token-value" not in result.error
        row = row_of(world, integration)
        assert row.error_count == expected and row.last_status == "failed"
        assert row.cursor == {}
    monkeypatch.setenv("TEST_MOODLE_TOKEN", "moodle-token")
    result = await sync(world, temporal, settings, integration, site.transport())
    assert result.ok and row_of(world, integration).error_count == 0
    ok, detail = await integrations.check_connection(
        _session(world),
        integration_id=integration,
        settings=settings,
        wiring=integrations.Wiring(transport=site.transport()),
    )
    assert ok and "Fake Moodle" in detail and "1 mapped course" in detail


def _session(db: Database) -> Any:
    return db.sessionmaker()


@pytest.mark.asyncio
async def test_moodle_course_the_pack_does_not_map_is_an_error(
    world: Database, settings: Settings, secrets: None
) -> None:
    integration = add(
        world,
        "moodle",
        {"base_url": "https://moodle.example", "courses": [999]},
        "env:TEST_MOODLE_TOKEN",
    )
    result = await sync(world, FakeTemporal(), settings, integration, moodle_site().transport())
    assert not result.ok and "999" in (result.error or "")


# --- xAPI LRS -----------------------------------------------------------------------------------


def stored_statement(verb: str, stored: str, **actor: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "actor": actor or {"mbox": f"mailto:{EMAIL}"},
        "verb": {"id": VERB + verb},
        "object": {"id": HIPAA_IRI, "objectType": "Activity"},
        "timestamp": stored,
        "stored": stored,
    }


@pytest.mark.asyncio
async def test_lrs_connector_follows_more_pages_per_verb() -> None:
    lrs = FakeLrs(
        statements=[stored_statement("completed", f"2030-04-2{i}T10:00:00.000Z") for i in range(5)]
    )
    connector = LrsConnector(
        "https://lrs.example/xapi/",
        "lrs-key",
        "lrs-secret",
        verbs=(VERB + "completed",),
        page_size=2,
        transport=lrs.transport(),
    )
    batches = [b async for b in connector.pull({})]
    assert [len(b.statements) for b in batches] == [2, 2, 1]
    assert batches[-1].cursor == {"since": {VERB + "completed": "2030-04-24T10:00:00.000Z"}}
    assert "more" in lrs.queries[1] and lrs.queries[0]["ascending"] == "true"
    # Resuming from the first page's cursor asks with since (exclusive).
    rest = [b async for b in connector.pull(batches[0].cursor)]
    assert lrs.queries[-2]["since"] == "2030-04-21T10:00:00.000Z"
    assert sum(len(b.statements) for b in rest) == 3


@pytest.mark.asyncio
async def test_lrs_sync_handles_statements_as_the_api_does(
    world: Database, settings: Settings, secrets: None
) -> None:
    sub = stored_statement("completed", "2030-04-20T10:00:00Z")
    sub["object"] = {"objectType": "SubStatement", "actor": {}, "verb": {}, "object": {}}
    malformed = stored_statement("completed", "2030-04-20T11:00:00Z")
    malformed["result"] = {"success": "yes"}
    unknown = stored_statement("completed", "2030-04-20T12:00:00Z", mbox="mailto:x@y.example")
    good = stored_statement("passed", "2030-04-20T13:00:00Z")
    lrs = FakeLrs(statements=[sub, malformed, unknown, good])
    temporal = FakeTemporal()
    integration = add(
        world, "xapi_lrs", {"endpoint": "https://lrs.example/xapi/"}, "env:TEST_LRS_SECRET"
    )
    result = await sync(world, temporal, settings, integration, lrs.transport())
    assert result.ok, result.error
    assert [(w, n) for w, n, _ in temporal.signals] == [(WORKFLOW, "complete")]
    assert temporal.signals[0][2].passed is True
    assert (result.pulled, result.recorded, result.dead_lettered) == (4, 1, 2)
    reasons = sorted(d.reason for d in dead_letters(world))
    assert reasons[0].startswith("malformed") and reasons[1].startswith("unknown actor")
    cursor = row_of(world, integration).cursor["since"]
    assert cursor[VERB + "passed"] == "2030-04-20T13:00:00Z"
    assert cursor[VERB + "completed"] == "2030-04-20T12:00:00Z"
    again = await sync(world, temporal, settings, integration, lrs.transport())
    assert again.ok and again.pulled == 0 and len(temporal.signals) == 1


@pytest.mark.asyncio
async def test_lrs_partial_failure_keeps_the_cursor_before_what_was_not_recorded(
    world: Database, settings: Settings, secrets: None
) -> None:
    good = stored_statement("passed", "2030-04-20T13:00:00Z")
    lrs = FakeLrs(statements=[good])
    temporal = FakeTemporal(error=RPCError("down", RPCStatusCode.UNAVAILABLE, b""))
    integration = add(
        world,
        "xapi_lrs",
        {"endpoint": "https://lrs.example/xapi/", "verbs": [VERB + "passed"]},
        "env:TEST_LRS_SECRET",
    )
    failed = await sync(world, temporal, settings, integration, lrs.transport())
    assert not failed.ok and "could not be recorded" in (failed.error or "")
    assert row_of(world, integration).cursor == {}
    temporal.error = None
    retried = await sync(world, temporal, settings, integration, lrs.transport())
    assert retried.ok and retried.recorded == 1
    assert [w for w, _, _ in temporal.signals] == [WORKFLOW]


@pytest.mark.asyncio
async def test_lrs_rate_limit_and_refused_credentials(
    world: Database, settings: Settings, secrets: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    lrs = FakeLrs(statements=[], rate_limited=2)
    sleeps = Sleeps()
    integration = add(
        world,
        "xapi_lrs",
        {"endpoint": "https://lrs.example/xapi/", "verbs": [VERB + "passed"]},
        "env:TEST_LRS_SECRET",
    )
    assert (await sync(world, FakeTemporal(), settings, integration, lrs.transport(), sleeps)).ok
    assert sleeps.waits == [3.0, 3.0]
    lrs.rate_limited, lrs.retry_after = 1, "3600"
    slow = await sync(world, FakeTemporal(), settings, integration, lrs.transport())
    assert not slow.ok and "rate-limited us for 3600s" in (slow.error or "")
    monkeypatch.setenv("TEST_LRS_SECRET", "lrs-key:not-the-secret")
    refused = await sync(world, FakeTemporal(), settings, integration, lrs.transport())
    assert not refused.ok and "HTTP 401" in (refused.error or "")
    assert "not-the-secret" not in (refused.error or "")
    assert row_of(world, integration).error_count == 2


# --- CSV drop -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_csv_drop_processes_each_file_once_and_dead_letters_bad_rows(
    world: Database, settings: Settings
) -> None:
    folder = settings.drop_root / "provider"
    folder.mkdir(parents=True)
    content = (
        "person,requirement_id,completed_at,score,passed\n"
        f"{PERSON},{REQUIREMENT},2030-04-20T09:00:00Z,91,true\n"
        f"{PERSON},{REQUIREMENT},yesterday,,\n"
        f"nobody-here,{REQUIREMENT},2030-04-20T09:00:00Z,,\n"
        f"{PERSON},{REQUIREMENT},2099-01-01T00:00:00Z,,\n"
    )
    (folder / "2030-04-20.csv").write_text(content)
    temporal = FakeTemporal()
    integration = add(world, "csv_drop", {"folder": "provider"}, None)
    result = await sync(world, temporal, settings, integration)
    assert result.ok, result.error
    assert [w for w, _, _ in temporal.signals] == [WORKFLOW]
    assert temporal.signals[0][2].score == 91 and temporal.signals[0][2].passed is True
    reasons = [d.reason for d in dead_letters(world)]
    assert len(reasons) == 3
    assert any("row 3" in r for r in reasons)
    assert any("unknown person" in r for r in reasons)
    assert any("completed_at" in r for r in reasons)  # 2099: beyond the evidence bounds
    # The same file again, or a copy under another name, is not read again.
    shutil.copy(folder / "2030-04-20.csv", folder / "copy.csv")
    again = await sync(world, temporal, settings, integration)
    assert again.ok and again.pulled == 0 and len(temporal.signals) == 1
    assert len(row_of(world, integration).cursor["files"]) == 1


@pytest.mark.asyncio
async def test_csv_drop_folder_outside_the_root_is_refused(
    world: Database, settings: Settings
) -> None:
    integration = add(world, "csv_drop", {"folder": "../../etc"}, None)
    result = await sync(world, FakeTemporal(), settings, integration)
    assert not result.ok and "drop root" in (result.error or "")
    with pytest.raises(ConnectorError):
        resolve_folder(settings.drop_root, "../x")


# --- pack fields the connectors read ------------------------------------------------------------


def _pack_with(pack_dir: Path, extra: str, requirement: str = "fire-safety") -> Path:
    path = pack_dir / "requirements.yaml"
    text = path.read_text()
    anchor = f"  - id: {requirement}\n"
    assert anchor in text
    # Insert the field right after the title line of that requirement.
    head, tail = text.split(anchor, 1)
    title_line, rest = tail.split("\n", 1)
    path.write_text(head + anchor + title_line + "\n" + extra + rest)
    return pack_dir


def test_lint_refuses_two_requirements_on_one_moodle_course(pack_dir: Path) -> None:
    from rules.lint import lint

    pack = load_pack(_pack_with(pack_dir, f"    moodle_course_id: {COURSE}\n"))
    codes = [f.code for f in lint(pack)]
    assert "duplicate-moodle-course" in codes
    assert pack.by_moodle_course(COURSE) is not None


def test_lint_refuses_cmi5_satisfied_without_an_activity(pack_dir: Path) -> None:
    from rules.lint import lint

    extra = "    cmi5_satisfied: completes\n"
    pack = load_pack(_pack_with(pack_dir, extra, requirement="bls-certification"))
    assert "cmi5-satisfied-without-activity" in [f.code for f in lint(pack)]


@pytest.fixture
def satisfied_world(db: Database, pack_dir: Path) -> Database:
    """The world, with cmi5 'satisfied' completing HIPAA."""
    path = pack_dir / "requirements.yaml"
    anchor = f"    moodle_course_id: {COURSE}\n"
    path.write_text(path.read_text().replace(anchor, anchor + "    cmi5_satisfied: completes\n"))
    return db


@pytest.mark.asyncio
async def test_cmi5_satisfied_completes_where_the_pack_says_so(
    satisfied_world: Database, pack_dir: Path, settings: Settings, secrets: None
) -> None:
    db = satisfied_world
    with db.session() as session:
        load_demo_people(session)
        version = deploy(
            session, load_pack(pack_dir), author="t", message=None, migration=Migration.GRANDFATHER
        )
        person = session.scalar(select(Person).where(Person.external_id == PERSON))
        assert person is not None
        session.add(
            Obligation(
                workflow_id=WORKFLOW,
                person_id=person.id,
                kind="training",
                requirement_id=REQUIREMENT,
                requirement_title="HIPAA Privacy & Security",
                cycle=1,
                due_date=date(2031, 3, 14),
                stage=None,
                status="assigned",
                pack_hash=version.content_hash,
                as_of=NOW,
            )
        )
    satisfied = stored_statement("completed", "2030-04-20T13:00:00Z")
    satisfied["verb"] = {"id": "https://w3id.org/xapi/adl/verbs/satisfied"}
    lrs = FakeLrs(statements=[satisfied])
    temporal = FakeTemporal()
    integration = add(
        db, "xapi_lrs", {"endpoint": "https://lrs.example/xapi/"}, "env:TEST_LRS_SECRET"
    )
    result = await sync(db, temporal, settings, integration, lrs.transport())
    assert result.ok and result.recorded == 1
    assert [w for w, _, _ in temporal.signals] == [WORKFLOW]
