"""People directory: import and read."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import PurePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import (
    ClockDep,
    CurrentPrincipal,
    SessionDep,
    SettingsDep,
    TemporalDep,
    ensure_visible,
    require_roles,
    visible_person_ids,
)
from api.pagination import Offset, PeopleLimit
from api.schemas import ObligationRead
from domain.roles import Role
from services import directory, obligations, people
from services.errors import NotFound
from store.db import read_only
from store.models import Person
from store.people import (
    CSV_COLUMNS,
    REQUIRED_COLUMNS,
    ImportReport,
    PeopleFileError,
    PersonRow,
    RowError,
    parse_csv,
    parse_json,
)
from store.tokens import Principal

log = logging.getLogger(__name__)

router = APIRouter(prefix="/people", tags=["people"])

#: Refuse bodies above this size (a 100,000-person CSV is ~15 MB).
MAX_IMPORT_BYTES = 50 * 1024 * 1024

_CSV_TYPES = frozenset({"text/csv", "application/csv", "application/vnd.ms-excel"})
_JSON_TYPES = frozenset({"application/json"})

#: The JSON import shape for the OpenAPI document (validation itself is :class:`PersonRow`).
_JSON_PERSON: dict[str, Any] = {
    "type": "object",
    "required": list(REQUIRED_COLUMNS),
    "properties": {
        **{column: {"type": "string"} for column in CSV_COLUMNS},
        "roles": {
            "oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}],
            "description": "A list, or one string separated by ';' or '|'.",
        },
        "manager": {"type": "string", "description": "The manager's external_id."},
    },
}

ImporterDep = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN, Role.INTEGRATION))]


class PersonRead(BaseModel):
    """A person as the directory holds them; ``manager`` is the manager's external id."""

    external_id: str
    name: str
    email: str | None
    phone: str | None
    slack_user_id: str | None
    roles: list[str]
    department: str | None
    location: str | None
    time_zone: str
    employer: str | None
    manager: str | None
    employment_status: str
    user_name: str | None = Field(
        default=None,
        description="The SCIM userName (unique, ignoring case); null when none is stored"
        " (SCIM then shows the external id).",
    )

    @classmethod
    def of(cls, person: Person) -> PersonRead:
        """Build from the model (the manager relationship is joined-loaded)."""
        return cls(
            external_id=person.external_id,
            name=person.name,
            email=person.email,
            phone=person.phone,
            slack_user_id=person.slack_user_id,
            roles=list(person.roles or []),
            department=person.department,
            location=person.location,
            time_zone=person.time_zone,
            employer=person.employer,
            manager=person.manager.external_id if person.manager else None,
            employment_status=person.employment_status,
            user_name=person.user_name,
        )


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _unusable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=message)


def _decode_csv(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _unusable(
            f"the CSV is not UTF-8 (byte {exc.start} is invalid); export it as "
            "'CSV UTF-8' and upload again"
        ) from None


def _parse(kind: str, body: bytes) -> tuple[list[PersonRow], list[RowError]]:
    """Parse a body as ``csv`` or ``json``; 422 when the file as a whole is unusable."""
    if len(body) > MAX_IMPORT_BYTES:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"the file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB; "
            "split it and import the parts",
        )
    try:
        if kind == "csv":
            return parse_csv(_decode_csv(body))
        return parse_json(body)
    except PeopleFileError as exc:
        raise _unusable(str(exc)) from None


async def _read_upload(request: Request) -> tuple[str, bytes]:
    """The (kind, content) of a multipart upload's ``file`` field."""
    form = await request.form(max_files=1, max_fields=10)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise _unusable("multipart upload needs a `file` field holding the CSV or JSON file")
    try:
        content = await upload.read()
    finally:
        await upload.close()
    suffix = PurePath(upload.filename or "").suffix.lower()
    media = _media_type(upload.content_type)
    if suffix == ".csv" or media in _CSV_TYPES:
        return "csv", content
    if suffix == ".json" or media in _JSON_TYPES:
        return "json", content
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        detail=f"cannot tell whether {upload.filename or 'the upload'!r} is CSV or JSON: "
        "name it .csv or .json (or send Content-Type text/csv or application/json)",
    )


@router.post(
    "/import",
    response_model=ImportReport,
    summary="Upsert people from a CSV or JSON file",
    responses={
        413: {"description": "The file is too large."},
        415: {"description": "Neither CSV nor JSON."},
        422: {"description": "The file cannot be imported at all; `detail` says what to fix."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"type": "array", "items": _JSON_PERSON},
                            {
                                "type": "object",
                                "properties": {"people": {"type": "array", "items": _JSON_PERSON}},
                                "required": ["people"],
                            },
                        ]
                    }
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
        }
    },
)
async def import_directory(
    request: Request,
    session: SessionDep,
    principal: ImporterDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    clock: ClockDep,
    dry_run: Annotated[
        bool,
        Query(
            description="Save nothing: answer what each changed person would be assigned and"
            " which of their obligations would close (`dry_run` in the report)."
        ),
    ] = False,
) -> ImportReport:
    """Upsert people by external id from a CSV (header row first) or JSON body, or an upload.

    Answers 200 with the report even when some rows are rejected: each error names the row
    (CSV: header is row 1), the column and what to fix; every other row is written. Email and
    phone values never appear in errors. People whose ``time_zone`` changed get their open
    obligations re-planned (``replanned``): the reminders not sent yet move to 09:00 in the
    new zone. Every changed person starts a ``DirectoryChangeWorkflow`` (``automated``):
    joiners are assigned what their pack says, movers' and leavers' obligations follow.
    """
    media = _media_type(request.headers.get("content-type"))
    if media == "multipart/form-data":
        kind, body = await _read_upload(request)
    elif media in _CSV_TYPES or media == "text/plain":
        kind, body = "csv", await request.body()
    elif media in _JSON_TYPES or media.endswith("+json"):
        kind, body = "json", await request.body()
    else:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"unsupported Content-Type {media or '(none)'!r}: send text/csv, "
            "application/json, or multipart/form-data with a `file` field",
        )
    if dry_run:
        today = (await clock()).date()
        return await run_in_threadpool(_preview, session, kind, body, today)
    outcome = await run_in_threadpool(_import, session, principal, kind, body)
    return await people.after_import(
        session,
        temporal=temporal,
        outcome=outcome,
        task_queue=settings.temporal_task_queue,
        automation=settings.directory_automation,
    )


def _import(
    session: Session, principal: Principal, kind: str, body: bytes
) -> directory.ImportOutcome:
    rows, errors = _parse(kind, body)
    return people.import_directory(
        session, rows=rows, errors=errors, kind=kind, principal=principal
    )


def _preview(session: Session, kind: str, body: bytes, today: date) -> ImportReport:
    rows, errors = _parse(kind, body)
    return people.preview_import(session, rows=rows, errors=errors, today=today)


@router.get("", response_model=list[PersonRead], summary="List the people you may see")
def list_people(
    session: SessionDep,
    principal: CurrentPrincipal,
    department: Annotated[str | None, Query(max_length=100)] = None,
    role: Annotated[str | None, Query(max_length=64, description="e.g. nurse")] = None,
    manager: Annotated[
        str | None, Query(max_length=64, description="Direct reports of this external id.")
    ] = None,
    limit: PeopleLimit = 1000,
    offset: Offset = 0,
) -> list[PersonRead]:
    """People ordered by external id: learners see themselves, managers their whole chain."""
    found = people.list_people(
        session,
        scope=visible_person_ids(session, principal),
        department=department,
        role=role,
        manager=manager,
        limit=limit,
        offset=offset,
    )
    return [PersonRead.of(p) for p in found]


@router.get(
    "/{external_id}",
    response_model=PersonRead,
    summary="One person",
    responses={404: {"description": "Unknown, or not visible to you."}},
)
def get_person(external_id: str, session: SessionDep, principal: CurrentPrincipal) -> PersonRead:
    """One person by external id (404 when unknown or outside your scope)."""
    person = people.person(session, external_id=external_id)
    ensure_visible(session, principal, person.id)
    return PersonRead.of(person)


class Preferences(BaseModel):
    """How a person wants to be reached."""

    model_config = ConfigDict(extra="forbid")

    channels: list[Literal["email", "sms", "slack", "in_app"]] | None = Field(
        default=None, description="Allowed channels; null means all."
    )
    sms_opt_out: bool = False
    quiet_start: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    quiet_end: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")

    @model_validator(mode="after")
    def _both_ends(self) -> Preferences:
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValueError("set both quiet_start and quiet_end (HH:MM, local time), or neither")
        return self


def _own_or_hr(session: Session, principal: Principal, external_id: str) -> Person:
    person = people.person(session, external_id=external_id)
    ensure_visible(session, principal, person.id)
    people.own_or_hr(principal, person)
    return person


@router.get("/{external_id}/preferences", response_model=Preferences)
def get_preferences(
    external_id: str, session: SessionDep, principal: CurrentPrincipal
) -> Preferences:
    """A person's notification preferences (defaults when never set)."""
    person = _own_or_hr(session, principal, external_id)
    row = people.preferences(session, person=person)
    if row is None:
        return Preferences()
    return Preferences(
        channels=row.channels,
        sms_opt_out=row.sms_opt_out,
        quiet_start=row.quiet_start,
        quiet_end=row.quiet_end,
    )


@router.put("/{external_id}/preferences", response_model=Preferences)
def put_preferences(
    external_id: str, body: Preferences, session: SessionDep, principal: CurrentPrincipal
) -> Preferences:
    """Replace a person's notification preferences (the person themself or hr_admin)."""
    person = _own_or_hr(session, principal, external_id)
    people.set_preferences(
        session,
        person=person,
        principal=principal,
        channels=list(body.channels) if body.channels is not None else None,
        sms_opt_out=body.sms_opt_out,
        quiet_start=body.quiet_start,
        quiet_end=body.quiet_end,
    )
    return body


def _person_obligations(
    session: Session, principal: Principal, external_id: str
) -> list[ObligationRead]:
    # One SELECT answers both "who is it" and "what are their rows"; the visibility check then
    # needs no query for HR and auditors (a manager's reporting chain is still read).
    found = obligations.person_rows(session, external_id=external_id)
    if found is None:
        raise NotFound()
    person_id, rows = found
    ensure_visible(session, principal, person_id)
    return [ObligationRead.model_validate(row) for row in rows]


@router.get("/{external_id}/obligations", response_model=list[ObligationRead])
async def person_obligations(
    external_id: str, session: SessionDep, principal: CurrentPrincipal
) -> list[ObligationRead]:
    """One person's obligations from the read model (404 when outside your scope)."""
    # One worker-thread trip, reads only (a hot route: a ``def`` handler costs two threadpool
    # hops, a transaction a BEGIN and a COMMIT round trip).
    return await read_only(session, lambda: _person_obligations(session, principal, external_id))
