"""Rules packs through the API (hr_admin): validate, preview, deploy, list versions, show one.

A pack travels as its files: ``{"files": {"pack.yaml": "...", "status.yaml": "..."}}`` — the
same files HR keeps in git, so a CI job can post a branch's pack for validation and preview.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import SessionDep, SettingsDep, TemporalDep, require_roles
from domain.roles import Role
from rules.loader import PackInvalid
from rules.model import Pack
from services import rules as service
from services.rules import Issue, Preview, ValidationReport
from store.db import committed
from store.packs import Migration
from store.tokens import Principal

router = APIRouter(prefix="/rules", tags=["rules"])

HrAdmin = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN))]

#: 422 by number: Starlette renamed its constant (UNPROCESSABLE_ENTITY -> _CONTENT).
UNPROCESSABLE = 422


class PackUpload(BaseModel):
    """A pack's files: relative path → text."""

    model_config = ConfigDict(extra="forbid")

    files: dict[str, str] = Field(description="e.g. {'pack.yaml': '...', 'status.yaml': '...'}")


class DeployRequest(PackUpload):
    """A pack to deploy, with why and how running workflows take it up."""

    message: str = Field(min_length=1, max_length=2000)
    migration: Migration = Migration.GRANDFATHER


def _load(upload: PackUpload) -> Pack:
    try:
        return service.pack_from_upload(files=upload.files)
    except service.EmptyPack as error:
        raise HTTPException(UNPROCESSABLE, detail=str(error)) from None
    except service.PackTooLarge as error:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail=str(error)) from None


def _invalid(invalid: PackInvalid) -> ValidationReport:
    return ValidationReport(
        valid=False,
        issues=[
            Issue(file=i.file, line=i.line, column=i.column, message=i.message)
            for i in invalid.issues
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
    return service.validate(session=session, pack=pack)


@router.post("/preview", response_model=Preview)
def preview_pack(upload: PackUpload, session: SessionDep, principal: HrAdmin) -> Preview:
    """Whose status and which remaining stages would change if this pack were deployed."""
    try:
        pack = _load(upload)
    except PackInvalid as invalid:
        raise HTTPException(UNPROCESSABLE, detail=_invalid(invalid).model_dump()) from None
    return service.preview(session=session, pack=pack)


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

    def _checked() -> Pack:
        try:
            pack = _load(body)
        except PackInvalid as invalid:
            raise HTTPException(UNPROCESSABLE, detail=_invalid(invalid).model_dump()) from None
        blockers = service.deploy_blockers(pack=pack, people=service.directory(session=session))
        if blockers:
            raise HTTPException(
                UNPROCESSABLE,
                detail={"valid": False, "refused": blockers},
            )
        return pack

    # Loading, linting and storing a pack are blocking: worker threads, each part committed
    # before Temporal is awaited.
    pack = await committed(session, _checked)
    client = await temporal() if body.migration is not Migration.GRANDFATHER else None
    audiences = await committed(
        session, lambda: service.audience_changes(session=session, pack=pack)
    )

    def _deploy() -> dict[str, Any]:
        version = service.deploy(
            session=session,
            pack=pack,
            author=principal.actor,
            message=body.message,
            migration=body.migration,
            actor_role=principal.role.value,
        )
        return service.describe(version)

    result = await committed(session, _deploy)
    if client is not None:
        result["rollout_workflow_id"] = await service.start_rollout(
            client=client,
            task_queue=settings.temporal_task_queue,
            pack_hash=pack.content_hash,
            mode=body.migration.value,
            deployed_by=principal.actor,
        )
    if audiences and settings.directory_automation:
        # Who owes what changed: assign and close per the same rules as a directory change.
        result["audience_changed"] = audiences
        try:
            reconciler = client or await temporal()
            result["directory_reconcile_workflow_id"] = await service.start_directory_reconcile(
                client=reconciler,
                task_queue=settings.temporal_task_queue,
                pack_hash=pack.content_hash,
                deployed_by=principal.actor,
            )
        except HTTPException as error:
            result["directory_reconcile_note"] = (
                f"{error.detail}; the nightly reconciliation assigns and closes per this pack"
            )
    return result


@router.get("/versions")
def list_versions(session: SessionDep, principal: HrAdmin) -> list[dict[str, Any]]:
    """Every deployed version, newest first."""
    return service.list_versions(session=session)


@router.get("/active")
def show_active(session: SessionDep, principal: HrAdmin) -> dict[str, Any]:
    """The active version (404 when no pack was deployed: the built-in rules apply)."""
    version = service.active(session=session)
    if version is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail="no rules pack deployed; the built-in ladder and status rules apply",
        )
    return version


@router.get("/versions/{content_hash}")
def show_version(content_hash: str, session: SessionDep, principal: HrAdmin) -> dict[str, Any]:
    """One version with its files (a unique hash prefix of 8+ characters works)."""
    version = service.show_version(session=session, content_hash=content_hash)
    if version is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no version {content_hash!r}")
    return version
