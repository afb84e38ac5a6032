from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from notifications.messages import (
    CHANNEL_PARTS,
    find_template,
    lookup_chain,
    missing_templates,
    render_message,
    template_errors,
    unused_templates,
)
from notifications.render import render
from notifications.sms import sms_segments
from rules.loader import load_pack
from rules.model import Pack

PACKS = Path(__file__).resolve().parents[2] / "rules" / "packs"
TOKEN = "Zq3xY8pLr2Vb9TtKc4WmHn7sDf0GjA1eUoIiPyRw5Q"
ACK_URL = f"https://duly.example.com/ack/{TOKEN}"
KINDS = ["training", "certification", "apprenticeship", "mentorship"]
STAGES = [("-30d", 30), ("0d", 0), ("+7d", -7), ("final warning", -7)]


def learner(**extra: Any) -> dict[str, Any]:
    return {
        "first_name": "Ada",
        "title": "HIPAA Privacy & Security",
        "due_date": "2026-11-26",
        "days_before_due": 3,
        "workflow_id": "assignment/p-1020/hipaa/1",
        "ack_url": ACK_URL,
        **extra,
    }


def manager(**extra: Any) -> dict[str, Any]:
    return learner(
        **{"first_name": "Grace", "recipient_role": "manager", "learner_name": "Ada Lovelace"}
        | extra
    )


def pack(name: str) -> Pack:
    return load_pack(PACKS / name)


def ack_buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        element
        for block in blocks
        if block["type"] == "actions"
        for element in block["elements"]
        if element.get("action_id") == "acknowledge"
    ]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("stage", "days"), STAGES)
@pytest.mark.parametrize("channel", sorted(CHANNEL_PARTS))
@pytest.mark.parametrize("context", [learner, manager])
def test_every_kind_stage_and_channel_renders(
    kind: str, stage: str, days: int, channel: str, context: Any
) -> None:
    message = render_message(kind, stage, channel, context(days_before_due=days))
    title = "HIPAA Privacy &amp; Security" if channel == "slack" else "HIPAA Privacy & Security"
    assert title in message.text
    assert (message.html is not None) == (channel == "email")
    assert (message.blocks is not None) == (channel == "slack")
    assert bool(message.subject) == (channel != "sms")
    if channel == "sms":
        assert sms_segments(message.text).segments == 1
    if channel == "slack":
        assert message.blocks is not None
        json.dumps(message.blocks)
    assert set(message.templates) == set(CHANNEL_PARTS[channel])


def test_learner_is_addressed_in_second_person() -> None:
    message = render_message("training", "+7d", "email", learner(days_before_due=-7))
    assert message.subject == 'Overdue: your training "HIPAA Privacy & Security" was due 7 days ago'
    assert message.text.startswith("Hi Ada,")
    assert "Your training" in message.text and "7 days overdue" in message.text
    assert f"Acknowledge this reminder: {ACK_URL}" in message.text
    assert "Lovelace" not in message.text


def test_manager_is_told_about_the_learner() -> None:
    message = render_message("training", "+7d", "email", manager(days_before_due=-7))
    assert message.subject.startswith("Overdue: Ada Lovelace's training")
    assert message.text.startswith("Hi Grace,")
    assert 'Ada Lovelace\'s training "HIPAA Privacy & Security" was due' in message.text
    assert "is now 7 days overdue" in message.text
    assert "Your training" not in message.text and "your training" not in message.subject
    assert "as Ada Lovelace's manager" in message.text
    # The acknowledgement is the learner's: no link or button for the manager.
    assert ACK_URL not in message.text and message.html and ACK_URL not in message.html
    slack = render_message("training", "+7d", "slack", manager(days_before_due=-7))
    assert slack.blocks is not None and ack_buttons(slack.blocks) == []


def test_hr_without_first_name() -> None:
    context = manager(recipient_role="hr", days_before_due=-14)
    del context["first_name"]
    message = render_message("certification", "+14d", "email", context)
    assert message.text.startswith("Hello,")
    assert "Ada Lovelace's certification" in message.text
    assert "HR compliance contact" in message.text


def test_certification_wording() -> None:
    soon = render_message("certification", "-14d", "email", learner(days_before_due=14))
    assert soon.subject.startswith('Renewal reminder: your certification "HIPAA')
    assert "expires on 2026-11-26, in 14 days" in soon.text
    lapsed = render_message(
        "certification", "+7d", "email", learner(days_before_due=-7, ce_credits_short=3)
    )
    assert "expired on 2026-11-26, 7 days ago" in lapsed.text
    assert "You still need 3 continuing-education credits" in lapsed.text


def test_late_notice() -> None:
    message = render_message("training", "-3d", "email", learner(late_notice=True))
    assert message.subject == 'New training: "HIPAA Privacy & Security" is due in 3 days'
    assert "You have been assigned the training" in message.text


def test_html_is_autoescaped_and_text_is_not() -> None:
    title = "<script>alert('x')</script> & co"
    for context in (learner(title=title), manager(title=title)):
        email = render_message("training", "-3d", "email", context)
        assert email.html is not None
        assert "<script>" not in email.html
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co" in email.html
        assert title in email.text and title in email.subject
    sms = render_message("training", "-3d", "sms", learner(title=title))
    assert "<script>" in sms.text
    in_app = render_message("training", "-3d", "in_app", learner(title=title))
    assert title in in_app.text


def test_acknowledge_button_in_html_for_learner() -> None:
    email = render_message("training", "-3d", "email", learner())
    assert email.html is not None
    assert f'<a href="{ACK_URL}"' in email.html and ">Acknowledge</a>" in email.html
    without = render_message("training", "-3d", "email", learner(ack_url=None))
    assert without.html is not None and "Acknowledge" not in without.html
    assert "Acknowledge" not in without.text


def test_sms_fits_one_gsm7_segment() -> None:
    message = render_message("training", "-3d", "sms", learner())
    assert message.text == (
        f'Duly: "HIPAA Privacy & Security" due in 3 days (2026-11-26). Ack: {ACK_URL}'
    )
    info = sms_segments(message.text)
    assert (info.encoding, info.segments) == ("GSM-7", 1)


def test_long_sms_is_shortened_keeping_the_ack_url() -> None:
    title = "Advanced Cardiovascular Life Support “ACLS” Provider — Renewal Course for Clinicians"
    message = render_message("certification", "-7d", "sms", learner(title=title))
    info = sms_segments(message.text)
    assert (info.encoding, info.segments) == ("GSM-7", 1)
    assert message.text.endswith(f"... {ACK_URL}")
    assert message.text.startswith('Duly: Your certification "Advanced Cardiovascular')


def test_slack_blocks() -> None:
    title = 'Fire "Safety" \\ <!channel> & more'
    message = render_message("certification", "-14d", "slack", learner(title=title))
    assert message.blocks is not None
    assert json.loads(json.dumps(message.blocks)) == message.blocks
    assert all(isinstance(block, dict) and "type" in block for block in message.blocks)
    (button,) = ack_buttons(message.blocks)
    assert button["type"] == "button"
    assert button["value"] == TOKEN
    assert button["text"] == {"type": "plain_text", "text": "Acknowledge"}
    section = message.blocks[0]["text"]["text"]
    assert 'Fire "Safety" \\ &lt;!channel&gt; &amp; more' in section
    assert "<!channel>" not in message.text


def test_slack_button_uses_an_explicit_token() -> None:
    message = render_message("training", "0d", "slack", learner(ack_token="tok-1", ack_url=None))
    assert message.blocks is not None
    assert [b["value"] for b in ack_buttons(message.blocks)] == ["tok-1"]


@pytest.mark.parametrize("channel", sorted(CHANNEL_PARTS))
def test_digest(channel: str) -> None:
    items = [
        {"title": "Fire Safety", "due_date": "2026-12-01", "days_before_due": 5, "stage": "-5d"},
        {"title": "<HIPAA>", "due_date": "2026-11-20", "days_before_due": -2, "stage": "+2d"},
    ]
    context = {"first_name": "Ada", "digest_items": items, "ack_url": ACK_URL}
    message = render_message("training", "-5d", channel, context)
    assert all(name.startswith("default/digest.") for name in message.templates.values())
    if channel == "email":
        assert message.subject == "2 compliance items need your attention (1 overdue)"
        lines = message.text.splitlines()
        assert lines.index('- "<HIPAA>": 2 days overdue (2026-11-20)') < lines.index(
            '- "Fire Safety": due in 5 days (2026-12-01)'
        )
        assert message.html is not None and "&lt;HIPAA&gt;" in message.html
    if channel == "sms":
        assert sms_segments(message.text).segments == 1
    if channel == "slack":
        assert message.blocks is not None and ack_buttons(message.blocks)[0]["value"] == TOKEN
    managers = render_message(
        "training", "-5d", channel, {**context, "recipient_role": "manager", "first_name": "G"}
    )
    assert "your attention" not in managers.subject + managers.text


def test_pack_override_wins() -> None:
    overrides = {
        "certification/-14d.email.subject.j2": "Custom: {{ title }} ({{ stage }})",
        "certification/critical.sms.txt.j2": "Duly: renew {{ title }} now.",
        "default/reminder.in_app.txt.j2": "Overridden default for {{ first_name }}",
    }
    email = render_message("certification", "-14d", "email", learner(), overrides=overrides)
    assert email.subject == "Custom: HIPAA Privacy & Security (-14d)"
    assert email.templates["subject"] == "certification/-14d.email.subject.j2"
    assert email.templates["txt"] == "default/reminder.email.txt.j2"
    other = render_message("certification", "-30d", "email", learner(), overrides=overrides)
    assert other.subject.startswith("Renewal reminder:")
    sms = render_message("certification", "critical", "sms", learner(), overrides=overrides)
    assert sms.text == "Duly: renew HIPAA Privacy & Security now."
    in_app = render_message("mentorship", "0d", "in_app", learner(), overrides=overrides)
    assert in_app.text == "Overridden default for Ada"


def test_wording_override_falls_back_macro_by_macro() -> None:
    overrides = {
        "training/_wording.j2": '{% macro subject() %}Please do "{{ title }}"{% endmacro %}'
    }
    message = render_message("training", "-3d", "email", learner(), overrides=overrides)
    assert message.subject == 'Please do "HIPAA Privacy & Security"'
    assert 'Your training "HIPAA Privacy & Security" is due on' in message.text


def test_stage_label_slug_and_assignment_alias() -> None:
    assert lookup_chain("assignment", "final warning", "sms", "txt") == [
        "training/final warning.sms.txt.j2",
        "training/final-warning.sms.txt.j2",
        "training/reminder.sms.txt.j2",
        "default/reminder.sms.txt.j2",
    ]
    overrides = {"training/final-warning.sms.txt.j2": "Last call: {{ title }}"}
    sms = render_message("assignment", "final warning", "sms", learner(), overrides=overrides)
    assert sms.text == "Last call: HIPAA Privacy & Security"


def test_legacy_assignment_templates_still_render() -> None:
    context = learner(days_left_phrase="3 days left", late_notice=False, stage="-3d")
    assert render("assignment/reminder.subject.j2", **context).startswith("Reminder:")
    assert "Hi Ada," in render("assignment/reminder.txt.j2", **context)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="channel"):
        render_message("training", "0d", "fax", learner())
    with pytest.raises(ValueError, match="recipient_role"):
        render_message("training", "0d", "email", learner(recipient_role="boss"))
    with pytest.raises(ValueError, match="absolute"):
        render_message("training", "0d", "email", learner(ack_url="/ack/x"))
    with pytest.raises(Exception, match="learner_name"):
        render_message("training", "0d", "email", learner(recipient_role="manager"))
    assert find_template("training", "0d", "sms", "txt", builtins=False) is None
    assert find_template("training", "0d", "sms", "txt") == "default/reminder.sms.txt.j2"


@pytest.mark.parametrize("name", ["medical-practice", "field-technicians"])
def test_shipped_packs_have_every_template(name: str) -> None:
    loaded = pack(name)
    assert missing_templates(loaded) == []
    assert template_errors(loaded) == []
    assert unused_templates(loaded) == []


def test_missing_templates_without_builtins() -> None:
    loaded = pack("medical-practice")
    problems = missing_templates(loaded, builtins=False)
    expected = (
        "certification stage critical channel slack: no json template (looked for"
        " certification/critical.slack.json.j2, certification/reminder.slack.json.j2,"
        " default/reminder.slack.json.j2)"
    )
    assert expected in problems
    # Overrides for the training emails close those gaps only.
    parts = {f"training/reminder.email.{p}.j2": "{{ title }}" for p in ("subject", "txt", "html")}
    covered = loaded.model_copy(update={"templates": parts})
    remaining = missing_templates(covered, builtins=False)
    assert not any(p.startswith("training stage -30d channel email") for p in remaining)
    assert any(p.startswith("training stage -7d channel in_app") for p in remaining)
    assert len(remaining) < len(problems)


def test_template_errors() -> None:
    loaded = pack("medical-practice")
    templates = {
        "training/reminder.email.subject.j2": "{{ title }} for {{ nickname }}",
        "certification/-14d.slack.json.j2": '[{"type": "section", "text": "{{ title }}"}]',
        "certification/reminder.email.txt.j2": "{{ ''.__class__.__mro__ }}",
        "training/-7d.email.txt.j2": (
            "{% if recipient_role == 'manager' %}{{ manager_phone }}{% endif %}ok"
        ),
        "certification/-7d.slack.json.j2": '[{"type": "section", "text": {{ title|tojson }}}]',
        "mentorship/_wording.j2": "{% macro lead() %}{{ mentor_name }}{% endmacro %}",
        "default/reminder.sms.txt.j2": "Duly: {{ wording.sms }}",
    }
    errors = template_errors(loaded.model_copy(update={"templates": templates}))
    by_path = {line.split(":", 1)[0]: line for line in errors}
    assert set(by_path) == {
        "training/reminder.email.subject.j2",
        "certification/-14d.slack.json.j2",
        "certification/reminder.email.txt.j2",
        "training/-7d.email.txt.j2",
        "mentorship/_wording.j2",
    }
    assert "'nickname' is undefined" in by_path["training/reminder.email.subject.j2"]
    assert "not valid JSON" in by_path["certification/-14d.slack.json.j2"]
    assert "SecurityError" in by_path["certification/reminder.email.txt.j2"]
    assert "'manager_phone' is undefined" in by_path["training/-7d.email.txt.j2"]
    assert "'mentor_name' is undefined" in by_path["mentorship/_wording.j2"]


def test_unused_templates() -> None:
    loaded = pack("field-technicians").model_copy(
        update={
            "templates": {
                "certification/-14d.emial.html.j2": "x",
                "certification/-14d.sms.html.j2": "x",
                "certification/-14d.sms.txt.j2": "x",
                "certification/_helpers.j2": "x",
            }
        }
    )
    assert [line.split(":")[0] for line in unused_templates(loaded)] == [
        "certification/-14d.emial.html.j2",
        "certification/-14d.sms.html.j2",
    ]


#: What an HR author (or a stolen HR token) could deploy to burn a worker's CPU or memory.
EXPENSIVE = {
    "training/-30d.email.subject.j2": '{{ "a" * 10**9 }}',
    "training/-30d.email.txt.j2": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    ),
    "training/-30d.email.html.j2": "{{ title|center(1000000000) }}",
    "training/0d.email.subject.j2": '{{ "%999999999s"|format(title) }}',
    "training/0d.email.txt.j2": (
        '{% set ns = namespace(s="x" * 1000) %}'
        "{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"
    ),
    "training/0d.email.html.j2": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}"
    ),
    "training/+7d.email.subject.j2": "{{ (title * 1000).ljust(10**9) }}",
    "training/+7d.email.txt.j2": (
        '{% set s = "x" * 2000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}'
    ),
}


def test_expensive_templates_are_lint_errors_within_a_second() -> None:
    import time

    from notifications.messages import lint_templates
    from rules.lint import lint

    loaded = pack("medical-practice").model_copy(update={"templates": EXPENSIVE})
    started = time.monotonic()
    findings = [
        f for f in lint(loaded, templates=lint_templates) if f.code == "template-too-expensive"
    ]
    elapsed = time.monotonic() - started

    assert {f.file for f in findings} == set(EXPENSIVE), [str(f) for f in findings]
    assert all("simplify the template" in f.message for f in findings)
    # Each template is rendered with 4 samples; all of them together stay cheap.
    assert elapsed < 20, elapsed


def test_an_expensive_template_fails_at_send_time_without_retrying() -> None:
    from temporalio.exceptions import ApplicationError

    from notifications.sandbox import TemplateLimitError

    overrides = {"training/-30d.email.subject.j2": '{{ "a" * 10**9 }}'}
    with pytest.raises(TemplateLimitError) as raised:
        render_message("training", "-30d", "email", learner(), overrides=overrides)
    # A Temporal activity raising it fails for good instead of retrying forever.
    assert isinstance(raised.value, ApplicationError) and raised.value.non_retryable


def test_the_sandbox_bounds_leave_ordinary_templates_alone() -> None:
    overrides = {
        "training/-30d.email.txt.j2": (
            "{% for i in range(3) %}{{ i }}{% endfor %} {{ title|upper|center(60) }} "
            '{{ "%5s"|format("ok") }} {{ ["a", "b"]|join(", ") }} {{ (title ~ "!") * 3 }}'
        )
    }
    message = render_message("training", "-30d", "email", learner(), overrides=overrides)
    assert message.text.startswith("012 ") and "a, b" in message.text
    assert "HIPAA PRIVACY & SECURITY" in message.text
