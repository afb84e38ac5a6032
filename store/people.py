"""The people directory import: parse CSV/JSON from the HRIS and upsert by external id.

Parsing never raises for a bad row: each problem becomes a :class:`RowError` naming the row as a
spreadsheet user sees it (CSV: the header is row 1, the first person is row 2; JSON: the first
object is row 1), the column and what to fix. Only a file that cannot be read at all (no header,
a missing ``external_id``/``name`` column, unparseable JSON) raises :class:`PeopleFileError`.

Import semantics:

* people are upserted by ``external_id``; a column (CSV) or key (JSON) that is absent from the
  file leaves that field of existing people untouched, while an empty cell clears it;
* managers are resolved against the file and the people already in the directory, so a file may
  list reports before their managers and may carry only the people who changed;
* a row whose manager is unknown, or that would close a management cycle (including managing
  oneself, and cycles through people already in the directory), is rejected; every other good
  row is still written.

Error values never carry email addresses or phone numbers: those are shown as ``<redacted>``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.ids import ID_PATTERN
from domain.statuses import EmploymentStatus
from store.models import Person

#: Columns a CSV file may carry, in the order they are documented.
CSV_COLUMNS: tuple[str, ...] = (
    "external_id",
    "name",
    "email",
    "phone",
    "slack_user_id",
    "roles",
    "department",
    "location",
    "time_zone",
    "employer",
    "manager",
    "employment_status",
    "start_date",
    "user_name",
)
#: Columns without which nothing can be imported.
REQUIRED_COLUMNS: tuple[str, ...] = ("external_id", "name")
#: JSON objects may also spell the manager as ``manager_external_id``.
JSON_KEYS: frozenset[str] = frozenset(CSV_COLUMNS) | {"manager_external_id"}
#: Shown instead of the value in errors about these columns (personal contact data).
REDACTED_COLUMNS: frozenset[str] = frozenset({"email", "phone", "user_name"})
#: The longest SCIM ``userName`` (``people.user_name``).
MAX_USER_NAME = 200
REDACTED = "<redacted>"

#: Person attributes an import writes (the manager is resolved separately).
_SCALAR_FIELDS: tuple[str, ...] = (
    "name",
    "email",
    "phone",
    "slack_user_id",
    "roles",
    "department",
    "location",
    "time_zone",
    "employer",
    "employment_status",
    "start_date",
)
_MANAGER_FIELD = "manager_external_id"

_ID_RE = re.compile(ID_PATTERN)
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_PHONE_RE = re.compile(r"^\+[0-9]{8,15}$")
#: Separators people type inside phone numbers; stripped before checking E.164.
_PHONE_PUNCTUATION = re.compile(r"[\s().-]")
_SLACK_RE = re.compile(r"^[A-Z0-9]{2,32}$")
_ROLE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_ROLE_SPLIT = re.compile(r"[;|]")
_MAX_VALUE_IN_ERROR = 120

#: The longest cell (CSV) or string value (JSON) a people file may hold, in characters: the
#: ``csv`` module's own default field limit. No directory field comes near it; a longer one is
#: a wrong file or an attack, answered 422 naming the row and column.
MAX_CELL_CHARS = 131_072
#: At most this many cell problems are listed (a binary file would list every cell).
_MAX_CELL_PROBLEMS = 20
# The ``csv`` module's field limit is process-wide and raises mid-file without naming the row or
# column (a 500 before). Raised (never lowered) to the largest import body, so the reader always
# hands the cell to :func:`_cell_problem`, which applies MAX_CELL_CHARS and names where it is.
_MAX_FILE_CHARS = 64 * 1024 * 1024
if csv.field_size_limit() < _MAX_FILE_CHARS:
    csv.field_size_limit(_MAX_FILE_CHARS)
_IN_CHUNK = 500


class RowError(BaseModel):
    """Why one row (or the whole file) was not imported as given.

    Attributes:
        row: The row number as a spreadsheet user sees it (CSV: header is row 1, first data row
            is row 2; JSON: the object's index + 1). File-level CSV errors use row 1.
        column: The column (CSV) or key (JSON) at fault, when there is one.
        value: The offending value; email and phone values are always ``<redacted>``.
        message: What is wrong and how to fix it.
        file_level: True when the error concerns the file (for example unknown columns), not
            one person; such errors do not reject a row.
    """

    row: int
    column: str | None = None
    value: str | None = None
    message: str
    file_level: bool = False


class ImportReport(BaseModel):
    """The outcome of one import: counts plus every error."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = Field(default=0, description="Rows not written because of an error.")
    errors: list[RowError] = Field(default_factory=list)
    replanned: int = Field(
        default=0,
        description="Open obligations signalled to re-plan their remaining reminders because"
        " their person's time zone changed.",
    )
    replan_note: str | None = Field(
        default=None,
        description="Why some could not be signalled now (they are re-planned by the nightly"
        " sweep).",
    )
    automated: int = Field(
        default=0,
        description="DirectoryChangeWorkflows started: one per person whose attributes changed"
        " (joiners get what their pack says, movers' and leavers' obligations follow).",
    )
    automation_note: str | None = Field(
        default=None,
        description="Why some changes could not be automated now (the nightly reconciliation"
        " repairs them).",
    )
    dry_run: list[dict[str, Any]] | None = Field(
        default=None,
        description="Dry run only (nothing saved): per changed person, what would be assigned"
        " (`assign`), closed (`close`, with status and reason), kept, paused or resumed.",
    )

    @property
    def counts(self) -> dict[str, int]:
        """The counts only (safe for logs and the audit trail: no personal data)."""
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "errors": len(self.errors),
        }


class PeopleFileError(ValueError):
    """The file cannot be imported at all; :attr:`errors` say what to fix."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        """Wrap the file-level errors; the exception text joins their messages."""
        self.errors = list(errors)
        super().__init__("; ".join(e.message for e in self.errors))


def _blank_to_none(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


class PersonRow(BaseModel):
    """One person as the HRIS describes them.

    Fields the source did not mention (a missing CSV column, an absent JSON key) are not in
    ``model_fields_set`` and are left untouched on people who already exist.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    row: int = Field(default=0, ge=0, exclude=True, description="Source row (set by parsers).")
    external_id: str
    name: str = Field(max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = None
    slack_user_id: str | None = None
    roles: list[str] = Field(default_factory=list)
    department: str | None = Field(default=None, max_length=100)
    location: str | None = Field(default=None, max_length=100)
    time_zone: str = "UTC"
    employer: str | None = Field(default=None, max_length=200)
    manager_external_id: str | None = Field(
        default=None, validation_alias=AliasChoices("manager_external_id", "manager")
    )
    employment_status: EmploymentStatus = EmploymentStatus.ACTIVE
    #: Hire (or start) date, ``YYYY-MM-DD``: a joiner's due dates count from it.
    start_date: date | None = None
    #: The SCIM ``userName`` (often the sign-in email): unique ignoring case; empty clears it
    #: (SCIM then shows the external id).
    user_name: str | None = Field(default=None, max_length=MAX_USER_NAME)

    @field_validator("start_date", mode="before")
    @classmethod
    def _check_start_date(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                raise ValueError("start_date must be a date like 2026-01-31") from None
        return value

    @field_validator("external_id", mode="before")
    @classmethod
    def _check_external_id(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("external_id is required")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and not _ID_RE.match(value.strip()):
            if not value.strip():
                raise ValueError("external_id is required")
            raise ValueError(
                "external_id must be 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, value: Any) -> Any:
        if _blank_to_none(value) is None:
            raise ValueError("name is required")
        return value

    @field_validator(
        "email",
        "phone",
        "slack_user_id",
        "department",
        "location",
        "employer",
        "manager_external_id",
        "user_name",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator("user_name")
    @classmethod
    def _check_user_name(cls, value: str | None) -> str | None:
        if value is not None and any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError(
                "user_name must have no spaces or control characters (it is the sign-in name,"
                " such as name@example.org)"
            )
        return value

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str | None) -> str | None:
        # Deliberately loose: deliverability is the email provider's job, typos are ours.
        if value is not None and not _EMAIL_RE.match(value):
            raise ValueError("email must look like name@example.org")
        return value

    @field_validator("phone", mode="before")
    @classmethod
    def _check_phone(cls, value: Any) -> Any:
        # Runs before the blank-to-None validator (pydantic runs "before" validators last-first).
        value = _blank_to_none(value)
        if isinstance(value, str):
            value = _PHONE_PUNCTUATION.sub("", value)
            if not _PHONE_RE.match(value):
                raise ValueError(
                    "phone must be in E.164 form: '+', country code and number, "
                    "8 to 15 digits (for example +15550100123)"
                )
        return value

    @field_validator("slack_user_id")
    @classmethod
    def _check_slack(cls, value: str | None) -> str | None:
        if value is not None and not _SLACK_RE.match(value):
            raise ValueError(
                "slack_user_id must be a Slack member id: capital letters and digits, "
                "like U012AB3CD (Slack profile > ⋮ > Copy member ID)"
            )
        return value

    @field_validator("roles", mode="before")
    @classmethod
    def _split_roles(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            value = _ROLE_SPLIT.split(value)
        if isinstance(value, list | tuple):
            roles: list[Any] = []
            for item in value:
                if isinstance(item, str):
                    item = re.sub(r"\s+", "_", item.strip().lower())
                    if not item:
                        continue
                    if not _ROLE_RE.match(item):
                        raise ValueError(
                            f"role {item[:64]!r} must be lower-case letters, digits, '_', '.' "
                            "or '-'; separate several roles with ';' or '|'"
                        )
                if item not in roles:
                    roles.append(item)
            return roles
        return value

    @field_validator("time_zone", mode="before")
    @classmethod
    def _check_time_zone(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        if value is None:
            return "UTC"
        if isinstance(value, str):
            value = value.strip()
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown time zone {value[:64]!r}: use an IANA name such as "
                    "America/New_York or Europe/London"
                ) from None
        return value

    @field_validator("manager_external_id")
    @classmethod
    def _check_manager(cls, value: str | None) -> str | None:
        if value is not None and not _ID_RE.match(value):
            raise ValueError("manager must be the external_id of the person's manager")
        return value

    @field_validator("employment_status", mode="before")
    @classmethod
    def _check_status(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        if value is None:
            return EmploymentStatus.ACTIVE
        if isinstance(value, str):
            value = value.strip().lower()
            if value not in {s.value for s in EmploymentStatus}:
                raise ValueError(
                    "employment_status must be one of: "
                    + ", ".join(s.value for s in EmploymentStatus)
                )
        return value


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def _show(column: str | None, value: Any) -> str | None:
    """The value as it may appear in an error: redacted, stringified and truncated."""
    if value is None:
        return None
    if column in REDACTED_COLUMNS:
        return REDACTED
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > _MAX_VALUE_IN_ERROR:
        text = text[: _MAX_VALUE_IN_ERROR - 1] + "…"
    return text


def _column_of(field: str) -> str:
    return "manager" if field in {_MANAGER_FIELD, "manager"} else field


def _validation_errors(
    exc: ValidationError, *, row: int, data: Mapping[str, Any]
) -> list[RowError]:
    errors: list[RowError] = []
    for detail in exc.errors(include_url=False, include_input=False):
        loc = detail.get("loc", ())
        field = str(loc[0]) if loc else None
        column = _column_of(field) if field else None
        if detail["type"] == "value_error":
            message = str(detail["ctx"]["error"])
        elif detail["type"] == "missing":
            message = f"{column} is required"
        else:
            message = f"{column}: {detail['msg']}"
        raw = data.get(field) if field is not None else None
        if raw is None and column == "manager":
            raw = data.get("manager", data.get(_MANAGER_FIELD))
        errors.append(RowError(row=row, column=column, value=_show(column, raw), message=message))
    return errors


def _validate(data: Mapping[str, Any], *, row: int) -> PersonRow | list[RowError]:
    try:
        return PersonRow.model_validate({**data, "row": row})
    except ValidationError as exc:
        return _validation_errors(exc, row=row, data=data)


def _no_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON value; write a number or a string")


def _cell_problem(row: int, column: str, value: str) -> RowError | None:
    """A file-level error when a cell is too long or holds a NUL byte, else None.

    PostgreSQL refuses NUL bytes in text and a cell this long is no directory value: both are
    refused for the whole file (422) rather than failing at the database (a 500).
    """
    if len(value) > MAX_CELL_CHARS:
        problem = (
            f"the value has {len(value):,} characters, more than the {MAX_CELL_CHARS:,} allowed;"
            " check the file is the HRIS export"
        )
    elif "\x00" in value:
        problem = "the value holds a NUL byte (\\0); remove it or export the file as UTF-8 text"
    else:
        return None
    return RowError(
        row=row, column=column, message=f"row {row}, column {column}: {problem}", file_level=True
    )


def _refuse_cells(problems: list[RowError]) -> None:
    """Raise :class:`PeopleFileError` listing (at most a screenful of) cell problems."""
    if problems:
        shown = problems[:_MAX_CELL_PROBLEMS]
        if len(problems) > len(shown):
            more = f"{len(problems) - len(shown)} more cells have the same problems"
            shown.append(RowError(row=shown[-1].row, message=more, file_level=True))
        raise PeopleFileError(shown)


def _normalise_header(cell: str) -> str:
    return re.sub(r"[\s-]+", "_", cell.strip().lower())


def _delimiter(text: str) -> str:
    """Comma, unless the header line clearly uses semicolons or tabs (regional Excel exports)."""
    first = text.split("\n", 1)[0]
    if "," not in first:
        if "\t" in first:
            return "\t"
        if ";" in first:
            return ";"
    return ","


def parse_csv(text: str) -> tuple[list[PersonRow], list[RowError]]:
    """Parse a CSV export whose first row is the header.

    Columns are matched case-insensitively (``External ID`` reads as ``external_id``). Roles are
    separated by ``;`` or ``|``. Blank lines are skipped but still counted, so row numbers match
    what a spreadsheet shows.

    Args:
        text: The file's content (a leading byte-order mark is ignored).

    Returns:
        The valid rows and the errors of every other row (plus a file-level error for unknown
        columns, which are ignored).

    Raises:
        PeopleFileError: The file has no header, lacks ``external_id`` or ``name``, or names a
            column twice; nothing can be imported.
    """
    text = text.removeprefix("\ufeff")
    records: Iterator[list[str]] = csv.reader(io.StringIO(text), delimiter=_delimiter(text))
    header_cells = next(records, None)
    if not header_cells or not any(c.strip() for c in header_cells):
        raise PeopleFileError(
            [
                RowError(
                    row=1,
                    message="the file is empty: row 1 must be a header naming the columns, "
                    f"at least {', '.join(REQUIRED_COLUMNS)}",
                    file_level=True,
                )
            ]
        )
    header = [_normalise_header(c) for c in header_cells]
    cell_problems = [
        p
        for i, c in enumerate(header_cells)
        if (p := _cell_problem(1, f"{i + 1} (header)", c)) is not None
    ]
    _refuse_cells(cell_problems)
    allowed = ", ".join(CSV_COLUMNS)
    named = [h for h in header if h]
    duplicates = sorted({h for h in named if named.count(h) > 1})
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    file_errors: list[RowError] = []
    if missing:
        file_errors.append(
            RowError(
                row=1,
                message=f"missing required column(s): {', '.join(missing)}; row 1 must be the "
                f"header. Allowed columns: {allowed}",
                file_level=True,
            )
        )
    if duplicates:
        file_errors.append(
            RowError(
                row=1,
                message=f"column(s) named more than once: {', '.join(duplicates)}; "
                "keep one of each",
                file_level=True,
            )
        )
    if file_errors:
        raise PeopleFileError(file_errors)

    rows: list[PersonRow] = []
    errors: list[RowError] = []
    unknown = [h for h in named if h not in CSV_COLUMNS]
    unnamed_with_data: set[int] = set()
    for row_number, cells in enumerate(records, start=2):
        for index, cell in enumerate(cells):
            name = header[index] if index < len(header) and header[index] else str(index + 1)
            if (problem := _cell_problem(row_number, name, cell)) is not None:
                cell_problems.append(problem)
        if cell_problems or not any(c.strip() for c in cells):
            continue
        extra = [c for c in cells[len(header) :] if c.strip()]
        if extra:
            errors.append(
                RowError(
                    row=row_number,
                    message=f"row has {len(cells)} cells but the header has {len(header)} "
                    "columns; quote values that contain the delimiter",
                )
            )
            continue
        data: dict[str, str] = {}
        for index, column in enumerate(header):
            cell = cells[index] if index < len(cells) else ""
            if not column:
                if cell.strip():
                    unnamed_with_data.add(index + 1)
                continue
            if column in CSV_COLUMNS:
                data[column] = cell
        result = _validate(data, row=row_number)
        if isinstance(result, PersonRow):
            rows.append(result)
        else:
            errors.extend(result)
    _refuse_cells(cell_problems)
    unknown += [f"(column {i} has no header)" for i in sorted(unnamed_with_data)]
    if unknown:
        errors.insert(
            0,
            RowError(
                row=1,
                message=f"unknown column(s) ignored: {', '.join(unknown)}. "
                f"Allowed columns: {allowed}",
                file_level=True,
            ),
        )
    return rows, errors


def parse_json(data: Any) -> tuple[list[PersonRow], list[RowError]]:
    """Parse people from JSON: a list of objects, or ``{"people": [...]}``.

    Keys are the CSV column names (``manager`` may also be spelled ``manager_external_id``);
    ``roles`` may be a list or a ``;``-separated string. Row numbers are the object's index + 1.

    Args:
        data: Already-decoded JSON, or its text/bytes.

    Returns:
        The valid rows and the errors of every other row (plus one file-level error, row 0,
        for unknown keys, which are ignored).

    Raises:
        PeopleFileError: The text is not JSON, or its shape is neither of the above.
    """
    if isinstance(data, bytes | bytearray | str):
        try:
            data = json.loads(data, parse_constant=_no_constant)
        except RecursionError:
            # json.loads gives up at the interpreter's recursion limit (a 500 before).
            raise PeopleFileError(
                [
                    RowError(
                        row=0,
                        message="the JSON nests arrays or objects too deeply; a people file is"
                        " a list of flat objects",
                        file_level=True,
                    )
                ]
            ) from None
        except UnicodeDecodeError:
            raise PeopleFileError(
                [RowError(row=0, message="the file is not UTF-8 text", file_level=True)]
            ) from None
        except ValueError as exc:
            if not isinstance(exc, json.JSONDecodeError):  # NaN, or an absurdly long integer
                raise PeopleFileError(
                    [RowError(row=0, message=f"not valid JSON: {exc}", file_level=True)]
                ) from None
            raise PeopleFileError(
                [
                    RowError(
                        row=0,
                        message=f"not valid JSON: {exc.msg} at line {exc.lineno} column "
                        f"{exc.colno}",
                        file_level=True,
                    )
                ]
            ) from None
    if isinstance(data, dict) and isinstance(data.get("people"), list):
        items: list[Any] = data["people"]
    elif isinstance(data, list):
        items = data
    else:
        raise PeopleFileError(
            [
                RowError(
                    row=0,
                    message='expected a JSON list of people or an object {"people": [...]}',
                    file_level=True,
                )
            ]
        )
    _refuse_cells(
        [
            p
            for n, item in enumerate(items, start=1)
            if isinstance(item, dict)
            for key, value in item.items()
            if isinstance(value, str) and (p := _cell_problem(n, str(key)[:64], value)) is not None
        ]
    )
    rows: list[PersonRow] = []
    errors: list[RowError] = []
    unknown: dict[str, int] = {}
    for row_number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            errors.append(
                RowError(row=row_number, message="expected an object with external_id and name")
            )
            continue
        for key in item:
            if key not in JSON_KEYS:
                unknown.setdefault(str(key), row_number)
        known = {k: v for k, v in item.items() if k in JSON_KEYS}
        result = _validate(known, row=row_number)
        if isinstance(result, PersonRow):
            rows.append(result)
        else:
            errors.extend(result)
    if unknown:
        listed = ", ".join(f"{k} (first in row {n})" for k, n in unknown.items())
        errors.insert(
            0,
            RowError(
                row=0,
                message=f"unknown key(s) ignored: {listed}. Allowed keys: {', '.join(CSV_COLUMNS)}",
                file_level=True,
            ),
        )
    return rows, errors


# ---------------------------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------------------------


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _find_cycles(nodes: Iterable[str], manager_of: Mapping[str, str | None]) -> list[list[str]]:
    """Every cycle of the "is managed by" graph (each node has at most one manager)."""
    done: set[str] = set()
    cycles: list[list[str]] = []
    for start in nodes:
        path: list[str] = []
        on_path: dict[str, int] = {}
        node: str | None = start
        while node is not None and node not in done and node not in on_path:
            on_path[node] = len(path)
            path.append(node)
            node = manager_of.get(node)
        if node is not None and node in on_path:
            cycles.append(path[on_path[node] :])
        done.update(path)
    return cycles


def _describe_cycle(cycle: Sequence[str], start: str) -> str:
    i = cycle.index(start)
    ordered = [*cycle[i:], *cycle[:i], start]
    return "manager cycle: " + " -> ".join(ordered)


def import_people(
    session: Session, rows: Sequence[PersonRow], errors: Sequence[RowError] = ()
) -> ImportReport:
    """Upsert parsed rows by external id; bad rows are reported and skipped, never fatal.

    The caller owns the transaction (this function flushes but does not commit).

    Args:
        session: An open session.
        rows: Valid rows from :func:`parse_csv` or :func:`parse_json`.
        errors: The parser's errors, carried into the report.

    Returns:
        Counts of created, updated, unchanged and rejected rows, and every error by row.
    """
    all_errors = list(errors)
    accepted: dict[str, PersonRow] = {}
    row_of: dict[str, int] = {}
    rejected_ids: dict[str, int] = {}

    def reject(row: PersonRow, *, column: str | None, value: str | None, message: str) -> None:
        all_errors.append(
            RowError(row=row.row, column=column, value=_show(column, value), message=message)
        )
        accepted.pop(row.external_id, None)
        rejected_ids[row.external_id] = row.row

    for index, person_row in enumerate(rows):
        if person_row.row == 0:
            person_row = person_row.model_copy(update={"row": index + 1})
        first = row_of.get(person_row.external_id)
        if first is not None:
            all_errors.append(
                RowError(
                    row=person_row.row,
                    column="external_id",
                    value=person_row.external_id,
                    message=f"duplicate external_id {person_row.external_id!r}: row {first} "
                    "already has it; this row was skipped",
                )
            )
            continue
        row_of[person_row.external_id] = person_row.row
        accepted[person_row.external_id] = person_row

    _check_user_names(session, accepted, reject)

    # The directory as it is: ids and manager links only (cheap even for large orgs).
    id_of: dict[str, int] = {}
    external_of: dict[int, str] = {}
    db_links: list[tuple[str, int | None]] = []
    for pid, ext, manager_id in session.execute(
        select(Person.id, Person.external_id, Person.manager_id)
    ):
        id_of[ext] = pid
        external_of[pid] = ext
        db_links.append((ext, manager_id))
    db_manager: dict[str, str | None] = {
        ext: external_of.get(mid) if mid is not None else None for ext, mid in db_links
    }

    def sets_manager(row: PersonRow) -> bool:
        return _MANAGER_FIELD in row.model_fields_set

    # Unknown managers and cycles feed each other (a rejected new person is unknown to their
    # reports; an unknown manager breaks no cycle), so repeat until nothing more is rejected.
    changed = True
    while changed:
        changed = False
        for person_row in list(accepted.values()):
            manager = person_row.manager_external_id
            if not sets_manager(person_row) or manager is None:
                continue
            if manager in accepted or manager in id_of:
                continue
            if manager in rejected_ids:
                message = (
                    f"manager {manager!r} is in row {rejected_ids[manager]}, which was rejected; "
                    "fix that row and import again"
                )
            else:
                message = (
                    f"unknown manager {manager!r}: no row in this file and nobody in the "
                    "directory has that external_id"
                )
            reject(person_row, column="manager", value=manager, message=message)
            changed = True

        manager_of = dict(db_manager)
        for ext, person_row in accepted.items():
            if sets_manager(person_row):
                manager_of[ext] = person_row.manager_external_id
            else:
                manager_of.setdefault(ext, None)
        for cycle in _find_cycles([*accepted, *db_manager], manager_of):
            in_file = [ext for ext in cycle if ext in accepted]
            for ext in in_file:
                person_row = accepted[ext]
                reject(
                    person_row,
                    column="manager",
                    value=manager_of[ext],
                    message=_describe_cycle(cycle, ext)
                    + "; nobody may manage themself, even indirectly",
                )
            changed = changed or bool(in_file)

    report = ImportReport()
    existing: dict[str, Person] = {}
    ids = [ext for ext in accepted if ext in id_of]
    for chunk in _chunks(ids, _IN_CHUNK):
        for found in session.scalars(select(Person).where(Person.external_id.in_(chunk))):
            existing[found.external_id] = found

    written: list[Person] = []
    links: list[tuple[Person, str | None]] = []
    for ext, person_row in accepted.items():
        values = {f: getattr(person_row, f) for f in _SCALAR_FIELDS}
        values["employment_status"] = person_row.employment_status.value
        current = existing.get(ext)
        if current is None:
            person = Person(external_id=ext, user_name=person_row.user_name, **values)
            session.add(person)
            report.created += 1
        else:
            person = current
            dirty = False
            for field in _SCALAR_FIELDS:
                if field in person_row.model_fields_set and getattr(person, field) != values[field]:
                    setattr(person, field, values[field])
                    dirty = True
            if sets_manager(person_row) and db_manager.get(ext) != person_row.manager_external_id:
                dirty = True
            if "user_name" in person_row.model_fields_set and person.user_name != (
                person_row.user_name
            ):
                # Drives no obligation (no change record), but the person did change.
                person.user_name = person_row.user_name
                dirty = True
            if dirty:
                report.updated += 1
            else:
                report.unchanged += 1
        written.append(person)
        if sets_manager(person_row):
            links.append((person, person_row.manager_external_id))
    session.flush()

    # New people have ids only now; link managers in a second pass so order in the file is free.
    id_of.update({person.external_id: person.id for person in written})
    for person, manager in links:
        manager_id = id_of[manager] if manager is not None else None
        if person.manager_id != manager_id:
            person.manager_id = manager_id
    session.flush()

    report.errors = sorted(all_errors, key=lambda e: (e.row, e.column or ""))
    report.rejected = len({e.row for e in all_errors if not e.file_level})
    return report


class _Reject(Protocol):
    def __call__(
        self, row: PersonRow, *, column: str | None, value: str | None, message: str
    ) -> None: ...


def _check_user_names(session: Session, accepted: dict[str, PersonRow], reject: _Reject) -> None:
    """Refuse rows whose ``user_name`` someone else would have too, ignoring case.

    Compared with everyone's userName after the import (a stored one, else the external id,
    as SCIM shows it), so the file may swap two people's userNames. A later row taking the
    one an earlier row sets is refused, as is one taking a userName somebody in the directory
    keeps. Neither the userName nor who holds it goes in the message.
    """
    rows = dict(accepted)  # ``reject`` takes refused rows out of ``accepted``
    setting = [ext for ext, row in rows.items() if "user_name" in row.model_fields_set]
    if not setting:
        return
    order = {ext: i for i, ext in enumerate(rows)}
    stored: dict[str, str] = {
        ext: user_name or ext
        for ext, user_name in session.execute(select(Person.external_id, Person.user_name))
    }
    refused: set[str] = set()
    while True:
        final = dict(stored)
        for ext in setting:
            if ext not in refused:
                final[ext] = rows[ext].user_name or ext

        def claims(ext: str) -> bool:
            return ext in rows and "user_name" in rows[ext].model_fields_set and ext not in refused

        holders: dict[str, list[str]] = {}
        for ext, name in final.items():
            holders.setdefault(name.lower(), []).append(ext)
        newly: list[str] = []
        for ext in setting:
            if ext in refused:
                continue
            others = [o for o in holders[final[ext].lower()] if o != ext]
            # People who keep theirs win, then the first row of the file to claim it.
            earlier = [o for o in others if not claims(o) or order[o] < order[ext]]
            if not earlier:
                continue
            row = rows[ext]
            where = (
                f"row {rows[earlier[0]].row} of this file sets it"
                if claims(earlier[0])
                else "someone in the directory has it"
            )
            reject(
                row,
                column="user_name",
                value=row.user_name,
                message=f"user_name is taken: {where}; a userName is unique, ignoring case",
            )
            newly.append(ext)
        if not newly:
            return
        refused.update(newly)


def reports_of(session: Session, person_id: int) -> dict[int, int]:
    """Everyone who reports to ``person_id``, directly or not: person id → depth (1: direct).

    The one walk down the management chain: row-level scoping (``api.deps``) and the team
    dashboards both use it. Stops at people already seen, so a cycle cannot loop.
    """
    depth_of: dict[int, int] = {}
    seen = {person_id}
    frontier = {person_id}
    depth = 0
    while frontier:
        depth += 1
        reports = set(session.scalars(select(Person.id).where(Person.manager_id.in_(frontier))))
        frontier = reports - seen
        seen |= frontier
        for report in frontier:
            depth_of[report] = depth
    return depth_of
