"""SCIM 2.0 provisioning (RFC 7643/7644): Okta, Entra ID and OneLogin create and retire people.

Base URL ``/scim/v2``. Every request needs a bearer token of an integration (scope ``scim``)
or of hr_admin; every answer, errors included, is ``application/scim+json`` and errors follow
SCIM's error schema. Writes go through :mod:`services.directory`, the same service the CSV/JSON
import uses. ``async`` handlers (they read the body, and re-plan through Temporal) do all their
database work in a worker thread (the writes commit there, before the re-plan awaits Temporal),
so the event loop never blocks on the database.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from api import scim
from api.deps import SessionDep, TemporalDep, require_roles
from api.errors import allowed_methods
from domain.contracts.directory import DirectoryChange
from domain.roles import Role
from services import directory
from store.models import Person
from store.tokens import Principal

PREFIX = "/scim/v2"
router = APIRouter(prefix=PREFIX, tags=["scim"])

ScimPrincipal = Annotated[Principal, Depends(require_roles(Role.HR_ADMIN, Role.INTEGRATION))]

#: The largest SCIM request body read, in bytes (a user is a few kilobytes).
MAX_BODY = 256 * 1024
_SOURCE = "scim"
T = TypeVar("T")


class ScimResponse(JSONResponse):
    """JSON with SCIM's media type."""

    media_type = scim.SCIM_MEDIA_TYPE


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def _user(person: Person, request: Request, code: int = 200) -> ScimResponse:
    resource = scim.user_resource(person, _base(request))
    headers = {"ETag": resource["meta"]["version"]}
    if code == status.HTTP_201_CREATED:
        headers["Location"] = resource["meta"]["location"]
    return ScimResponse(resource, status_code=code, headers=headers)


async def _json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise scim.ScimError(413, f"the request body is larger than {MAX_BODY // 1024} KiB")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise scim.ScimError(400, "the body is not valid JSON", "invalidSyntax") from None
    if not isinstance(data, dict):
        raise scim.ScimError(400, "the body must be a JSON object", "invalidSyntax")
    return data


def _directory_error(error: directory.DirectoryError) -> scim.ScimError:
    if isinstance(error, directory.PersonNotFound):
        return scim.ScimError(404, str(error))
    if isinstance(error, directory.PersonExists):
        return scim.ScimError(409, str(error), "uniqueness")
    return scim.invalid_value(str(error))


def _call(function: Callable[[], T]) -> T:
    try:
        return function()
    except directory.DirectoryError as error:
        raise _directory_error(error) from None


def _check_match(request: Request, person: Person) -> None:
    """412 when ``If-Match`` names another version than the current one."""
    wanted = request.headers.get("if-match")
    if wanted is None or wanted.strip() == "*":
        return
    current = scim.user_resource(person, _base(request))["meta"]["version"]
    if current not in {tag.strip() for tag in wanted.split(",")}:
        raise scim.ScimError(
            412, "the user changed since you read it (If-Match); read it again and retry"
        )


async def _after(
    request: Request,
    session: Session,
    temporal: TemporalDep,
    changes: list[DirectoryChange] | DirectoryChange | None,
) -> None:
    """After the write committed: re-plan people who moved zone, start the change workflows.

    When Temporal is unreachable both are left to the nightly sweep and reconciliation (the
    directory write itself stands).
    """
    if changes is None:
        return
    listed = [changes] if isinstance(changes, DirectoryChange) else changes
    moved = [c.person_id for c in listed if "time_zone" in c.changed]
    if moved:
        await directory.replan_moved(session, temporal=temporal, actor="scim", person_ids=moved)
    settings = request.app.state.settings
    await directory.automate(
        listed,
        temporal=temporal,
        task_queue=settings.temporal_task_queue,
        enabled=settings.directory_automation,
    )


# ---------------------------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------------------------


@router.post("/Users", status_code=201, summary="Create a user (a joiner)")
async def create_user(
    request: Request, session: SessionDep, principal: ScimPrincipal, temporal: TemporalDep
) -> Response:
    """Create a person from a SCIM User (201 with ``Location`` and ``ETag``)."""
    resource = await _json(request)
    fields = scim.user_fields(resource)

    def create() -> tuple[Response, DirectoryChange | None]:
        person, change = _call(
            lambda: directory.create_person(
                session, fields=fields, principal=principal, source=_SOURCE
            )
        )
        return _user(person, request, status.HTTP_201_CREATED), change

    answer, change = await run_in_threadpool(create)
    await _after(request, session, temporal, change)
    return answer


@router.get("/Users", summary="List or filter users")
def list_users(
    request: Request,
    session: SessionDep,
    principal: ScimPrincipal,
    filter: Annotated[str | None, Query(max_length=scim.MAX_FILTER)] = None,
    start_index: Annotated[int | None, Query(alias="startIndex", ge=-(2**31), lt=2**31)] = None,
    count: Annotated[int | None, Query(ge=-(2**31), lt=2**31)] = None,
) -> Response:
    """Users ordered by userName; ``filter``, 1-based ``startIndex`` and ``count`` (max 200)."""
    where = scim.parse_user_filter(filter) if filter else None
    offset, limit = scim.paging(start_index, count)
    total, people = directory.list_people(session, where=where, offset=offset, limit=limit)
    base = _base(request)
    resources = [scim.user_resource(person, base) for person in people]
    return ScimResponse(scim.list_response(resources, total, offset + 1))


@router.get("/Users/{user_id}", summary="One user")
def get_user(
    user_id: str, request: Request, session: SessionDep, principal: ScimPrincipal
) -> Response:
    """A user by id (their userName)."""
    person = _call(lambda: directory.get_person(session, external_id=user_id))
    return _user(person, request)


@router.put("/Users/{user_id}", summary="Replace a user")
async def replace_user(
    user_id: str,
    request: Request,
    session: SessionDep,
    principal: ScimPrincipal,
    temporal: TemporalDep,
) -> Response:
    """Replace a user's attributes; omitted core attributes are cleared.

    Duly-only attributes (the Duly extension: Slack id, employment status ``leave``) are kept
    when the request does not carry the extension, so an identity provider that does not know
    them does not erase what the HR import set.
    """
    resource = await _json(request)
    keep = () if any(k.lower() == scim.DULY.lower() for k in resource) else ("slack_user_id",)

    def replace() -> tuple[Response, DirectoryChange | None]:
        current = _call(lambda: directory.get_person(session, external_id=user_id))
        _check_match(request, current)
        fields = scim.user_fields(resource, current=current)
        _check_key(fields, user_id)
        person, change = _call(
            lambda: directory.replace_person(
                session,
                external_id=user_id,
                fields=fields,
                principal=principal,
                source=_SOURCE,
                keep=keep,
            )
        )
        return _user(person, request), change

    answer, change = await run_in_threadpool(replace)
    await _after(request, session, temporal, change)
    return answer


def _check_key(fields: dict[str, Any], user_id: str) -> None:
    if fields["external_id"] != user_id:
        raise scim.ScimError(
            400,
            f"userName cannot change (it is Duly's key for this person, {user_id!r}); "
            "create a new user instead",
            "mutability",
        )
    fields.pop("external_id")


@router.patch("/Users/{user_id}", summary="Modify a user (add, replace, remove)")
async def patch_user(
    user_id: str,
    request: Request,
    session: SessionDep,
    principal: ScimPrincipal,
    temporal: TemporalDep,
) -> Response:
    """Apply PatchOp operations; ``active: false`` marks the person as left."""
    body = await _json(request)

    def patch() -> tuple[Response, DirectoryChange | None]:
        current = _call(lambda: directory.get_person(session, external_id=user_id))
        _check_match(request, current)
        resource = scim.apply_patch(scim.user_resource(current, _base(request)), body)
        fields = scim.user_fields(resource, current=current)
        _check_key(fields, user_id)
        person, change = _call(
            lambda: directory.replace_person(
                session, external_id=user_id, fields=fields, principal=principal, source=_SOURCE
            )
        )
        return _user(person, request), change

    answer, change = await run_in_threadpool(patch)
    await _after(request, session, temporal, change)
    return answer


@router.delete("/Users/{user_id}", status_code=204, summary="Deactivate a user")
async def delete_user(
    user_id: str,
    request: Request,
    session: SessionDep,
    principal: ScimPrincipal,
    temporal: TemporalDep,
) -> Response:
    """Mark the person as left (``active: false``); nothing is deleted, history stays.

    The leaver's change workflow closes their open obligations and revokes their tokens.
    """

    def deactivate() -> DirectoryChange | None:
        current = _call(lambda: directory.get_person(session, external_id=user_id))
        _check_match(request, current)
        _, change = _call(
            lambda: directory.deactivate_person(
                session, external_id=user_id, principal=principal, source=_SOURCE
            )
        )
        return change

    change = await run_in_threadpool(deactivate)
    await _after(request, session, temporal, change)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---------------------------------------------------------------------------------------------
# Groups: departments
# ---------------------------------------------------------------------------------------------


def _group(
    session: Session, request: Request, department: str, code: int = 200, *, known: bool = True
) -> ScimResponse:
    members = directory.department_members(session, name=department)
    if known and not members:
        raise scim.ScimError(404, f"nobody is in the department {department[:100]!r}")
    resource = scim.group_resource(department, members, _base(request))
    headers = {"ETag": resource["meta"]["version"]}
    if code == status.HTTP_201_CREATED:
        headers["Location"] = resource["meta"]["location"]
    return ScimResponse(resource, status_code=code, headers=headers)


def _set_members(
    session: Session,
    principal: Principal,
    *,
    name: str | None,
    members: list[str],
    previous: str | None,
) -> list[DirectoryChange]:
    return _call(
        lambda: directory.set_department_members(
            session,
            name=name,
            members=members,
            previous=previous,
            principal=principal,
            source=_SOURCE,
        )
    )


@router.post("/Groups", status_code=201, summary="Create a group (a department)")
async def create_group(
    request: Request, session: SessionDep, principal: ScimPrincipal, temporal: TemporalDep
) -> Response:
    """Put the members in the department ``displayName`` (409 when it has people already).

    A department exists while someone is in it: a group created without members is answered
    201 but is not listed until it has some.
    """
    name, members = scim.group_fields(await _json(request))

    def create() -> tuple[Response, list[DirectoryChange]]:
        if directory.department_members(session, name=name):
            raise scim.ScimError(
                409, f"the department {name[:100]!r} exists; patch its members", "uniqueness"
            )
        changes = _set_members(session, principal, name=name, members=members, previous=None)
        return _group(session, request, name, status.HTTP_201_CREATED, known=False), changes

    answer, changes = await run_in_threadpool(create)
    await _after(request, session, temporal, changes)
    return answer


@router.get("/Groups", summary="List or filter groups (departments)")
def list_groups(
    request: Request,
    session: SessionDep,
    principal: ScimPrincipal,
    filter: Annotated[str | None, Query(max_length=scim.MAX_FILTER)] = None,
    start_index: Annotated[int | None, Query(alias="startIndex", ge=-(2**31), lt=2**31)] = None,
    count: Annotated[int | None, Query(ge=-(2**31), lt=2**31)] = None,
) -> Response:
    """Departments ordered by name; ``filter`` on displayName, 1-based paging (max 200)."""
    where = scim.parse_group_filter(filter) if filter else None
    offset, limit = scim.paging(start_index, count)
    names = [n for n, _ in directory.departments(session) if where is None or scim.holds(where, n)]
    base = _base(request)
    page = [
        scim.group_resource(name, directory.department_members(session, name=name), base)
        for name in names[offset : offset + limit]
    ]
    return ScimResponse(scim.list_response(page, len(names), offset + 1))


@router.get("/Groups/{group_id}", summary="One group")
def get_group(
    group_id: str, request: Request, session: SessionDep, principal: ScimPrincipal
) -> Response:
    """A department and its members."""
    return _group(session, request, scim.department_of(group_id))


def _replace_group(
    request: Request,
    session: Session,
    principal: Principal,
    department: str,
    resource: dict[str, Any],
) -> tuple[Response, list[DirectoryChange]]:
    """Set the group's name and members (blocking: run it in a worker thread)."""
    name, members = scim.group_fields(resource)
    changes = _set_members(session, principal, name=name, members=members, previous=department)
    return _group(session, request, name, known=False), changes


def _check_group_match(request: Request, session: Session, department: str) -> dict[str, Any]:
    members = directory.department_members(session, name=department)
    if not members:
        raise scim.ScimError(404, f"nobody is in the department {department[:100]!r}")
    resource = scim.group_resource(department, members, _base(request))
    wanted = request.headers.get("if-match")
    if (
        wanted is not None
        and wanted.strip() != "*"
        and resource["meta"]["version"] not in {tag.strip() for tag in wanted.split(",")}
    ):
        raise scim.ScimError(412, "the group changed since you read it (If-Match)")
    return resource


@router.put("/Groups/{group_id}", summary="Replace a group's name and members")
async def replace_group(
    group_id: str,
    request: Request,
    session: SessionDep,
    principal: ScimPrincipal,
    temporal: TemporalDep,
) -> Response:
    """Members not listed leave the department; a new displayName renames it for everyone."""
    return await _rewrite_group(
        group_id, request, session, principal, temporal, lambda _current, body: body
    )


@router.patch("/Groups/{group_id}", summary="Add or remove members, rename")
async def patch_group(
    group_id: str,
    request: Request,
    session: SessionDep,
    principal: ScimPrincipal,
    temporal: TemporalDep,
) -> Response:
    """PatchOp on ``members`` (add, remove by value or filter, replace) and ``displayName``."""
    return await _rewrite_group(group_id, request, session, principal, temporal, scim.apply_patch)


async def _rewrite_group(
    group_id: str,
    request: Request,
    session: Session,
    principal: Principal,
    temporal: TemporalDep,
    edit: Callable[[dict[str, Any], Any], dict[str, Any]],
) -> Response:
    """Check If-Match, turn (current group, request body) into the new group with ``edit``, save.

    PUT and PATCH differ only in ``edit``: PUT takes the body as the group, PATCH applies it.
    """
    department = scim.department_of(group_id)
    body = await _json(request)

    def rewrite() -> tuple[Response, list[DirectoryChange]]:
        current = _check_group_match(request, session, department)
        return _replace_group(request, session, principal, department, edit(current, body))

    answer, changes = await run_in_threadpool(rewrite)
    await _after(request, session, temporal, changes)
    return answer


@router.delete("/Groups/{group_id}", status_code=204, summary="Empty a group")
async def delete_group(
    group_id: str,
    request: Request,
    session: SessionDep,
    principal: ScimPrincipal,
    temporal: TemporalDep,
) -> Response:
    """Clear the department of everyone in it (the people stay)."""
    department = scim.department_of(group_id)

    def empty() -> list[DirectoryChange]:
        _check_group_match(request, session, department)
        return _set_members(session, principal, name=None, members=[], previous=department)

    changes = await run_in_threadpool(empty)
    await _after(request, session, temporal, changes)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---------------------------------------------------------------------------------------------
# Discovery (RFC 7644 §4)
# ---------------------------------------------------------------------------------------------


@router.get("/ServiceProviderConfig", summary="What this SCIM server supports")
def service_provider_config(request: Request, principal: ScimPrincipal) -> Response:
    """The service provider configuration."""
    return ScimResponse(scim.service_provider_config(_base(request)))


@router.get("/ResourceTypes", summary="The resource types")
def resource_types(request: Request, principal: ScimPrincipal) -> Response:
    """User (with the enterprise and Duly extensions)."""
    types = scim.resource_types(_base(request))
    return ScimResponse(scim.list_response(types, len(types), 1))


@router.get("/ResourceTypes/{name}", summary="One resource type")
def resource_type(name: str, request: Request, principal: ScimPrincipal) -> Response:
    """One resource type by name."""
    for item in scim.resource_types(_base(request)):
        if item["id"] == name:
            return ScimResponse(item)
    raise scim.ScimError(404, f"no resource type {name[:64]!r}")


@router.get("/Schemas", summary="The schemas")
def schemas(request: Request, principal: ScimPrincipal) -> Response:
    """The User, enterprise and Duly extension schemas."""
    items = scim.schemas(_base(request))
    return ScimResponse(scim.list_response(items, len(items), 1))


@router.get("/Schemas/{urn}", summary="One schema")
def schema(urn: str, request: Request, principal: ScimPrincipal) -> Response:
    """One schema by URN."""
    for item in scim.schemas(_base(request)):
        if item["id"] == urn:
            return ScimResponse(item)
    raise scim.ScimError(404, f"no schema {urn[:200]!r}")


# ---------------------------------------------------------------------------------------------
# Errors in SCIM's schema
# ---------------------------------------------------------------------------------------------


def _in_scim(request: Request) -> bool:
    return request.url.path.startswith(PREFIX + "/") or request.url.path == PREFIX


def _error_response(error: scim.ScimError, headers: dict[str, str] | None = None) -> Response:
    return ScimResponse(error.body(), status_code=error.status, headers=headers)


def install(app: FastAPI) -> None:
    """Answer errors under ``/scim/v2`` in SCIM's error schema.

    Call after the app's other handlers are installed: errors elsewhere still go to them.
    """
    from fastapi.exception_handlers import (
        http_exception_handler,
        request_validation_exception_handler,
    )

    http_before = app.exception_handlers.get(HTTPException, http_exception_handler)
    validation_before = app.exception_handlers.get(
        RequestValidationError, request_validation_exception_handler
    )

    async def delegate(handler: Any, request: Request, error: Exception) -> Response:
        answer = handler(request, error)
        return await answer if inspect.isawaitable(answer) else answer  # type: ignore[no-any-return]

    async def on_scim(_request: Request, error: Exception) -> Response:
        assert isinstance(error, scim.ScimError)
        return _error_response(error)

    async def on_http(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if not _in_scim(request):
            return await delegate(http_before, request, error)
        detail = error.detail if isinstance(error.detail, str) else json.dumps(error.detail)
        headers = dict(error.headers or {})
        if error.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path))
        return _error_response(scim.ScimError(error.status_code, detail), headers=headers)

    async def on_validation(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        if not _in_scim(request):
            return await delegate(validation_before, request, error)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in error.errors()
        )
        return _error_response(scim.invalid_value(problems))

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return document(generate())

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented extension point
    app.add_exception_handler(scim.ScimError, on_scim)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)


#: SCIM's error resource (RFC 7644 §3.12).
ERROR_SCHEMA: dict[str, Any] = {
    "title": "ScimError",
    "type": "object",
    "required": ["schemas", "status"],
    "properties": {
        "schemas": {"type": "array", "items": {"type": "string"}},
        "status": {"type": "string", "description": "The HTTP status, as a string"},
        "scimType": {"type": "string"},
        "detail": {"type": "string"},
    },
}
#: Answered by the request-limits middleware before routing, in the API's own shape.
_MIDDLEWARE_STATUSES = frozenset({"413", "429"})


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Document ``/scim/v2`` operations as SCIM: ``application/scim+json`` bodies and errors.

    Idempotent (the app's description is built once and cached, then handed out again).
    """
    schema.setdefault("components", {}).setdefault("schemas", {})["ScimError"] = ERROR_SCHEMA
    resource = {"schema": {"type": "object"}}
    error = {"schema": {"$ref": "#/components/schemas/ScimError"}}
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith(PREFIX + "/"):
            continue
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if method in {"post", "put", "patch"}:
                operation["requestBody"] = {
                    "required": True,
                    "content": {scim.SCIM_MEDIA_TYPE: resource, "application/json": resource},
                }
            responses: dict[str, Any] = operation["responses"]
            if method in {"put", "patch", "delete"}:
                responses.setdefault("412", {"description": "If-Match names an older version"})
            for code, answer in responses.items():
                if code.startswith("2"):
                    if "content" in answer:
                        answer["content"] = {scim.SCIM_MEDIA_TYPE: resource}
                    continue
                content = {scim.SCIM_MEDIA_TYPE: error}
                if code in _MIDDLEWARE_STATUSES:
                    content.update(answer.get("content", {}))
                answer["content"] = content
    return schema
