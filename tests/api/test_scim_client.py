"""A SCIM client nobody here wrote (python-scim's scim2-client) drives Duly's SCIM endpoints.

scim2-client builds the requests and validates every response against RFC 7643/7644 models
(scim2-models); it runs over the FastAPI TestClient through a three-method engine below.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from scim2_client import SCIMClient
from scim2_client.client import BaseSyncSCIMClient
from scim2_models import (
    EnterpriseUser,
    Error,
    ListResponse,
    PatchOp,
    PatchOperation,
    SearchRequest,
    ServiceProviderConfig,
    User,
)
from sqlalchemy import select

from api.app import create_app
from domain.roles import Role
from duly.settings import Settings
from store.db import Database
from store.models import Person
from tests.conftest import bearer

BASE = "http://testserver/scim/v2"


class TestClientSCIM(BaseSyncSCIMClient):
    """scim2-client over Starlette's TestClient (an httpx client bound to the ASGI app)."""

    __test__ = False

    def __init__(self, client: TestClient, headers: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.headers = headers

    def _parse_json(self, response: Any) -> Any:
        return response.json()

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        target = url if url.startswith("http") else BASE + url
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.request(method, target, headers=headers, **kwargs)


@pytest.fixture
def scim(sqlite_db: Database) -> Iterator[SCIMClient]:
    app = create_app(Settings(env="test"), database=sqlite_db)
    with TestClient(app) as test_client:
        client = TestClientSCIM(test_client, bearer(sqlite_db, Role.INTEGRATION))
        client.discover()
        yield client


def status_of(db: Database, external_id: str) -> str:
    with db.session() as session:
        status = session.scalar(
            select(Person.employment_status).where(Person.external_id == external_id)
        )
    assert status is not None
    return status


def test_discovery_describes_users_with_the_enterprise_extension(scim: SCIMClient) -> None:
    user_model = scim.get_resource_model("User")
    assert user_model is not None
    config = scim.query(ServiceProviderConfig)
    assert isinstance(config, ServiceProviderConfig)
    assert config.patch is not None and config.patch.supported is True
    assert config.filter is not None and config.filter.supported is True


def test_create_query_replace_patch_delete(scim: SCIMClient, sqlite_db: Database) -> None:
    user_model: Any = scim.get_resource_model("User")
    boss = scim.create(
        user_model.model_validate(
            {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "boss-1",
                "name": {"givenName": "Bea", "familyName": "Boss"},
            }
        )
    )
    assert boss.id == "boss-1"
    created = scim.create(
        user_model.model_validate(
            {
                "schemas": [
                    "urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                ],
                "userName": "emp-1",
                "name": {"givenName": "Ann", "familyName": "Lee"},
                "emails": [{"value": "ann@example.org", "type": "work", "primary": True}],
                "title": "nurse",
                "timezone": "America/New_York",
                "active": True,
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                    "department": "Nursing",
                    "manager": {"value": "boss-1"},
                },
            }
        )
    )
    assert created.id == "emp-1"
    assert created.meta is not None and created.meta.version is not None

    found = scim.query(user_model, query_parameters=SearchRequest(filter='userName eq "emp-1"'))
    assert isinstance(found, ListResponse)
    assert found.total_results == 1
    assert [r.user_name for r in found.resources or []] == ["emp-1"]
    none = scim.query(user_model, query_parameters=SearchRequest(filter='userName eq "nobody"'))
    assert isinstance(none, ListResponse) and none.total_results == 0

    replacement = created.model_copy(deep=True)
    replacement.title = "charge nurse"
    replaced = scim.replace(replacement)
    assert replaced.title == "charge_nurse"

    patch = PatchOp[user_model](  # type: ignore[valid-type]
        operations=[PatchOperation(op="replace", path="active", value=False)]
    )
    patched = scim.modify(user_model, "emp-1", patch)
    assert patched is None or patched.active is False
    assert status_of(sqlite_db, "emp-1") == "terminated"

    scim.delete(user_model, "boss-1")
    assert status_of(sqlite_db, "boss-1") == "terminated"

    refused = scim.query(
        user_model,
        query_parameters=SearchRequest(filter='userName gt "a"'),
        raise_scim_errors=False,
    )
    assert isinstance(refused, Error)
    assert refused.scim_type == "invalidFilter"


def test_users_validate_as_rfc_users(scim: SCIMClient) -> None:
    """Independent of discovery: the static RFC models read what Duly returns."""
    created = scim.create(
        User[EnterpriseUser](user_name="emp-2", name={"formatted": "Cy Young"}),  # type: ignore[arg-type]
        check_response_payload=False,
    )
    assert isinstance(created, dict)
    # The static RFC model knows no Duly extension (the discovered one does): drop it.
    duly = "urn:duly:params:scim:schemas:extension:duly:2.0:User"
    assert created.pop(duly)["employmentStatus"] == "active"
    created["schemas"].remove(duly)
    user = User[EnterpriseUser].model_validate(created)
    assert user.user_name == "emp-2"
    assert user[EnterpriseUser].employee_number == "emp-2"
