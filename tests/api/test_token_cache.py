"""The API's cache of verified tokens (``DULY_TOKEN_CACHE_SECONDS``, api/token_cache.py).

A revocation or termination made elsewhere takes effect once the verification is TTL old; one
made through the process at once; a token's own expiry and a rejection are never cached.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select, update

from api.app import create_app
from api.token_cache import MAX_ENTRIES, TokenCache
from domain.roles import Role
from duly.demo import load_demo_people
from duly.settings import Settings
from store.db import Database
from store.models import ApiToken
from store.tokens import Principal, create_token
from tests.conftest import bearer

#: The instant the fake wall clock starts at (tests never depend on the real date).
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clocks:
    """The cache's two clocks, moved by hand."""

    def __init__(self) -> None:
        self.monotonic = 500.0
        self.wall = T0

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.wall += timedelta(seconds=seconds)


@pytest.fixture
def org(sqlite_db: Database) -> Database:
    with sqlite_db.session() as session:
        assert load_demo_people(session).errors == []
    return sqlite_db


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def client(org: Database, clocks: Clocks) -> Iterator[TestClient]:
    settings = Settings(env="test", temporal_address="127.0.0.1:1", token_cache_seconds=5)
    app = create_app(settings, database=org)
    app.state.token_cache = TokenCache(
        settings.token_cache_seconds,
        monotonic=lambda: clocks.monotonic,
        wall_clock=lambda: clocks.wall,
    )
    with TestClient(app) as test_client:
        yield test_client


def token_lookups(db: Database) -> list[str]:
    """Statements reading ``api_tokens``, as they run (listener on the engine)."""
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM api_tokens" in statement:
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", listen)
    return seen


def revoke_elsewhere(db: Database) -> None:
    """What `duly tokens revoke` in another process does: a database write only."""
    with db.session() as session:
        session.execute(update(ApiToken).values(revoked_at=T0))


def test_a_token_revoked_elsewhere_stops_working_within_the_ttl(
    client: TestClient, org: Database, clocks: Clocks
) -> None:
    hr = bearer(org, Role.HR_ADMIN)
    lookups = token_lookups(org)
    assert client.get("/obligations", headers=hr).status_code == 200
    assert client.get("/obligations", headers=hr).status_code == 200
    assert len(lookups) == 1, "the second request within the TTL asks the database again"
    revoke_elsewhere(org)
    clocks.advance(4.9)
    assert client.get("/obligations", headers=hr).status_code == 200  # the documented window
    clocks.advance(0.1)
    refused = client.get("/obligations", headers=hr)
    assert refused.status_code == 401, refused.text
    assert refused.json()["detail"] == "unknown or revoked token"
    # A rejection is not cached: every later request asks again (and is refused).
    assert client.get("/obligations", headers=hr).status_code == 401
    assert len(lookups) == 3


def test_a_token_revoked_through_this_process_stops_at_once(
    client: TestClient, org: Database
) -> None:
    hr = bearer(org, Role.HR_ADMIN)
    with org.session() as session:
        victim = create_token(session, role=Role.LEARNER, person_external_id="p-1020")
        victim_id = session.scalar(select(ApiToken.id).order_by(ApiToken.id.desc()))
    learner = {"Authorization": f"Bearer {victim}"}
    assert client.get("/obligations", headers=learner).status_code == 200  # now cached
    assert client.delete(f"/tokens/{victim_id}", headers=hr).status_code == 200
    assert client.get("/obligations", headers=learner).status_code == 401
    # The revoker's own verification is still cached and still good.
    assert client.get("/obligations", headers=hr).status_code == 200


def test_a_cached_token_is_not_trusted_past_its_own_expiry(
    client: TestClient, org: Database, clocks: Clocks
) -> None:
    with org.session() as session:
        token = create_token(
            session, role=Role.HR_ADMIN, lifetime=timedelta(hours=1), now=datetime.now(UTC)
        )
        expires_at = session.scalar(select(ApiToken.expires_at).order_by(ApiToken.id.desc()))
    assert expires_at is not None
    headers = {"Authorization": f"Bearer {token}"}
    lookups = token_lookups(org)
    assert client.get("/obligations", headers=headers).status_code == 200
    clocks.wall = expires_at - timedelta(microseconds=1)
    assert client.get("/obligations", headers=headers).status_code == 200
    assert len(lookups) == 1  # answered by the cache
    # The cache's wall clock reaches the token's expiry inside the 5 s TTL of its entry: the
    # cache no longer answers, the database decides (here, on the real clock, still valid).
    clocks.wall = expires_at
    assert client.get("/obligations", headers=headers).status_code == 200
    assert len(lookups) == 2
    cache: TokenCache = client.app.state.token_cache  # type: ignore[attr-defined]
    cache.put("h", Principal(1, Role.HR_ADMIN, None, None, None), expires_at)
    assert cache.get("h") is None


def test_ttl_zero_asks_the_database_at_every_request(org: Database) -> None:
    settings = Settings(env="test", temporal_address="127.0.0.1:1", token_cache_seconds=0)
    hr = bearer(org, Role.HR_ADMIN)
    lookups = token_lookups(org)
    with TestClient(create_app(settings, database=org)) as client:
        for _ in range(3):
            assert client.get("/obligations", headers=hr).status_code == 200
        assert len(lookups) == 3
        revoke_elsewhere(org)
        assert client.get("/obligations", headers=hr).status_code == 401


def test_the_setting_reaches_the_app(monkeypatch: pytest.MonkeyPatch, org: Database) -> None:
    monkeypatch.setenv("DULY_TOKEN_CACHE_SECONDS", "2.5")
    app = create_app(Settings(env="test", temporal_address="127.0.0.1:1"), database=org)
    assert app.state.token_cache.ttl == 2.5
    assert Settings.model_fields["token_cache_seconds"].default == 5.0


def test_the_cache_is_bounded() -> None:
    cache = TokenCache(60, monotonic=lambda: 0.0, wall_clock=lambda: T0)
    principal = Principal(
        token_id=1, role=Role.HR_ADMIN, person_id=None, person_external_id=None, label=None
    )
    for i in range(MAX_ENTRIES + 1):
        cache.put(f"hash-{i}", principal, None)
    assert cache.get(f"hash-{MAX_ENTRIES}") == principal
    assert cache.get("hash-0") is None
    assert len(cache._entries) <= MAX_ENTRIES
