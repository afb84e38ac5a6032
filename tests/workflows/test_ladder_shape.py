"""The obligation workflows share one ladder runner and name nothing by string.

Running workflows and the recorded histories depend on the workflow type, signal, update and
query names, so they are pinned here; the runner refactor must not rename any of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from temporalio.workflow import _Definition

from domain.contracts.certification import CertificationEvent, CertificationState
from domain.contracts.obligation import ObligationMessages
from workflows.assignment import AssignmentWorkflow
from workflows.certification import CertificationWorkflow
from workflows.ladder import Ladder
from workflows.mentorship import MentorshipWorkflow

ROOT = Path(__file__).resolve().parents[2]

NAMES = {
    AssignmentWorkflow: (
        "AssignmentWorkflow",
        {
            "complete",
            "acknowledge",
            "adopt_pack",
            "redeliver",
            "start",
            "cancel",
            "exempt",
            "replan",
            # A leave pauses the ladder and a return resumes it (directory changes, issue 16).
            "pause",
            "resume",
        },
        {"extend_due_date", "grant_attempts"},
        {"state"},
    ),
    CertificationWorkflow: (
        "CertificationWorkflow",
        {
            "suspend",
            "reinstate",
            "revoke",
            "acknowledge",
            "redeliver",
            "replan",
            "adopt_pack",
            # The holder left: the directory automation stops following it (issue 16).
            "cancel",
        },
        {"renew", "log_ce_credits"},
        {"state"},
    ),
    MentorshipWorkflow: (
        "MentorshipWorkflow",
        # ``leave``: a side on leave holds the nudges (the directory automation, issue 16).
        {"acknowledge", "adopt_pack", "redeliver", "replan", "leave"},
        # ``mentor_left``: the mentor left the organisation (the directory automation).
        {"accept", "decline", "log_session", "feedback", "complete", "cancel", "mentor_left"},
        {"state"},
    ),
}


@pytest.mark.parametrize("cls", list(NAMES), ids=lambda c: c.__name__)
def test_workflow_and_message_names_are_unchanged(cls: type) -> None:
    name, signals, updates, queries = NAMES[cls]
    defn = _Definition.must_from_class(cls)
    assert defn.name == name
    assert set(defn.signals) == signals
    assert set(defn.updates) == updates
    assert set(defn.queries) == queries


@pytest.mark.parametrize("cls", list(NAMES), ids=lambda c: c.__name__)
def test_every_family_answers_the_obligation_messages(cls: type) -> None:
    assert issubclass(cls, ObligationMessages)
    shared = {n for n in vars(ObligationMessages) if not n.startswith("_")}
    assert shared <= set(_Definition.must_from_class(cls).signals)


def test_both_families_compose_the_runner() -> None:
    sources = {
        path: path.read_text()
        for path in (ROOT / "workflows").glob("*.py")
        if path.name != "ladder.py"
    }
    composing = {p.name for p, text in sources.items() if "Ladder(" in text}
    # The project countdown (issue 17), mentorships and apprenticeships compose it too.
    assert composing == {
        "assignment.py",
        "certification.py",
        "project.py",
        "mentorship.py",
        "apprenticeship.py",
    }
    # The loop, the re-send and the timeline live in the runner only.
    for path, text in sources.items():
        copies = ["def _sleep_until", "def _resend", "deferred_until", "wait_condition(\n"]
        for copy in copies:
            assert copy not in text, f"{path.name} has its own {copy.strip()}"
    assert Ladder.__module__ == "workflows.ladder"


def test_certifications_have_their_own_timeline_type() -> None:
    assert CertificationState.model_fields["events"].annotation == list[CertificationEvent]
    text = (ROOT / "workflows" / "certification.py").read_text()
    assert "AssignmentEvent" not in text
    assert "AssignmentActivities" not in text


def _string_references(path: Path) -> list[str]:
    """Calls that name an activity, workflow or signal by a string literal."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr not in {
            "execute_activity",
            "start_activity",
            "start_workflow",
            "execute_workflow",
            "signal",
            "execute_child_workflow",
            "start_child_workflow",
        }:
            continue
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            found.append(
                f"{path.relative_to(ROOT)}:{node.lineno} {node.func.attr}({first.value!r})"
            )
    return found


def test_workflows_and_activities_use_typed_references() -> None:
    paths = sorted((ROOT / "workflows").glob("*.py")) + sorted((ROOT / "activities").glob("*.py"))
    assert [ref for path in paths for ref in _string_references(path)] == []
