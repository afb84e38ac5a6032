"""The example rules packs under rules/packs/ load, pass their own tests and cover every case.

Status is decided the way a pack says: the first status rule whose condition holds for the
(completed) facts decides the status and the rule name.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from domain.ids import slugify
from rules.conditions import compile_condition
from rules.coverage import analyse
from rules.facts import complete_facts
from rules.model import Kind, Pack, PackFile, Recipient, RuleTest, StatusRule

ROOT = Path(__file__).resolve().parents[2]
PACKS_DIR = ROOT / "rules" / "packs"
DEMO_PEOPLE = ROOT / "duly" / "demo" / "people.csv"
PACK_DIRS = sorted(p for p in PACKS_DIR.iterdir() if p.is_dir() and any(p.glob("*.yaml")))
MEDICAL = PACKS_DIR / "medical-practice"
FIELD = PACKS_DIR / "field-technicians"

_load_pack: Callable[[Path], Pack] | None
try:
    from rules.loader import load_pack as _load_pack
except ImportError:  # the loader is not there yet: merge the files the simple way
    _load_pack = None


def merge_pack(directory: Path) -> Pack:
    """Validate each YAML file of ``directory`` as a PackFile and merge them in name order."""
    texts = {p.name: p.read_text(encoding="utf-8") for p in sorted(directory.glob("*.y*ml"))}
    parsed = [PackFile.model_validate(yaml.safe_load(text) or {}) for text in texts.values()]
    infos = [f.pack for f in parsed if f.pack is not None]
    assert len(infos) == 1, f"{directory.name}: expected exactly one 'pack' section"
    digest = hashlib.sha256()
    for name, text in texts.items():
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return Pack(
        info=infos[0],
        requirements=[r for f in parsed for r in f.requirements],
        escalation_policies=[p for f in parsed for p in f.escalation_policies],
        status_rules=[r for f in parsed for r in f.status_rules],
        tests=[t for f in parsed for t in f.tests],
        content_hash=digest.hexdigest(),
        files=texts,
    )


def load(directory: Path) -> Pack:
    """The pack, through the real loader when it exists."""
    return _load_pack(directory) if _load_pack is not None else merge_pack(directory)


def decide(rules: list[StatusRule], case: RuleTest) -> StatusRule:
    """The first rule whose condition holds for the case's facts."""
    facts = complete_facts(case.facts)
    for rule in rules:
        if compile_condition(rule.when).evaluate(facts):
            return rule
    raise AssertionError(f"no status rule matches test case {case.name!r}")


def demo_people() -> list[dict[str, str]]:
    with DEMO_PEOPLE.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_both_example_packs_are_present() -> None:
    assert MEDICAL in PACK_DIRS and FIELD in PACK_DIRS


@pytest.mark.parametrize("directory", PACK_DIRS, ids=lambda p: p.name)
def test_pack_loads_and_agrees_with_a_plain_merge(directory: Path) -> None:
    pack = load(directory)
    assert pack.info.name == directory.name
    assert pack.requirements and pack.escalation_policies and pack.status_rules
    assert len(pack.tests) >= 15
    plain = merge_pack(directory)
    assert pack.info == plain.info
    assert pack.requirements == plain.requirements
    assert pack.escalation_policies == plain.escalation_policies
    assert pack.status_rules == plain.status_rules
    assert pack.tests == plain.tests


@pytest.mark.parametrize("directory", PACK_DIRS, ids=lambda p: p.name)
def test_every_test_case_passes(directory: Path) -> None:
    pack = load(directory)
    failures = []
    for case in pack.tests:
        rule = decide(pack.status_rules, case)
        expected = (case.expect.status, case.expect.rule or rule.name)
        if (rule.status, rule.name) != expected:
            failures.append(f"{case.name}: got {rule.status} by {rule.name}, expected {expected}")
    assert failures == []


@pytest.mark.parametrize("directory", PACK_DIRS, ids=lambda p: p.name)
def test_every_case_names_its_rule_and_every_rule_is_exercised(directory: Path) -> None:
    pack = load(directory)
    assert all(case.expect.rule for case in pack.tests)
    fired = {decide(pack.status_rules, case).name for case in pack.tests}
    assert [r.name for r in pack.status_rules if r.name not in fired] == []


@pytest.mark.parametrize("directory", PACK_DIRS, ids=lambda p: p.name)
def test_no_rule_is_unreachable_and_no_facts_are_uncovered(directory: Path) -> None:
    pack = load(directory)
    coverage = analyse([(rule.name, rule.condition) for rule in pack.status_rules])
    assert coverage.unreachable == {}
    assert coverage.uncovered == []
    # Checked on every combination (per kind), not sampled: lint --strict passes.
    assert coverage.exhaustive
    assert pack.status_rules[-1].condition.always_true


@pytest.mark.parametrize("directory", PACK_DIRS, ids=lambda p: p.name)
def test_references_statuses_and_contacts_are_consistent(directory: Path) -> None:
    pack = load(directory)
    policy_ids = {p.id for p in pack.escalation_policies}
    used = {r.escalation for r in pack.requirements}
    assert used <= policy_ids and policy_ids <= used
    assert len({r.id for r in pack.requirements}) == len(pack.requirements)
    activities = [r.xapi_activity_id for r in pack.requirements if r.xapi_activity_id]
    assert len(set(activities)) == len(activities)
    rule_names = {r.name for r in pack.status_rules}
    assert {r.status for r in pack.status_rules} <= set(pack.statuses)
    assert {c.expect.status for c in pack.tests} <= set(pack.statuses)
    assert {c.expect.rule for c in pack.tests} <= rule_names
    recipients = {n for p in pack.escalation_policies for s in p.stages for n in s.notify}
    contacts = pack.info.contacts
    assert contacts.hr_mailbox or Recipient.HR not in recipients
    assert contacts.employer_contacts or Recipient.EMPLOYER_CONTACT not in recipients
    named = {e for r in pack.status_rules for e in r.condition.constants().get("employer", ())}
    assert named <= set(contacts.employer_contacts)
    for requirement in pack.requirements:
        if requirement.kind is Kind.CERTIFICATION:
            assert requirement.issuing_body and requirement.code, requirement.id


def test_medical_requirements_apply_to_people_in_the_demo_directory() -> None:
    pack = load(MEDICAL)
    people = [p for p in demo_people() if p["employment_status"] != "terminated"]
    nobody = [
        r.id
        for r in pack.requirements
        if not any(
            r.applies_to.applies(
                p["roles"].split(";"), p["department"], p["location"], p["employer"]
            )
            for p in people
        )
    ]
    assert nobody == []
    employers = {p["employer"] for p in people} - {"Duly Health"}
    assert employers <= set(pack.info.contacts.employer_contacts)


def test_medical_pack_uses_the_demo_training_titles() -> None:
    pack = load(MEDICAL)
    titles = {
        "hipaa-privacy-security": "HIPAA Privacy & Security",
        "osha-bloodborne-pathogens": "OSHA Bloodborne Pathogens",
        "fire-safety": "Fire Safety",
    }
    for requirement_id, title in titles.items():
        requirement = pack.requirement(requirement_id)
        assert requirement is not None and requirement.title == title
        assert slugify(title) == requirement_id


def test_medical_certification_policy_is_the_default_schedule() -> None:
    policy = load(MEDICAL).policy("certification-default")
    assert policy is not None
    schedule = [
        (s.offset_days, sorted(s.channels), Recipient.EMPLOYER_CONTACT in s.notify)
        for s in policy.ordered()
        if s.offset_days <= 0
    ]
    assert schedule == [
        (-90, ["email"], False),
        (-60, ["email", "in_app"], False),
        (-30, ["email", "in_app", "slack"], False),
        (-14, ["email", "in_app", "slack"], True),
        (-7, ["email", "in_app", "slack", "sms"], False),
        (0, ["email", "in_app"], True),
    ]


def test_field_pack_notifies_the_safety_channel_and_subcontractors() -> None:
    pack = load(FIELD)
    channels = {
        s.slack_channel for p in pack.escalation_policies for s in p.stages if s.slack_channel
    }
    assert "#field-safety" in channels
    assert len(pack.info.contacts.employer_contacts) >= 2
    assert all(e.endswith(".example.com") for e in pack.info.contacts.employer_contacts.values())
    kinds = {r.kind for r in pack.requirements}
    assert {Kind.CERTIFICATION, Kind.TRAINING, Kind.APPRENTICESHIP} <= kinds
