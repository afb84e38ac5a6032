"""Rules packs through the API (hr_admin): validate, preview, deploy, list versions, show one.

A pack travels as its files: ``{"files": {"pack.yaml": "...", "status.yaml": "..."}}`` — the
same files HR keeps in git, so a CI job can post a branch's pack for validation and preview.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import SessionDep, SettingsDep, TemporalDep, require_roles
from duly.domain import Role
from rules.lint import Level, lint
from rules.loader import PackInvalid
from rules.model import Pack
from rules.service import Preview, deploy_blockers, preview, run_tests, start_rollout
from store.models import Person
from store.packs import (
    Migration,
    active_version,
    deploy,
    describe,
    find_version,
    pack_from_files,
    versions,
)
from store.tokens import Principal

router = APIRouter(prefix="/rules", tags=["rules"])

HrAdmin = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN))]

MAX_FILES = 200
#: 422 by number: Starlette renamed its constant (UNPROCESSABLE_ENTITY -> _CONTENT).
UNPROCESSABLE = 422
MAX_TOTAL_CHARS = 5_000_000


class PackUpload(BaseModel):
    """A pack's files: relative path → text."""

    model_config = ConfigDict(extra="forbid")

    files: dict[str, str] = Field(description="e.g. {'pack.yaml': '...', 'status.yaml': '...'}")


class DeployRequest(PackUpload):
    """A pack to deploy, with why and how running workflows take it up."""

    message: str = Field(min_length=1, max_length=2000)
    migration: Migration = Migration.GRANDFATHER


class Issue(BaseModel):
    """One problem at a file position."""

    file: str
    line: int
    column: int
    message: str


class ValidationReport(BaseModel):
    """What validation, lint and the pack's tests found."""

    valid: bool
    content_hash: str | None = None
    name: str | None = None
    issues: list[Issue] = []
    lint: list[dict[str, Any]] = []
    tests: list[dict[str, Any]] = []


def _load(upload: PackUpload) -> Pack:
    if not upload.files:
        raise HTTPException(UNPROCESSABLE, detail="no files in the pack")
    if (
        len(upload.files) > MAX_FILES
        or sum(len(t) for t in upload.files.values()) > MAX_TOTAL_CHARS
    ):
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            detail=f"a pack may have at most {MAX_FILES} files and {MAX_TOTAL_CHARS:,} characters",
        )
    return pack_from_files(upload.files)


def _invalid(invalid: PackInvalid) -> ValidationReport:
    return ValidationReport(
        valid=False,
        issues=[
            Issue(file=i.file, line=i.line, column=i.column, message=i.message)
            for i in invalid.issues
        ],
    )


def _report(session: Any, pack: Pack) -> ValidationReport:
    from sqlalchemy import select

    people = list(session.scalars(select(Person)))
    findings = lint(pack, people)
    cases = run_tests(pack)
    return ValidationReport(
        valid=not any(f.level is Level.ERROR for f in findings) and all(c.passed for c in cases),
        content_hash=pack.content_hash,
        name=pack.info.name,
        lint=[
            {
                "level": f.level.value,
                "code": f.code,
                "message": f.message,
                "file": f.file,
                "line": f.line,
            }
            for f in findings
        ],
        tests=[
            {
                "name": c.name,
                "passed": c.passed,
                "expected": {"status": c.expected_status, "rule": c.expected_rule},
                "got": {"status": c.got_status, "rule": c.got_rule},
                "diff": c.diff(),
            }
            for c in cases
        ],
    )


@router.post("/validate", response_model=ValidationReport)
def validate_pack(upload: PackUpload, session: SessionDep, principal: HrAdmin) -> ValidationReport:
    """Validate, lint (against the current directory) and run the pack's tests.

    Always 200: ``valid`` says whether the pack could be deployed; ``issues`` lists syntax and
    type problems with file:line:column, ``lint`` and ``tests`` the rest.
    """
    try:
        pack = _load(upload)
    except PackInvalid as invalid:
        return _invalid(invalid)
    return _report(session, pack)


@router.post("/preview", response_model=Preview)
def preview_pack(upload: PackUpload, session: SessionDep, principal: HrAdmin) -> Preview:
    """Whose status and which remaining stages would change if this pack were deployed."""
    try:
        pack = _load(upload)
    except PackInvalid as invalid:
        raise HTTPException(UNPROCESSABLE, detail=_invalid(invalid).model_dump()) from None
    return preview(session, pack)


@router.post("/deploy", status_code=status.HTTP_201_CREATED)
async def deploy_pack(
    body: DeployRequest,
    session: SessionDep,
    principal: HrAdmin,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Deploy a pack and roll it out per ``migration``.

    Refused (422) when the pack is invalid, has lint errors or failing tests; otherwise stored
    with its content hash, author and message, and made active (201).
    """
    try:
        pack = _load(body)
    except PackInvalid as invalid:
        raise HTTPException(UNPROCESSABLE, detail=_invalid(invalid).model_dump()) from None
    from sqlalchemy import select

    blockers = deploy_blockers(pack, list(session.scalars(select(Person))))
    if blockers:
        raise HTTPException(
            UNPROCESSABLE,
            detail={"valid": False, "refused": blockers},
        )
    client = await temporal() if body.migration is not Migration.GRANDFATHER else None
    version = deploy(
        session,
        pack,
        author=principal.actor,
        message=body.message,
        migration=body.migration,
        actor_role=principal.role.value,
    )
    result = describe(version)
    session.commit()
    if client is not None:
        result["rollout_workflow_id"] = await start_rollout(
            client,
            settings.temporal_task_queue,
            pack.content_hash,
            body.migration.value,
            principal.actor,
        )
    return result


@router.get("/versions")
def list_versions(session: SessionDep, principal: HrAdmin) -> list[dict[str, Any]]:
    """Every deployed version, newest first."""
    return [describe(v) for v in versions(session)]


@router.get("/active")
def show_active(session: SessionDep, principal: HrAdmin) -> dict[str, Any]:
    """The active version (404 when no pack was deployed: the built-in rules apply)."""
    version = active_version(session)
    if version is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail="no rules pack deployed; the built-in ladder and status rules apply",
        )
    return describe(version)


@router.get("/versions/{content_hash}")
def show_version(content_hash: str, session: SessionDep, principal: HrAdmin) -> dict[str, Any]:
    """One version with its files (a unique hash prefix of 8+ characters works)."""
    version = find_version(session, content_hash)
    if version is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no version {content_hash!r}")
    return {**describe(version), "content": version.content["files"]}
