"""Input bounds on the workflow contracts (domain.bounds) and the settings' relative window.

No workflow input, signal or update can be built — by a client, the CLI, a bulk job, a
recurrence or Temporal decoding a payload — with a date or number that overflows the date
arithmetic inside a workflow or the int4 columns behind it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from temporalio.contrib.pydantic import pydantic_data_converter

from domain.bounds import MAX_DATE, MIN_DATE, OutOfRange, date_window, instant_window
from domain.calendar import DEFAULT_LADDER_DAYS, add_months, due_instant, next_due_date, plan_ladder
from domain.contracts.assignment import (
    AssignmentInput,
    CompleteSignal,
    ExemptSignal,
    ExtendDueDate,
    StartSignal,
)
from domain.contracts.certification import (
    CeCredit,
    CertificateRecord,
    CertificationInput,
    ClosedCycle,
)
from domain.contracts.digest import DigestInput
from domain.contracts.obligation import AcknowledgeSignal
from duly.settings import Settings
from workflows.bulk import BulkAssignRequest

POISON_DATES = ["0001-01-01", "1969-12-31", "2201-01-01", "9999-12-31"]
POISON_INSTANTS = ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59Z"]
POISON_CYCLES = [0, -1, 1001, 3_000_000_000]

ASSIGNMENT: dict[str, Any] = {
    "person": "p-1",
    "requirement_id": "hipaa",
    "requirement_title": "HIPAA",
    "due_date": "2027-01-15",
}
CERTIFICATE: dict[str, Any] = {
    "cycle": 1,
    "verification_code": "DULY-AAAA-BBBB-CCCC",
    "issued_on": "2026-01-01",
    "expires_on": "2028-01-01",
}


def refused(model: type[BaseModel], data: dict[str, Any], field: tuple[str | int, ...]) -> str:
    """Validate ``data``; assert it fails on ``field`` as out of range; return the message."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    [error] = caught.value.errors()
    assert error["loc"] == field, error
    assert error["type"] == "out_of_range", error
    return str(error["msg"])


@pytest.mark.parametrize("value", POISON_DATES)
def test_assignment_due_date_out_of_bounds_is_refused_with_the_range(value: str) -> None:
    message = refused(AssignmentInput, {**ASSIGNMENT, "due_date": value}, ("due_date",))
    assert message == f"{value} is out of range: allowed 1970-01-01 to 2200-12-31"


@pytest.mark.parametrize("value", POISON_CYCLES)
def test_assignment_cycle_out_of_bounds_is_refused(value: int) -> None:
    message = refused(AssignmentInput, {**ASSIGNMENT, "cycle": value}, ("cycle",))
    assert message == f"{value} is out of range: allowed 1 to 1000"


def test_bounds_are_inclusive() -> None:
    for due in (MIN_DATE, MAX_DATE):
        for cycle in (1, 1000):
            inp = AssignmentInput.model_validate({**ASSIGNMENT, "due_date": due, "cycle": cycle})
            assert (inp.due_date, inp.cycle) == (due, cycle)


@pytest.mark.parametrize("value", POISON_DATES)
@pytest.mark.parametrize("field", ["issued_on", "expires_on"])
def test_certificate_dates_out_of_bounds_are_refused(field: str, value: str) -> None:
    refused(CertificateRecord, {**CERTIFICATE, field: value}, (field,))
    # ...so neither a registration, a renewal nor a continue-as-new can carry one.
    data = {"person": "p-1", "certification_id": "bls", "title": "BLS"}
    certificate = {**CERTIFICATE, field: value}
    refused(CertificationInput, {**data, "certificate": certificate}, ("certificate", field))


@pytest.mark.parametrize("value", POISON_CYCLES)
def test_certificate_cycle_out_of_bounds_is_refused(value: int) -> None:
    refused(CertificateRecord, {**CERTIFICATE, "cycle": value}, ("cycle",))


@pytest.mark.parametrize("value", POISON_DATES)
def test_ce_credit_and_closed_cycle_dates_are_bounded(value: str) -> None:
    credit = {"credits": 2, "activity": "CPR", "earned_on": value, "actor": "hr"}
    refused(CeCredit, credit, ("earned_on",))
    closed = {
        "certificate": CERTIFICATE,
        "outcome": "renewed_in_window",
        "closed_on": value,
        "last_status": "renewal_due",
        "run_id": "r",
    }
    refused(ClosedCycle, closed, ("closed_on",))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1001.0, 0.0])
def test_ce_credits_must_be_a_finite_sane_number(value: float) -> None:
    with pytest.raises(ValidationError):
        CeCredit(credits=value, activity="CPR", earned_on=date(2026, 1, 1), actor="hr")


@pytest.mark.parametrize("value", POISON_INSTANTS)
def test_evidence_instants_out_of_bounds_are_refused(value: str) -> None:
    refused(CompleteSignal, {"completed_at": value, "actor": "lms"}, ("completed_at",))
    refused(StartSignal, {"started_at": value, "actor": "lms"}, ("started_at",))
    refused(AcknowledgeSignal, {"acknowledged_at": value, "actor": "me"}, ("acknowledged_at",))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e7])
def test_scores_must_be_finite_and_sane(value: float) -> None:
    data = {"completed_at": "2026-01-01T00:00:00Z", "actor": "lms", "score": value}
    refused(CompleteSignal, data, ("score",))


def test_an_instant_without_offset_is_read_as_utc() -> None:
    # Compared with aware instants inside the workflow, a naive one would raise TypeError in
    # the signal handler and fail the workflow task on every retry.
    signal = CompleteSignal.model_validate({"completed_at": "2026-03-01T10:00:00", "actor": "x"})
    assert signal.completed_at == datetime(2026, 3, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize("value", POISON_DATES)
def test_signal_and_update_dates_are_bounded(value: str) -> None:
    update = {"new_due_date": value, "reason": "moved", "actor": "hr"}
    refused(ExtendDueDate, update, ("new_due_date",))
    exemption = {"reason": "on leave", "approver": "hr", "actor": "hr", "expires_on": value}
    refused(ExemptSignal, exemption, ("expires_on",))
    refused(DigestInput, {"person": "p", "channel": "email", "day": value}, ("day",))
    bulk = {"bulk_id": "b1", "requirement_id": "hipaa", "assigned_by": "hr", "due_date": value}
    refused(BulkAssignRequest, bulk, ("due_date",))


@pytest.mark.parametrize("value", ["0001-01-01", "9999-12-31"])
def test_temporal_cannot_decode_a_poisoned_payload_into_a_workflow_input(value: str) -> None:
    """A payload written by an old client (or by hand) fails to decode instead of starting."""
    converter = pydantic_data_converter.payload_converter
    payloads = converter.to_payloads([{**ASSIGNMENT, "due_date": value}])
    with pytest.raises(ValidationError, match="out of range"):
        converter.from_payloads(payloads, [AssignmentInput])


@pytest.mark.parametrize("day", [MIN_DATE, MAX_DATE])
@pytest.mark.parametrize("offset", [-14 * 60, 0, 14 * 60])
def test_no_date_within_bounds_overflows_the_workflow_arithmetic(day: date, offset: int) -> None:
    """The absolute bounds leave room for every ladder, grace period and recurrence."""
    ten_years = 3653
    ladder = plan_ladder(day, offset, (ten_years, *DEFAULT_LADDER_DAYS, -ten_years))
    assert ladder[0].fire_at < ladder[-1].fire_at
    assert due_instant(day + timedelta(days=365), offset) > due_instant(day, offset)
    for basis in ("from_completion", "from_previous_due", "fixed_anniversary"):
        nxt = next_due_date(
            basis=basis, months=240, completed_on=day, previous_due=day, anniversary="02-29"
        )
        assert nxt > day


def test_date_window_defaults_to_five_years_back_and_ten_ahead() -> None:
    today = date(2026, 11, 30)
    window = Settings(env="test").due_date_window(today)
    assert (window.earliest, window.latest) == (date(2021, 11, 30), date(2036, 11, 30))
    window.check("due_date", date(2021, 11, 30))
    window.check("due_date", date(2036, 11, 30))
    with pytest.raises(OutOfRange) as caught:
        window.check("due_date", date(2036, 12, 1))
    problem = caught.value
    assert str(problem).startswith(
        "due_date 2036-12-01 is out of range: allowed 2021-11-30 to 2036-11-30"
    )
    assert "DULY_DUE_DATE_FUTURE_YEARS" in str(problem)


def test_date_window_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DULY_DUE_DATE_PAST_YEARS", "1")
    monkeypatch.setenv("DULY_DUE_DATE_FUTURE_YEARS", "2")
    window = Settings().due_date_window(date(2024, 2, 29))
    assert (window.earliest, window.latest) == (date(2023, 2, 28), date(2026, 2, 28))


def test_the_window_never_leaves_the_absolute_bounds() -> None:
    window = date_window(date(2195, 1, 1), past_years=50, future_years=100)
    assert window.latest == MAX_DATE
    assert date_window(date(1972, 1, 1), past_years=50, future_years=1).earliest == MIN_DATE
    assert add_months(date(2195, 1, 1), 1200) > MAX_DATE  # the clamp above is needed


def test_evidence_may_not_be_in_the_future_beyond_the_skew() -> None:
    now = datetime(2026, 11, 30, 8, 10, 30, 123456, tzinfo=UTC)
    window = instant_window(now, past_years=5, skew_seconds=300)
    at = datetime(2026, 11, 30, 8, 15, 30, tzinfo=UTC)
    assert window.check("completed_at", at) == at  # exactly now + 5 min
    with pytest.raises(OutOfRange, match=r"completed_at 2026-11-30T08:15:31\+00:00"):
        window.check("completed_at", at + timedelta(seconds=1))
    with pytest.raises(OutOfRange):
        window.check("completed_at", datetime(2099, 1, 1, tzinfo=UTC))
    with pytest.raises(OutOfRange):
        window.check("completed_at", datetime(2021, 11, 30, 8, 10, tzinfo=UTC))
    # A naive instant is read as UTC, as the models do.
    assert window.check("completed_at", datetime(2026, 11, 30, 8)) == datetime(
        2026, 11, 30, 8, tzinfo=UTC
    )


def test_settings_refuse_a_window_that_could_leave_the_bounds() -> None:
    with pytest.raises(ValidationError):
        Settings(due_date_future_years=500)
    with pytest.raises(ValidationError):
        Settings(due_date_future_years=0)
