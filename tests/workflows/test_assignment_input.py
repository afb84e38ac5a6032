"""assignment_input carries the pack requirement's kind; certifications are not assigned."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from domain.contracts.assignment import AssignmentInput
from domain.kinds import ObligationKind
from rules.loader import load_pack
from services.assignments import NotAnAssignment, assignment_input
from store.models import Person

FIELD = Path(__file__).parents[2] / "rules" / "packs" / "field-technicians"


def _person() -> Person:
    return Person(external_id="p-1", name="Ada", time_zone="America/New_York")


def test_the_requirement_kind_is_carried_into_the_workflow_input() -> None:
    pack = load_pack(FIELD)
    kinds = {
        requirement_id: assignment_input(
            _person(),
            title="x",
            requirement_id=requirement_id,
            due_date=date(2027, 6, 1),
            assigned_by="hr",
            pack=pack,
        ).kind
        for requirement_id in ("neiep-module-1", "lockout-tagout")
    }
    assert kinds == {
        "neiep-module-1": ObligationKind.APPRENTICESHIP,
        "lockout-tagout": ObligationKind.TRAINING,
    }
    # No pack: the built-in rules, as a training.
    adhoc = assignment_input(_person(), title="Ad hoc", due_date=date(2027, 6, 1), assigned_by="hr")
    assert adhoc.kind is ObligationKind.TRAINING


def test_inputs_recorded_before_kinds_were_carried_still_load_as_training() -> None:
    old = {
        "person": "p-1",
        "requirement_id": "hipaa",
        "requirement_title": "HIPAA",
        "due_date": "2027-01-01",
    }
    assert AssignmentInput.model_validate(old).kind is ObligationKind.TRAINING


def test_a_certification_is_registered_not_assigned() -> None:
    with pytest.raises(NotAnAssignment, match="POST /certifications"):
        assignment_input(
            _person(),
            title="x",
            requirement_id="otis-gen2-service",
            due_date=date(2027, 6, 1),
            assigned_by="hr",
            pack=load_pack(FIELD),
        )
