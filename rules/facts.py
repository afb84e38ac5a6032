"""The facts a status rule or an ``unless`` condition may use: names, types, meanings.

This is the contract between the pack format (what HR writes), the condition compiler and the
workflows/activities that build facts. Adding a fact is backwards compatible; renaming one is not.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class FactType(StrEnum):
    """The value types a fact can have."""

    INT = "int"
    BOOL = "bool"
    STR = "str"
    STR_LIST = "str_list"


#: name -> (type, meaning). Obligation facts first, then apprenticeship programs', then the
#: person's directory attributes.
FACTS: dict[str, tuple[FactType, str]] = {
    "kind": (FactType.STR, "training, certification, apprenticeship or mentorship"),
    "requirement": (FactType.STR, "the requirement id"),
    "days_until_due": (
        FactType.INT,
        "days from today to the due date (a certification's: its expiry date); negative when"
        " past due",
    ),
    "days_until_expiry": (
        FactType.INT,
        "days from today to the expiry date (certifications); negative once expired",
    ),
    "completed": (FactType.BOOL, "completion evidence was accepted for this cycle"),
    "acknowledged": (FactType.BOOL, "the learner acknowledged a reminder"),
    "started": (FactType.BOOL, "the learner started the training (LMS attempt or xAPI)"),
    "exempt": (FactType.BOOL, "an unexpired exemption is in force"),
    "in_grace": (FactType.BOOL, "past due/expiry but within the requirement's grace_days"),
    "ce_credits_short": (FactType.INT, "CE credits still needed for renewal (0 when enough)"),
    # Apprenticeship programs (rules.apprenticeship.apprenticeship_facts); their defaults
    # (empty, 0, false) for every other obligation.
    "program": (FactType.STR, "the apprenticeship program id; empty for other obligations"),
    "apprenticeship_status": (
        FactType.STR,
        "active, suspended, completed or withdrawn (apprenticeship programs)",
    ),
    "period": (FactType.INT, "the apprentice's period on record (1, 2...)"),
    "hours_logged": (FactType.INT, "approved work and classroom hours, whole hours"),
    "hours_expected": (
        FactType.INT,
        "hours expected by today at the program's pace (linear over its duration)",
    ),
    "hours_behind": (FactType.INT, "hours_expected minus hours_logged; 0 when ahead"),
    "days_since_approved_hours": (
        FactType.INT,
        "days since the last day with approved hours (or enrolment/reinstatement)",
    ),
    "evaluation_overdue": (FactType.BOOL, "an evaluation is past its due date and grace days"),
    "last_evaluation_score": (
        FactType.INT,
        "the latest evaluation's score, 0-100; 0 before the first evaluation",
    ),
    "below_minimum_score": (
        FactType.BOOL,
        "the latest evaluation scored below the program's minimum_score (false before the"
        " first evaluation)",
    ),
    "advancement_due": (FactType.BOOL, "the current period's hours and skills are all met"),
    "graduation_ready": (FactType.BOOL, "everything graduation needs is met"),
    "roles": (FactType.STR_LIST, 'the person\'s roles; test with "nurse" in roles'),
    "department": (FactType.STR, "the person's department"),
    "location": (FactType.STR, "the person's location"),
    "employer": (FactType.STR, "the person's employer"),
    "employment_status": (FactType.STR, "active, leave or terminated"),
}

#: Facts only one kind of obligation ever sets; every other kind has their defaults. Coverage
#: analysis (:mod:`rules.coverage`) varies them only for their kind, so each kind's rules are
#: checked over that kind's own facts (the combinations of every kind's facts together would
#: be far more than any pack can be checked on, and most of them cannot happen).
KIND_FACTS: dict[str, frozenset[str]] = {
    # Only CertificationWorkflow sends an expiry date and CE credits.
    "certification": frozenset({"days_until_expiry", "ce_credits_short"}),
    # Only ApprenticeshipWorkflow builds these (rules.apprenticeship.apprenticeship_facts).
    "apprenticeship": frozenset(
        {
            "program",
            "apprenticeship_status",
            "period",
            "hours_logged",
            "hours_expected",
            "hours_behind",
            "days_since_approved_hours",
            "evaluation_overdue",
            "last_evaluation_score",
            "below_minimum_score",
            "advancement_due",
            "graduation_ready",
        }
    ),
}

#: Values used for a fact the caller did not supply (so every rule sees every fact).
DEFAULTS: dict[FactType, Any] = {
    FactType.INT: 0,
    FactType.BOOL: False,
    FactType.STR: "",
    FactType.STR_LIST: [],
}


def fact_type(name: str) -> FactType | None:
    """The type of a known fact, or None when the name is unknown."""
    entry = FACTS.get(name)
    return entry[0] if entry else None


#: Every known fact at its default, in :data:`FACTS` order (copied, then overwritten).
_ALL_DEFAULTS: dict[str, Any] = {name: DEFAULTS[kind] for name, (kind, _) in FACTS.items()}


def complete_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """``facts`` with every known fact present (defaults for the missing ones)."""
    # Copy-then-update runs in C: on every decision this was a Python loop over all facts.
    complete = _ALL_DEFAULTS.copy()
    if facts.keys() <= complete.keys():
        complete.update(facts)
    else:  # unknown names are dropped, as before
        complete.update((k, v) for k, v in facts.items() if k in _ALL_DEFAULTS)
    return complete
