"""Input bounds of the workflow contracts, and the relative windows callers check.

Two layers, because workflow inputs are validated inside workflows too (when a run decodes its
input, a signal or an update), where there is no trustworthy "today":

* absolute bounds (here, on the models): every date 1970-01-01 … 2200-12-31, every instant in
  those years, cycles 1 … 1000, scores finite. Clock-free, so replay-safe, and wide enough
  that no ladder (stages at most ~10 years from the date), grace period or recurrence (at
  most 20 years) can overflow date arithmetic or an int4 column;
* the relative window (DateWindow / InstantWindow below, fed by settings at the API, CLI and
  service layer): due and expiry dates today − 5 y … today + 10 y, evidence no later than
  now + 5 min. A value outside either answers 422 naming the field, the value and the range.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from domain.calendar import add_months

#: The earliest and latest dates any workflow input may carry.
MIN_DATE = date(1970, 1, 1)
MAX_DATE = date(2200, 12, 31)

#: The earliest and latest instants any workflow input may carry (UTC).
MIN_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
MAX_INSTANT = datetime(2200, 12, 31, 23, 59, 59, tzinfo=UTC)

#: Cycles of one obligation (a monthly training for 80 years is under 1,000).
MAX_CYCLE = 1000

#: The largest magnitude a reported score may have (any LMS scale fits).
MAX_SCORE = 1_000_000.0


class OutOfRange(ValueError):
    """A value outside its allowed range: which field, the value, the range and how to fix it.

    The API turns it into a 422 in FastAPI's validation shape (``loc``, ``msg``, ``input``,
    ``ctx``); the CLI prints :meth:`__str__`.

    Args:
        field: The field as the caller named it (``due_date``, ``cycle``).
        value: The value given.
        minimum: The smallest allowed value.
        maximum: The largest allowed value.
        hint: Why the range is what it is (a setting, "now + 5 min").
    """

    def __init__(
        self, field: str, value: object, minimum: object, maximum: object, hint: str = ""
    ) -> None:
        self.field = field
        self.value = value
        self.minimum = minimum
        self.maximum = maximum
        self.hint = hint
        super().__init__(f"{field} {_show(value)} is out of range: {self.detail}")

    @property
    def detail(self) -> str:
        """The allowed range in words (without the field)."""
        hint = f" ({self.hint})" if self.hint else ""
        return f"allowed {_show(self.minimum)} to {_show(self.maximum)}{hint}"

    def error(self, loc: tuple[str | int, ...] = ("body",)) -> dict[str, object]:
        """This problem as one item of a 422 ``detail`` list (FastAPI's validation shape)."""
        return {
            "type": "out_of_range",
            "loc": (*loc, self.field),
            "msg": f"{self.field} {_show(self.value)} is out of range: {self.detail}",
            "input": _show(self.value),
            "ctx": {"min": _show(self.minimum), "max": _show(self.maximum)},
        }


def _show(value: object) -> str:
    return value.isoformat() if isinstance(value, date | datetime) else str(value)


def _range_error(value: object, minimum: object, maximum: object) -> PydanticCustomError:
    return PydanticCustomError(
        "out_of_range",
        "{value} is out of range: allowed {min} to {max}",
        {"value": _show(value), "min": _show(minimum), "max": _show(maximum)},
    )


def _check_date(value: date) -> date:
    if not MIN_DATE <= value <= MAX_DATE:
        raise _range_error(value, MIN_DATE, MAX_DATE)
    return value


def _check_instant(value: datetime) -> datetime:
    # A time without an offset is read as UTC: compared with aware instants inside a workflow
    # it would otherwise raise TypeError there and fail the workflow task forever.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not MIN_INSTANT <= value <= MAX_INSTANT:
        raise _range_error(value, MIN_INSTANT, MAX_INSTANT)
    return value


def _check_cycle(value: int) -> int:
    if not 1 <= value <= MAX_CYCLE:
        raise _range_error(value, 1, MAX_CYCLE)
    return value


def _check_score(value: float) -> float:
    if not -MAX_SCORE <= value <= MAX_SCORE:  # also refuses NaN
        raise _range_error(value, -MAX_SCORE, MAX_SCORE)
    return value


#: A date a workflow input may carry (1970-01-01 … 2200-12-31).
BoundedDate = Annotated[date, AfterValidator(_check_date)]

#: An instant a workflow input may carry (in 1970 … 2200; no offset means UTC).
BoundedInstant = Annotated[datetime, AfterValidator(_check_instant)]

#: An obligation cycle (1 … 1000; part of the business key and an int4 column).
Cycle = Annotated[
    int, AfterValidator(_check_cycle), Field(json_schema_extra={"minimum": 1, "maximum": MAX_CYCLE})
]

#: A score as an LMS reports it: finite, within ±1,000,000.
Score = Annotated[
    float,
    AfterValidator(_check_score),
    Field(json_schema_extra={"minimum": -MAX_SCORE, "maximum": MAX_SCORE}),
]


class DateWindow(BaseModel):
    """The dates a caller may give for a due or expiry date, relative to today.

    Built from settings by the API, CLI and services (``Settings.due_date_window``); never
    inside a workflow, whose models only carry the absolute bounds.
    """

    model_config = ConfigDict(frozen=True)

    earliest: date
    latest: date
    hint: str = ""

    def check(self, field: str, value: date) -> None:
        """Raise :class:`OutOfRange` naming ``field`` when ``value`` is outside the window."""
        if not self.earliest <= value <= self.latest:
            raise OutOfRange(field, value, self.earliest, self.latest, self.hint)


class InstantWindow(BaseModel):
    """The instants a caller may give as evidence (completion, start): not in the future."""

    model_config = ConfigDict(frozen=True)

    earliest: datetime
    latest: datetime
    hint: str = ""

    def check(self, field: str, value: datetime) -> datetime:
        """``value`` (UTC when it has no offset), or :class:`OutOfRange` naming ``field``."""
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if not self.earliest <= value <= self.latest:
            raise OutOfRange(field, value, self.earliest, self.latest, self.hint)
        return value


def date_window(today: date, *, past_years: int, future_years: int) -> DateWindow:
    """Today − ``past_years`` … today + ``future_years``, kept inside the absolute bounds."""
    return DateWindow(
        earliest=max(MIN_DATE, add_months(today, -12 * past_years)),
        latest=min(MAX_DATE, add_months(today, 12 * future_years)),
        hint=f"today - {past_years} years to today + {future_years} years",
    )


def instant_window(now: datetime, *, past_years: int, skew_seconds: int) -> InstantWindow:
    """Now − ``past_years`` … now + ``skew_seconds`` (clocks differ a little, never by days)."""
    now = now.replace(microsecond=0)
    earliest = datetime.combine(add_months(now.date(), -12 * past_years), now.timetz())
    return InstantWindow(
        earliest=max(MIN_INSTANT, earliest),
        latest=min(MAX_INSTANT, now + timedelta(seconds=skew_seconds)),
        hint=f"not in the future: now + {skew_seconds} s clock skew at most,"
        f" and not before now - {past_years} years",
    )
