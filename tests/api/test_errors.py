"""One error shape, documented on every operation; ``Allow`` names the methods a path takes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import exc as sa_exc

from api.app import create_app
from domain.roles import Role
from duly.settings import Settings
from store.db import Database
from tests.conftest import bearer


@pytest.fixture
def app(sqlite_db: Database) -> FastAPI:
    return create_app(Settings(env="test", temporal_address="127.0.0.1:1"), database=sqlite_db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        # POST-only actions behind a catch-all GET of ids with slashes: not "GET".
        ("/assignments/assignment/p-1020/hipaa/1/complete", "POST"),
        ("/assignments/assignment/p-1020/hipaa/1/acknowledge", "POST"),
        ("/certifications/certification/p-1020/bls/renew", "POST"),
        ("/certifications/certification/p-1020/bls/ce-credits", "POST"),
        ("/rules/validate", "POST"),
        # Two routes on one path: both methods.
        ("/people/p-1020/preferences", "GET, PUT"),
        ("/ack/v1.1.sig", "GET, POST"),
        ("/assignments/assignment/p-1020/hipaa/1", "GET"),
    ],
)
def test_options_and_405_name_every_method_of_the_path(
    client: TestClient, path: str, allow: str
) -> None:
    response = client.options(path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json() == {"detail": "Method Not Allowed"}


def test_an_action_path_never_reaches_the_catch_all_get(
    client: TestClient, sqlite_db: Database
) -> None:
    response = client.get(
        "/assignments/assignment/p-1020/hipaa/1/complete", headers=bearer(sqlite_db, Role.HR_ADMIN)
    )
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    # An id itself still reads (404 here: nobody holds it).
    still = client.get(
        "/assignments/assignment/p-1020/hipaa/1", headers=bearer(sqlite_db, Role.HR_ADMIN)
    )
    assert still.status_code == 404


#: Answers that are reports rather than errors, documented with their own models: readiness
#: names what is down; xAPI and completions answer per statement (some may have been stored).
OWN_MODELS = {
    ("GET", "/readyz", "503"),
    ("POST", "/xapi/statements", "409"),
    ("POST", "/xapi/statements", "422"),
    ("POST", "/completions", "409"),
}


def test_every_operation_documents_every_error_with_the_one_shape(app: FastAPI) -> None:
    schema = app.openapi()
    error = {"$ref": "#/components/schemas/Error"}
    assert "Error" in schema["components"]["schemas"]
    missing = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for code in ("400", "401", "403", "404", "409", "413", "422", "429", "500", "503"):
                documented = operation["responses"].get(code)
                if (method.upper(), path, code) in OWN_MODELS:
                    assert documented is not None
                elif path.startswith("/scim/v2/"):
                    # SCIM answers RFC 7644's error resource (tests/api/test_scim.py).
                    assert documented["content"]["application/scim+json"] == {
                        "schema": {"$ref": "#/components/schemas/ScimError"}
                    }, (method, path, code)
                elif documented is None or documented["content"]["application/json"] != {
                    "schema": error
                }:
                    missing.append(f"{method.upper()} {path} {code}")
    assert not missing, missing
    # The rules endpoints answer 422 with a report object: the documented shape admits it.
    for path in ("/rules/validate", "/rules/preview", "/rules/deploy", "/certifications"):
        [operation] = (
            schema["paths"][path].values()
            if path != "/certifications"
            else [schema["paths"][path]["post"]]
        )
        content = operation["responses"]["422"]["content"]["application/json"]
        assert content["schema"] == error, path
    assert app.openapi() is schema  # documented once, then cached


def test_an_unexpected_error_is_json_without_internals(
    app: FastAPI, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    @app.get("/boom")  # type: ignore[untyped-decorator]
    def boom() -> None:
        raise RuntimeError("/tmp/duly-secret-dir/pack.yaml exploded")

    response = client.get("/boom")
    assert response.status_code == 500
    detail = response.json()["detail"]
    assert detail.startswith("internal error (ref ") and "/tmp" not in detail
    assert "RuntimeError" in caplog.text


class _Driver(Exception):
    """Stands in for a DBAPI exception (the driver's own classes need a live connection)."""


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (sa_exc.OperationalError("SELECT 1", {}, _Driver("connection refused")), 503),
        (sa_exc.InterfaceError("SELECT 1", {}, _Driver("connection already closed")), 503),
        (
            sa_exc.DBAPIError(
                "SELECT 1", {}, _Driver("server closed the connection"), connection_invalidated=True
            ),
            503,
        ),
        (sa_exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached"), 503),
        # Not an outage: the request's own fault or a bug stays a 500 (never a retry loop).
        (sa_exc.IntegrityError("INSERT", {}, _Driver("duplicate key")), 500),
        (sa_exc.ProgrammingError("SELECT", {}, _Driver("no such column")), 500),
    ],
)
def test_a_database_outage_answers_503_with_retry_after(
    app: FastAPI, client: TestClient, error: Exception, expected: int
) -> None:
    @app.get("/db")  # type: ignore[untyped-decorator]
    def db() -> None:
        raise error

    response = client.get("/db")
    assert response.status_code == expected
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    if expected == 503:
        assert int(response.headers["Retry-After"]) > 0
        assert "database" in detail and "try again" in detail
        assert "connection refused" not in detail  # the driver's message stays in the log
    else:
        assert "Retry-After" not in response.headers
        assert detail.startswith("internal error (ref ")
