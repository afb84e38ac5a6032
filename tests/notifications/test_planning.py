"""plan_delivery is pure: a stage's plan from plain data, no database, no provider, no clock.

Folding (early learner reminders wait for the digest), quiet hours (in the recipient's zone,
never past a due-day notice's own day) and a stage's ``unless`` (on the one fact builder).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from domain.contracts.obligation import ReminderRequest
from domain.kinds import ObligationKind
from notifications.delivery import Recipient
from notifications.planning import (
    Audience,
    DeliveryPlan,
    Learner,
    Preference,
    RecipientPlan,
    audience,
    plan_delivery,
)
from notifications.recipients import Resolved, person_recipient
from rules.loader import load_pack
from rules.model import Pack
from rules.obligation_facts import PersonAttributes
from store.models import Person

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
#: A Wednesday, 14:00 UTC (09:00 in New York, 04:00 the next day in Kiritimati, UTC+14).
FIRED_AT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
HR = Recipient("hr", "hr", None, email="compliance@clinic.example")


@pytest.fixture(scope="module")
def pack() -> Pack:
    return load_pack(MEDICAL)


def _ada(status: str = "active", zone: str = "UTC") -> Person:
    # A transient row (never added to a session): plain attributes, no I/O.
    return Person(
        id=1,
        external_id="p-ada",
        name="Ada Lovelace",
        email="ada@example.com",
        phone="+15550000001",
        time_zone=zone,
        roles=["nurse"],
        employment_status=status,
    )


def _grace() -> Person:
    return Person(
        id=2,
        external_id="p-grace",
        name="Grace Hopper",
        email="grace@example.com",
        slack_user_id="U2",
        time_zone="America/New_York",
        employment_status="active",
    )


def _request(stage: str, days: int, **extra: object) -> ReminderRequest:
    fields: dict[str, object] = {
        "workflow_id": "assignment/p-ada/hipaa-privacy-security/1",
        "person": "p-ada",
        "kind": ObligationKind.TRAINING,
        "requirement_title": "HIPAA Privacy & Security",
        "requirement_id": "hipaa-privacy-security",
        "due_date": date(2026, 11, 25) if days <= 0 else date(2026, 12, 2),
        "stage": stage,
        "days_before_due": days,
        "pack_hash": "x" * 64,
        "fired_at": FIRED_AT,
    }
    return ReminderRequest.model_validate({**fields, **extra})


def _plan(
    request: ReminderRequest,
    pack: Pack | None,
    *,
    learner: Person | None = None,
    others: list[Recipient] | None = None,
    preferences: dict[str, Preference] | None = None,
    digest: bool = True,
) -> DeliveryPlan:
    person = learner or _ada()
    who = audience(request, pack)
    recipients = [person_recipient("learner", person)] if "learner" in who.roles else []
    recipients += others or []
    zones = {person.external_id: Preference(time_zone=person.time_zone)}
    zones.update(
        {r.key: Preference(time_zone=r.person.time_zone) for r in others or [] if r.person}
    )
    return plan_delivery(
        request=request,
        pack=pack,
        audience=who,
        learner=Learner(
            person.external_id,
            person.time_zone,
            PersonAttributes(
                roles=list(person.roles or []), employment_status=person.employment_status
            ),
        ),
        resolved=Resolved(recipients, [], []),
        preferences={**zones, **(preferences or {})},
        digest=digest,
    )


def _parts(plan: DeliveryPlan) -> dict[str, RecipientPlan]:
    return {p.recipient.role: p for p in plan.recipients}


# -- recipients and channels -----------------------------------------------------------------


def test_the_pack_stage_names_recipients_and_channels_the_builtin_ladder_the_learner_by_email(
    pack: Pack,
) -> None:
    assert audience(_request("0d", 0), pack) == Audience(
        pack_stage_for(pack, "0d"), ["learner", "manager"], ["email"]
    )
    builtin = audience(_request("-7d", 7, pack_hash="builtin"), None)
    assert (builtin.stage, builtin.roles, builtin.channels) == (None, ["learner"], ["email"])
    notice = audience(
        _request("revoked", 0, notify=["learner", "hr"], channels=["email", "sms"]), None
    )
    assert (notice.roles, notice.channels) == (["learner", "hr"], ["email", "sms"])


def pack_stage_for(pack: Pack, label: str) -> object:
    from notifications.planning import pack_stage

    return pack_stage(pack, "hipaa-privacy-security", label)


# -- digest folding --------------------------------------------------------------------------


def test_an_early_learner_reminder_folds_email_into_the_digest_in_app_goes_now(
    pack: Pack,
) -> None:
    plan = _plan(_request("-7d", 7), pack, learner=_ada(zone="Pacific/Kiritimati"))
    [learner] = plan.recipients
    assert (learner.folded, learner.direct, learner.deferred_until) == (["email"], ["in_app"], None)
    # The digest of the learner's own day: already the 26th in Kiritimati (UTC+14).
    assert learner.digest_day == date(2026, 11, 26)


def test_nothing_folds_without_digests_on_the_due_day_or_for_an_event_notice(pack: Pack) -> None:
    no_digest = _plan(_request("-7d", 7), pack, digest=False).recipients[0]
    assert (no_digest.folded, no_digest.direct) == ([], ["email", "in_app"])
    due_day = _parts(_plan(_request("0d", 0), pack))["learner"]
    assert (due_day.folded, due_day.direct) == ([], ["email"])
    event = _plan(_request("-7d", 7, event="suspended"), pack).recipients[0]
    assert (event.folded, event.direct) == ([], ["email", "in_app"])


def test_only_the_learner_folds_and_only_on_channels_they_accept(pack: Pack) -> None:
    refused = _plan(
        _request("-7d", 7),
        pack,
        preferences={"p-ada": Preference(channels=["in_app", "sms"])},
    ).recipients[0]
    # Email refused: not queued for the digest; delivery falls back from it at once.
    assert (refused.folded, refused.direct) == ([], ["email", "in_app"])
    mailbox = _plan(_request("-7d", 7), pack, others=[HR]).recipients
    assert [(p.recipient.role, p.folded) for p in mailbox] == [("learner", ["email"]), ("hr", [])]


# -- quiet hours -----------------------------------------------------------------------------


def test_quiet_hours_defer_a_person_in_their_own_zone_not_a_mailbox(pack: Pack) -> None:
    grace = person_recipient("manager", _grace())
    plan = _plan(
        _request("0d", 0, notify=None),
        pack,
        others=[grace, HR],
        preferences={
            # 09:00 in New York: inside 08:00-10:00 quiet hours, allowed again at 10:00 local.
            "p-grace": Preference(
                time_zone="America/New_York", quiet_start="08:00", quiet_end="10:00"
            ),
        },
    )
    parts = _parts(plan)
    assert parts["manager"].deferred_until == datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    assert parts["manager"].direct == []
    assert parts["learner"].deferred_until is None
    assert parts["hr"].deferred_until is None and parts["hr"].direct == ["email"]


def test_a_due_day_notice_is_never_deferred_past_its_own_day(pack: Pack) -> None:
    night = Preference(time_zone="UTC", quiet_start="08:00", quiet_end="07:00")  # until tomorrow
    early = _plan(_request("-7d", 7), pack, preferences={"p-ada": night}).recipients[0]
    assert early.deferred_until == datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
    due = _parts(_plan(_request("0d", 0), pack, preferences={"p-ada": night}))["learner"]
    assert due.deferred_until is None and due.direct == ["email"]


# -- unless and leavers ----------------------------------------------------------------------


def test_unless_skips_the_stage_when_it_holds_on_the_one_fact_builder(pack: Pack) -> None:
    on_it = _plan(_request("+7d", -7, acknowledged=True, started=True), pack)
    assert on_it.unless == "acknowledged and started"
    assert on_it.recipients == [] and on_it.gone is None
    not_started = _plan(_request("+7d", -7, acknowledged=True), pack)
    assert not_started.unless is None
    assert _parts(not_started)["learner"].direct == ["email", "slack"]


def test_a_learner_who_left_gets_a_plan_of_skips_for_everyone(pack: Pack) -> None:
    plan = _plan(_request("0d", 0), pack, learner=_ada(status="terminated"), others=[HR])
    assert plan.gone is not None and plan.gone[0] == "learner:terminated"
    assert [(p.recipient.role, p.direct, p.folded) for p in plan.recipients] == [
        ("learner", [], []),
        ("hr", [], []),
    ]
    assert "ada@example.com" not in plan.gone[1]  # external ids only, never an address
