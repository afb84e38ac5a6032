"""A mentorship's per-stage messages: built-in wording, lookup chain, pack overrides, lint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from domain.contracts.mentorship import MESSAGE_EVENTS, message_event
from notifications.messages import lookup_chain, render_message, template_errors
from rules.loader import load_pack

FIELD = Path(__file__).resolve().parents[2] / "rules" / "packs" / "field-technicians"
EVENTS = sorted(set(MESSAGE_EVENTS.values()))
WORKFLOW = "mentorship/a-1/m-1/1"


def context(event: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "first_name": "Ada",
        "title": "Mentorship (general)",
        "due_date": "2026-12-01",
        "days_before_due": 3,
        "workflow_id": WORKFLOW,
        "event": event,
        **extra,
    }


def test_ledger_stages_name_their_message() -> None:
    assert message_event("request") == "request"
    assert message_event("request-2") == "request-reminder"
    assert message_event("s0:mentee") == "nudge-mentee"
    assert message_event("s12:coordinator") == "nudge-coordinator"
    assert message_event("fb-end") == "feedback-end"
    assert message_event("action-3") == "action-item"
    assert message_event("race-lost") == "race-lost"
    assert message_event("-14d") is None


def test_every_stage_has_its_own_wording_on_every_channel() -> None:
    subjects = set()
    for event in EVENTS:
        for channel in ("email", "sms", "in_app", "slack"):
            message = render_message("mentorship", event, channel, context(event))
            # Not the generic reminder ("... is due on ..., in 3 days").
            assert "is due on" not in message.text and "in 3 days" not in message.text
        email = render_message("mentorship", event, "email", context(event))
        subjects.add(email.subject)
    assert len(subjects) == len(EVENTS)  # one subject per stage, none falls back


def test_race_loss_says_why_and_where_the_next_matches_are() -> None:
    why = "the mentor has no free slot (1 of 1 taken)"
    message = render_message("mentorship", "race-lost", "email", context("race-lost", detail=why))
    assert message.subject == "Your mentorship request could not be accepted"
    assert why in message.text
    assert f"/{WORKFLOW} (next_matches)" in message.text
    assert "stays open" in message.text
    sms = render_message("mentorship", "race-lost", "sms", context("race-lost", detail=why))
    assert sms.text == "Duly: Your mentorship request could not be accepted."


def test_request_tells_the_mentor_how_to_answer() -> None:
    message = render_message("mentorship", "request", "email", context("request"))
    assert "PUT /mentorship/request/a-1/m-1/1/accept or /decline" in message.text
    assert "expires on 2026-12-01" in message.text


def test_coordinator_nudge_names_the_mentee_to_hr() -> None:
    message = render_message(
        "mentorship",
        "s1:coordinator",
        "email",
        context("nudge-coordinator", recipient_role="hr", learner_name="Ada Lovelace"),
    )
    assert "Ada Lovelace's mentorship" in message.text
    assert "HR compliance contact" in message.text


def test_the_event_is_looked_up_after_the_ledger_stage() -> None:
    assert lookup_chain("mentorship", "s2:mentor", "email", "txt", "nudge-mentor") == [
        "mentorship/s2:mentor.email.txt.j2",
        "mentorship/s2-mentor.email.txt.j2",
        "mentorship/nudge-mentor.email.txt.j2",
        "mentorship/reminder.email.txt.j2",
        "default/reminder.email.txt.j2",
    ]
    # A digest never looks for an event's template.
    assert "mentorship/x.email.txt.j2" not in lookup_chain(
        "mentorship", "digest", "email", "txt", "x"
    )


def test_a_pack_overrides_one_stage_or_the_wording() -> None:
    overrides = {
        "mentorship/nudge-mentor.email.subject.j2": "Mentor, log a session ({{ due_date }})",
        "mentorship/_wording.j2": (
            '{% import "default/_wording.j2" as base with context %}'
            "{% macro lead() %}Custom {{ event }} for {{ workflow_id }}{% endmacro %}"
        ),
    }
    nudge = render_message(
        "mentorship", "s4:mentor", "email", context("nudge-mentor"), overrides=overrides
    )
    assert nudge.subject == "Mentor, log a session (2026-12-01)"
    assert nudge.templates["subject"] == "mentorship/nudge-mentor.email.subject.j2"
    assert "Custom nudge-mentor for " + WORKFLOW in nudge.text
    # Other stages keep the built-in subject (the override wording has no subject macro).
    other = render_message(
        "mentorship", "accepted", "email", context("accepted"), overrides=overrides
    )
    assert other.subject.startswith("Accepted") is False
    assert "Custom accepted" in other.text


@pytest.mark.parametrize(
    ("path", "source", "error"),
    [
        (
            "mentorship/race-lost.email.txt.j2",
            "{{ detail|upper }} {{ mentor_phone }}",
            "mentor_phone",
        ),
        (
            "mentorship/_wording.j2",
            "{% macro action() %}{% if event == 'race-lost' %}{{ why }}{% endif %}{% endmacro %}",
            "'why' is undefined",
        ),
    ],
)
def test_lint_renders_mentorship_overrides_for_their_stages(
    path: str, source: str, error: str
) -> None:
    pack = load_pack(FIELD)
    errors = template_errors(pack.model_copy(update={"templates": {path: source}}))
    assert len(errors) == 1 and errors[0].startswith(path) and error in errors[0]
    fine = source.replace("{{ mentor_phone }}", "").replace("{{ why }}", "{{ detail }}")
    assert template_errors(pack.model_copy(update={"templates": {path: fine}})) == []
