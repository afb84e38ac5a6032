"""The joiner/mover/leaver plan (pure), its pack settings, and the CLI's previews of it."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from domain.contracts.directory import ChangeKind
from duly.cli import app as cli
from rules.directory import Engagement, HeldObligation, PersonFacts, due_date, plan_person
from rules.loader import PackInvalid, load_pack
from rules.model import Pack
from store.db import Database
from store.models import Obligation, Person
from store.packs import Migration, deploy

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
TODAY = date(2026, 6, 1)
NURSE_TRAININGS = ["hipaa-privacy-security", "fire-safety", "osha-bloodborne-pathogens"]
NURSE_CERTS = ["bls-certification", "acls-certification"]


@pytest.fixture(scope="module")
def pack() -> Pack:
    return load_pack(MEDICAL)


def _copy(tmp_path: Path, old: str, new: str) -> Path:
    target = tmp_path / "pack"
    shutil.copytree(MEDICAL, target)
    path = target / "requirements.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return target


def nurse(status: str = "active", **changes: object) -> PersonFacts:
    values: dict[str, object] = {
        "person_id": 1,
        "external_id": "p-1",
        "roles": ["nurse"],
        "department": "Nursing",
        "location": "Boston",
        "employer": None,
        "employment_status": status,
        "start_date": None,
    }
    values.update(changes)
    return PersonFacts(**values)  # type: ignore[arg-type]


def held(requirement: str, status: str = "assigned", cycle: int = 1) -> HeldObligation:
    return HeldObligation(
        workflow_id=f"assignment/p-1/{requirement}/{cycle}",
        requirement_id=requirement,
        kind="training",
        status=status,
        cycle=cycle,
        pack_hash="h",
    )


def test_joiner_gets_every_training_that_applies_and_needs_certificates(pack: Pack) -> None:
    plan = plan_person(
        pack=pack,
        person=nurse(start_date=date(2026, 6, 15)),
        obligations=[],
        today=TODAY,
        kind=ChangeKind.JOINER,
    )
    assert [o.requirement_id for o in plan.assign] == NURSE_TRAININGS + NURSE_CERTS
    due = {o.requirement_id: o.due_date for o in plan.assign}
    assert due["hipaa-privacy-security"] == date(2026, 7, 15)  # 30 days from the start date
    assert due["osha-bloodborne-pathogens"] == date(2026, 6, 25)  # 10 days
    # The certifications are owed too: an obligation to obtain each, due per the pack.
    assert plan.certificates_needed == NURSE_CERTS
    assert due["bls-certification"] == date(2026, 8, 14)  # due_in_days: 60
    assert {o.kind for o in plan.assign if o.requirement_id in NURSE_CERTS} == {"certification"}
    assert plan.pack_hash == pack.content_hash and plan.close == []
    # A receptionist in the Front Office owes only what applies to all.
    front = nurse(roles=["receptionist"], department="Front Office")
    plan = plan_person(pack=pack, person=front, obligations=[], today=TODAY, kind="joiner")
    assert [o.requirement_id for o in plan.assign] == NURSE_TRAININGS[:2]


def test_mover_closes_with_why_or_keeps_per_the_pack(pack: Pack, tmp_path: Path) -> None:
    moved = nurse(roles=["receptionist"], department="Front Office")
    have = [held(r) for r in NURSE_TRAININGS]
    plan = plan_person(pack=pack, person=moved, obligations=have, today=TODAY, kind="mover")
    assert plan.assign == [] and plan.keep == []
    [closing] = plan.close
    assert (closing.requirement_id, closing.status) == (
        "osha-bloodborne-pathogens",
        "not_applicable",
    )
    assert "no longer applies" in closing.reason and "Front Office" in closing.reason
    keep = load_pack(
        _copy(
            tmp_path,
            "  - id: osha-bloodborne-pathogens\n",
            "  - id: osha-bloodborne-pathogens\n    on_no_longer_applicable: keep\n",
        )
    )
    plan = plan_person(pack=keep, person=moved, obligations=have, today=TODAY, kind="mover")
    assert plan.close == [] and plan.keep == ["osha-bloodborne-pathogens"]


def test_the_setting_is_validated(tmp_path: Path) -> None:
    bad = _copy(
        tmp_path,
        "  - id: osha-bloodborne-pathogens\n",
        "  - id: osha-bloodborne-pathogens\n    on_no_longer_applicable: archive\n",
    )
    with pytest.raises(PackInvalid, match="on_no_longer_applicable"):
        load_pack(bad)


def test_leaver_closes_everything_open_and_revokes_tokens(pack: Pack) -> None:
    have = [held("hipaa-privacy-security"), held("fire-safety", status="completed")]
    have.append(held("ad-hoc-course"))  # assigned by hand, not in the pack: closes too
    plan = plan_person(
        pack=pack, person=nurse("terminated"), obligations=have, today=TODAY, kind="leaver"
    )
    assert {(c.requirement_id, c.status, c.reason) for c in plan.close} == {
        ("hipaa-privacy-security", "cancelled", "left"),
        ("ad-hoc-course", "cancelled", "left"),
    }
    assert plan.revoke_tokens and plan.assign == []


def test_rehire_starts_a_new_cycle_of_what_was_closed(pack: Pack) -> None:
    have = [
        held("hipaa-privacy-security", status="cancelled"),
        held("fire-safety", status="completed"),  # done: its recurrence runs on its own
        held("osha-bloodborne-pathogens", status="not_applicable", cycle=2),
    ]
    plan = plan_person(pack=pack, person=nurse(), obligations=have, today=TODAY, kind="rehire")
    assert {(o.requirement_id, o.cycle) for o in plan.assign} == {
        ("hipaa-privacy-security", 2),
        ("osha-bloodborne-pathogens", 3),
        ("bls-certification", 1),
        ("acls-certification", 1),
    }


def test_leave_pauses_and_return_resumes(pack: Pack) -> None:
    have = [held(r) for r in NURSE_TRAININGS]
    away = plan_person(
        pack=pack, person=nurse("leave"), obligations=have, today=TODAY, kind="leave"
    )
    assert len(away.pause) == 3 and away.assign == [] and away.close == []
    # The nightly reconciliation leaves people on leave alone.
    assert plan_person(pack=pack, person=nurse("leave"), obligations=have, today=TODAY).is_empty()
    back = plan_person(pack=pack, person=nurse(), obligations=have, today=TODAY, kind="return")
    assert [r.extend_due_date for r in back.resume] == [True, True, True]


def test_due_dates_count_from_the_start_date_never_before_today(pack: Pack) -> None:
    hipaa = pack.requirement("hipaa-privacy-security")
    assert hipaa is not None
    long_ago = date(2020, 1, 1)
    assert due_date(hipaa, today=TODAY, start_date=long_ago, joiner=True) == TODAY
    assert due_date(hipaa, today=TODAY, start_date=None, joiner=True) == date(2026, 7, 1)
    # Only a joiner's due dates count from the start date.
    assert due_date(hipaa, today=TODAY, start_date=date(2026, 6, 20), joiner=False) == date(
        2026, 7, 1
    )


@pytest.fixture
def runner(sqlite_db: Database, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DULY_DATABASE_URL", sqlite_db.url)
    return CliRunner()


def _nurse_with_osha(db: Database, pack: Pack) -> None:
    with db.session() as session:
        deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
        person = Person(external_id="p-1", name="Ada", roles=["nurse"], department="Nursing")
        session.add(person)
        session.flush()
        session.add(
            Obligation(
                workflow_id="assignment/p-1/osha-bloodborne-pathogens/1",
                person_id=person.id,
                kind="training",
                requirement_id="osha-bloodborne-pathogens",
                requirement_title="OSHA",
                due_date=date(2026, 12, 1),
                status="assigned",
                pack_hash=pack.content_hash,
                as_of=datetime(2026, 11, 23, tzinfo=UTC),
            )
        )


def test_rules_preview_shows_what_a_changed_applies_to_assigns_and_closes(
    runner: CliRunner, sqlite_db: Database, pack: Pack, tmp_path: Path
) -> None:
    _nurse_with_osha(sqlite_db, pack)
    # OSHA now only for physicians: the nurse's open OSHA would close.
    narrowed = _copy(
        tmp_path,
        "      roles: [nurse, physician, technician]\n      except: {departments: [Front Office]}",
        "      roles: [physician]",
    )
    result = runner.invoke(
        cli, ["rules", "preview", str(narrowed), "--json", "--today", "2026-11-23"]
    )
    assert result.exit_code == 0, result.output
    preview = json.loads(result.output)
    assert preview["would_close"] == {"osha-bloodborne-pathogens": 1}
    assert preview["would_assign"] == {
        "acls-certification": 1,
        "bls-certification": 1,
        "fire-safety": 1,
        "hipaa-privacy-security": 1,
    }
    table = runner.invoke(cli, ["rules", "preview", str(narrowed), "--today", "2026-11-23"])
    assert "would close 1 open osha-bloodborne-pathogens" in table.output


def test_people_import_dry_run_shows_each_change_and_saves_nothing(
    runner: CliRunner,
    sqlite_db: Database,
    pack: Pack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The CLI's console took its width when the module was first imported (by whichever test
    # came first): set it, or the table wraps the cells this test reads.
    import duly.cli

    monkeypatch.setattr(duly.cli.console, "width", 250)
    _nurse_with_osha(sqlite_db, pack)
    csv = tmp_path / "people.csv"
    csv.write_text(
        "external_id,name,roles,department,employment_status\n"
        "p-1,Ada,receptionist,Front Office,active\n"
        "p-2,Bob,nurse,Nursing,active\n"
    )
    result = runner.invoke(cli, ["people", "import", "--dry-run", str(csv)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "dry run: 2 people would change" in result.output
    assert "osha-bloodborne-pathogens (not_applicable" in result.output
    assert "hipaa-privacy-security, fire-safety, osha-bloodborne-pathogens" in result.output
    with sqlite_db.session() as session:
        assert session.scalar(select(func.count()).select_from(Person)) == 1
        person = session.scalar(select(Person).where(Person.external_id == "p-1"))
        assert person is not None and person.department == "Nursing"


def _cert(requirement: str, status: str = "compliant") -> HeldObligation:
    return HeldObligation(
        workflow_id=f"certification/p-1/{requirement}",
        requirement_id=requirement,
        kind="certification",
        status=status,
        cycle=1,
        pack_hash="h",
    )


def test_a_certification_is_owed_until_held_and_again_once_it_is_not(pack: Pack) -> None:
    trainings = [held(r) for r in NURSE_TRAININGS]

    def assigned(have: list[HeldObligation]) -> dict[str, int]:
        plan = plan_person(pack=pack, person=nurse(), obligations=have, today=TODAY)
        return {o.requirement_id: o.cycle for o in plan.assign}

    # Held: nothing to obtain. An obligation to obtain it open: nothing new.
    assert assigned([*trainings, _cert("bls-certification"), _cert("acls-certification")]) == {}
    assert assigned([*trainings, *(held(r) for r in NURSE_CERTS)]) == {}
    # Obtained (completed) and the certificate not recorded yet: nothing (it is in flight).
    done = [
        HeldObligation(
            workflow_id=f"assignment/p-1/{r}/1",
            requirement_id=r,
            kind="training",
            status="compliant",
            cycle=1,
            pack_hash="h",
            completed=True,
        )
        for r in NURSE_CERTS
    ]
    assert assigned([*trainings, *done]) == {}
    # The certificate was closed since (the holder left, or it was revoked): owed again.
    gone = [_cert(r, status="cancelled") for r in NURSE_CERTS]
    assert assigned([*trainings, *done, *gone]) == {r: 2 for r in NURSE_CERTS}


def test_a_leaver_closes_every_family_and_a_leave_pauses_those_with_reminders(
    pack: Pack,
) -> None:
    have = [held("hipaa-privacy-security"), _cert("bls-certification")]
    engaged = [
        Engagement("apprenticeship/p-1/elevator", "elevator", "active"),
        Engagement("mentorship/p-1/m-1/1", "m-1", "pending", role="mentee"),
        Engagement("mentorship/e-1/p-1/1", "e-1", "active", role="mentor"),
        Engagement("mentorship/p-1/m-2/1", "m-2", "completed", role="mentee"),
        Engagement("track/research/p-1", "research", "enrolled"),
        Engagement("track/done/p-1", "done", "completed"),
    ]
    left = plan_person(
        pack=pack,
        person=nurse("terminated"),
        obligations=have,
        today=TODAY,
        kind="leaver",
        engagements=engaged,
    )
    assert {(c.family, c.workflow_id) for c in left.close} == {
        ("assignment", "assignment/p-1/hipaa-privacy-security/1"),
        ("certification", "certification/p-1/bls-certification"),
        ("apprenticeship", "apprenticeship/p-1/elevator"),
        ("mentorship", "mentorship/p-1/m-1/1"),
        ("mentorship", "mentorship/e-1/p-1/1"),
        ("track", "track/research/p-1"),
    }
    assert {(c.status, c.reason) for c in left.close} == {("cancelled", "left")}
    away = plan_person(
        pack=pack,
        person=nurse("leave"),
        obligations=have,
        today=TODAY,
        kind="leave",
        engagements=engaged,
    )
    # A certification is not paused (a leave does not move an expiry date); a track is its
    # courses (assignments).
    assert set(away.pause) == {
        "assignment/p-1/hipaa-privacy-security/1",
        "apprenticeship/p-1/elevator",
        "mentorship/p-1/m-1/1",
        "mentorship/e-1/p-1/1",
    }
    suspended = [Engagement("apprenticeship/p-1/elevator", "elevator", "suspended"), *engaged[1:]]
    back = plan_person(
        pack=pack,
        person=nurse(),
        obligations=have,
        today=TODAY,
        kind="return",
        engagements=suspended,
    )
    assert {r.workflow_id for r in back.resume} == set(away.pause)


def test_joiners_movers_and_rehires_are_enrolled_in_their_learning_paths(pack: Pack) -> None:
    tech = nurse(roles=["technician"], department="Radiology")
    joiner = plan_person(pack=pack, person=tech, obligations=[], today=TODAY, kind="joiner")
    assert joiner.enrol == ["radiology-research-path"]
    withdrawn = [
        Engagement("track/radiology-research-path/p-1", "radiology-research-path", "withdrawn")
    ]
    rehire = plan_person(
        pack=pack, person=tech, obligations=[], today=TODAY, kind="rehire", engagements=withdrawn
    )
    assert rehire.enrol == ["radiology-research-path"]
    enrolled = [
        Engagement("track/radiology-research-path/p-1", "radiology-research-path", "enrolled")
    ]
    mover = plan_person(
        pack=pack, person=tech, obligations=[], today=TODAY, kind="mover", engagements=enrolled
    )
    assert mover.enrol == []
    # The nightly reconciliation enrols whoever is missing from a path that selects them...
    nightly = plan_person(pack=pack, person=tech, obligations=[], today=TODAY)
    assert nightly.enrol == ["radiology-research-path"]
    # ...but never reopens one HR withdrew (a change, a rehire, does), nor a completed one.
    for status in ("withdrawn", "completed", "enrolled"):
        there = [Engagement("track/radiology-research-path/p-1", "radiology-research-path", status)]
        again = plan_person(pack=pack, person=tech, obligations=[], today=TODAY, engagements=there)
        assert again.enrol == [], status
    # Nobody on leave or gone is enrolled by it.
    for status in ("leave", "terminated"):
        away = nurse(status, roles=["technician"], department="Radiology")
        assert plan_person(pack=pack, person=away, obligations=[], today=TODAY).enrol == []
