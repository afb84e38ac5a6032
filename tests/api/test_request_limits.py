"""Odd numbers, cells and file names are a 4xx naming what is wrong, never a 500 (issue 13 item 3).

Each case is the exploit itself: before these limits every one answered 500 (an integer the
driver cannot bind, a CSV cell over the ``csv`` module's field limit, a NUL byte PostgreSQL
refuses, a pack file named ``.`` written over the temporary directory), or leaked the server's
temporary directory in an error.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from domain.roles import Role
from duly.settings import Settings
from store.db import Database
from tests.conftest import bearer

TOO_FAR = "9223372036854775808"  # 2**63: overflows a 64-bit integer
LIST_ROUTES = [
    "/people",
    "/audit",
    "/notifications",
    "/obligations",
    "/assignments",
    "/certifications",
]


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    app = create_app(Settings(env="test"), database=db)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def hr(db: Database) -> dict[str, str]:
    return bearer(db, Role.HR_ADMIN)


@pytest.mark.parametrize("route", LIST_ROUTES)
def test_an_offset_beyond_64_bits_is_422_naming_it(
    client: TestClient, hr: dict[str, str], route: str
) -> None:
    response = client.get(route, params={"offset": TOO_FAR}, headers=hr)
    assert response.status_code == 422, response.text
    assert "offset" in response.text
    assert client.get(route, params={"offset": "0"}, headers=hr).status_code == 200


def _import_csv(client: TestClient, hr: dict[str, str], body: str) -> dict[str, object]:
    response = client.post(
        "/people/import", content=body.encode(), headers={**hr, "content-type": "text/csv"}
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    return {"detail": detail}


def test_a_csv_cell_over_131072_characters_is_422_naming_row_and_column(
    client: TestClient, hr: dict[str, str]
) -> None:
    body = "external_id,name,department\np-1,Ann,Ward\np-2,Bob," + "x" * 131_073 + "\n"
    detail = _import_csv(client, hr, body)["detail"]
    assert "row 3" in str(detail) and "department" in str(detail), detail
    assert "131,072" in str(detail)


def test_a_nul_byte_in_a_csv_name_is_422_naming_row_and_column(
    client: TestClient, hr: dict[str, str]
) -> None:
    detail = _import_csv(client, hr, "external_id,name\np-1,Ann\np-2,B\x00b\n")["detail"]
    assert "row 3" in str(detail) and "name" in str(detail), detail
    assert "NUL" in str(detail)


def test_a_nul_byte_in_a_json_name_is_422_naming_row_and_key(
    client: TestClient, hr: dict[str, str]
) -> None:
    body = json.dumps([{"external_id": "p-1", "name": "B\x00b"}])
    response = client.post(
        "/people/import", content=body, headers={**hr, "content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "row 1" in detail and "name" in detail and "NUL" in detail, detail


@pytest.mark.parametrize("name", [".", "templates/."])
def test_a_pack_file_named_dot_is_422(client: TestClient, hr: dict[str, str], name: str) -> None:
    for route in ("/rules/validate", "/rules/preview"):
        response = client.post(route, json={"files": {name: "x: 1\n"}}, headers=hr)
        assert response.status_code in (200, 422), response.text
        assert "file names are plain names" in response.text
        if route == "/rules/preview":
            assert response.status_code == 422


def test_pack_errors_never_name_the_servers_temporary_directory(
    client: TestClient, hr: dict[str, str]
) -> None:
    temp = tempfile.gettempdir()
    for files in ({"README.md": "hello"}, {"templates/a/b.j2": "{{ x }}"}):
        for route in ("/rules/validate", "/rules/preview"):
            response = client.post(route, json={"files": files}, headers=hr)
            assert response.status_code in (200, 422), response.text
            assert temp not in response.text and "duly-pack-" not in response.text, response.text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[" * 5000 + "]" * 5000, "too deeply"),
        ('[{"external_id": "p-1", "name": "Ann", "department": NaN}]', "NaN"),
    ],
)
def test_a_people_json_nested_past_the_stack_or_holding_nan_is_422(
    client: TestClient, hr: dict[str, str], body: str, expected: str
) -> None:
    response = client.post(
        "/people/import", content=body, headers={**hr, "content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert expected in response.json()["detail"]
