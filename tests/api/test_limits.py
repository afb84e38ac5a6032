"""Request limits (issue 13 item 3): body caps before auth, per-token and per-IP rate limits.

Each exploit test sends what an attacker would and fails on the code before :mod:`api.limits`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

import duly.cli
from api.app import create_app
from duly.settings import Settings
from store.db import Database
from tests.conftest import IN_CI, bearer

REDIS_URL = "redis://127.0.0.1:6379/15"


def make_app(db: Database, **settings: Any) -> Any:
    config = Settings(env="test", temporal_address="127.0.0.1:1", **settings)
    return create_app(config, database=db)


@pytest.fixture
def sqlite(sqlite_db: Database) -> Database:
    return sqlite_db


class CountingStream:
    """A chunked request body (no Content-Length) that records how much was pulled from it."""

    def __init__(self, chunks: int, size: int = 64 * 1024) -> None:
        self.chunks, self.size, self.sent = chunks, size, 0

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.chunks):
            self.sent += self.size
            yield b"x" * self.size


async def post_streamed(app: Any, path: str, stream: CountingStream) -> int:
    """POST ``stream`` straight over ASGI, pulled chunk by chunk as a server would; the status.

    (The test client reads a body whole before sending it, which would hide how much the
    server pulled.)
    """
    chunks = iter(stream)
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"testserver")],
        "client": ("192.0.2.1", 1234),
        "server": ("testserver", 80),
        "state": {},
    }
    await app(scope, receive, send)
    return statuses[0]


# --- body caps ---------------------------------------------------------------------------------


def test_a_large_body_without_a_token_is_413_before_it_is_read(sqlite: Database) -> None:
    # The exploit: a big POST to /rules/validate without a token used to be read whole and
    # parsed, then answered 401. Declared length: refused from the headers alone.
    with TestClient(make_app(sqlite, max_body_bytes=64 * 1024)) as client:
        declared = client.post(
            "/rules/validate",
            content=b"{" + b" " * (200 * 1024) + b"}",
            headers={"content-type": "application/json"},
        )
        small = client.post("/rules/validate", json={"files": {}})

    assert declared.status_code == 413, declared.text
    assert "larger than 65,536 bytes" in declared.json()["detail"]
    assert small.status_code == 401  # under the cap, auth decides as before


@pytest.mark.asyncio
async def test_a_streamed_body_is_refused_once_it_passes_the_cap(sqlite: Database) -> None:
    # Chunked, so there is no Content-Length to trust: 64 MiB offered, refused after the cap.
    stream = CountingStream(chunks=1024)
    status = await post_streamed(make_app(sqlite), "/rules/validate", stream)
    assert status == 413
    # The server stopped pulling just past 1 MiB instead of reading 64 MiB then answering 401.
    assert stream.sent <= 1024 * 1024 + stream.size, stream.sent


def test_the_default_cap_is_one_mebibyte_and_the_import_has_its_own(sqlite: Database) -> None:
    hr = bearer(sqlite, "hr_admin")
    body = b"external_id,name,email\n" + b"p-1,Ann,a@x.example\n" * (1024 * 1024 // 20)
    assert len(body) > 1024 * 1024
    with TestClient(make_app(sqlite, max_import_bytes=4 * 1024 * 1024)) as client:
        rules = client.post("/rules/validate", content=body, headers=hr)
        imported = client.post(
            "/people/import", content=body, headers={**hr, "content-type": "text/csv"}
        )
        too_big = client.post(
            "/people/import",
            content=b"x" * (5 * 1024 * 1024),
            headers={**hr, "content-type": "text/csv"},
        )
    assert rules.status_code == 413
    assert imported.status_code == 200, imported.text[:300]
    assert too_big.status_code == 413
    assert "DULY_MAX_IMPORT_BYTES" in too_big.json()["detail"]


# --- per-token rate limit ----------------------------------------------------------------------


def test_a_token_over_its_rate_limit_gets_429_with_retry_after(sqlite: Database) -> None:
    hr, other = bearer(sqlite, "hr_admin"), bearer(sqlite, "hr_admin")
    with TestClient(make_app(sqlite, rate_limit_per_token="5/minute;100/hour")) as client:
        answers = [client.get("/people", headers=hr).status_code for _ in range(5)]
        limited = client.get("/people", headers=hr)
        unaffected = client.get("/people", headers=other)
        health = [client.get("/healthz").status_code for _ in range(10)]

    assert answers == [200] * 5
    assert limited.status_code == 429, limited.text
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "5 per minute" in limited.json()["detail"]
    assert unaffected.status_code == 200  # per token, not global
    assert health == [200] * 10  # probes are never counted


def test_the_default_is_100_a_minute_per_token(sqlite: Database) -> None:
    hr = bearer(sqlite, "hr_admin")
    with TestClient(make_app(sqlite)) as client:
        answers = [client.get("/people?limit=1", headers=hr).status_code for _ in range(101)]
    assert answers[:100] == [200] * 100
    assert answers[100] == 429


def test_invalid_tokens_and_anonymous_callers_are_limited_per_ip(sqlite: Database) -> None:
    with TestClient(make_app(sqlite, rate_limit_anonymous="3/minute")) as client:
        anonymous = [client.get("/people").status_code for _ in range(4)]
    assert anonymous == [401, 401, 401, 429]


def test_api_processes_share_the_limit_through_redis(sqlite: Database) -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        message = f"no Redis at {REDIS_URL} ({type(exc).__name__})"
        if IN_CI:  # the machine CI runs on has Redis: the shared limit must be tested there
            pytest.fail(message + "; CI must run the Redis test", pytrace=False)
        pytest.skip(message)
    hr = bearer(sqlite, "hr_admin")  # a fresh random token: keys never collide across runs
    shared = {"rate_limit_per_token": "4/minute", "rate_limit_storage": REDIS_URL}
    with (
        TestClient(make_app(sqlite, **shared)) as first,
        TestClient(make_app(sqlite, **shared)) as second,
    ):
        answers = [
            (first if i % 2 else second).get("/people", headers=hr).status_code for i in range(4)
        ]
        fifth = first.get("/people", headers=hr)
        sixth = second.get("/people", headers=hr)
    assert answers == [200] * 4
    assert fifth.status_code == 429 and sixth.status_code == 429
    # Only a digest of the token is stored, never the token itself.
    token = hr["Authorization"].split()[1]
    keys = redis.Redis.from_url(REDIS_URL).keys("duly*")
    assert keys and not any(token.encode() in key for key in keys)


def test_an_unreachable_rate_limit_storage_serves_and_warns(
    sqlite: Database, caplog: pytest.LogCaptureFixture
) -> None:
    hr = bearer(sqlite, "hr_admin")
    app = make_app(sqlite, rate_limit_storage="redis://127.0.0.1:1/0")
    with TestClient(app) as client:
        answers = [client.get("/people", headers=hr).status_code for _ in range(2)]
    assert answers == [200, 200]
    assert "rate limit storage unavailable" in caplog.text


def test_bad_rate_limit_settings_say_how_to_fix_them() -> None:
    with pytest.raises(ValueError, match=r"DULY_RATE_LIMIT_PER_TOKEN.*100/minute"):
        Settings(rate_limit_per_token="lots")
    with pytest.raises(ValueError, match="DULY_RATE_LIMIT_STORAGE"):
        Settings(rate_limit_storage="memcached://x:1")
    assert Settings(rate_limit_per_token="off").rate_limit_per_token == "off"


# --- /verify per real client -------------------------------------------------------------------


def behind_proxy(db: Database, peer: str, trusted: str = "10.0.0.1") -> TestClient:
    """A client connecting from ``peer`` to the app as ``duly api --forwarded-allow-ips``."""
    app = make_app(db, verify_rate_limit_per_minute=3)
    return TestClient(ProxyHeadersMiddleware(app, trusted_hosts=trusted), client=(peer, 4000))


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(sqlite: Database) -> None:
    with behind_proxy(sqlite, peer="203.0.113.7") as client:
        answers = [
            client.get(
                "/verify/DULY-AAAA-AAAA-AAAA", headers={"X-Forwarded-For": f"198.51.100.{i}"}
            ).status_code
            for i in range(5)
        ]
    assert answers == [404, 404, 404, 429, 429]


def test_behind_a_trusted_proxy_each_client_has_its_own_verify_limit(sqlite: Database) -> None:
    with behind_proxy(sqlite, peer="10.0.0.1") as client:
        answers = [
            client.get(
                "/verify/DULY-AAAA-AAAA-AAAA", headers={"X-Forwarded-For": f"198.51.100.{i % 5}"}
            ).status_code
            for i in range(15)
        ]
        fourth = client.get(
            "/verify/DULY-AAAA-AAAA-AAAA", headers={"X-Forwarded-For": "198.51.100.1"}
        )
    assert answers == [404] * 15  # 5 clients x 3 each
    assert fourth.status_code == 429


def test_a_token_does_not_lift_the_verify_limit(sqlite: Database) -> None:
    hr = bearer(sqlite, "hr_admin")
    app = make_app(sqlite, verify_rate_limit_per_minute=2)
    with TestClient(app) as client:
        answers = [client.get("/verify/DULY-X-Y", headers=hr).status_code for _ in range(3)]
    assert answers == [404, 404, 429]


def test_duly_api_trusts_forwarded_headers_only_from_the_named_proxies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    # ``duly api`` sets the root logger up (level and handler): give the next tests theirs.
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    level = root.level
    monkeypatch.setenv("DULY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DULY_FORWARDED_ALLOW_IPS", raising=False)
    runner = CliRunner()

    behind = runner.invoke(duly.cli.app, ["api", "--forwarded-allow-ips", "10.0.0.5,10.1.0.0/16"])
    direct = runner.invoke(duly.cli.app, ["api"])
    monkeypatch.setenv("DULY_FORWARDED_ALLOW_IPS", "10.0.0.9")
    from_env = runner.invoke(duly.cli.app, ["api"])
    forced_off = runner.invoke(duly.cli.app, ["api", "--no-proxy-headers"])
    root.setLevel(level)  # setLevel, not the attribute: loggers cache what is enabled

    assert [r.exit_code for r in (behind, direct, from_env, forced_off)] == [0, 0, 0, 0], (
        behind.output
    )
    assert calls[0]["proxy_headers"] is True
    assert calls[0]["forwarded_allow_ips"] == "10.0.0.5,10.1.0.0/16"
    assert calls[1]["proxy_headers"] is False  # no proxy named: forwarded headers are ignored
    assert calls[2]["proxy_headers"] is True and calls[2]["forwarded_allow_ips"] == "10.0.0.9"
    assert calls[3]["proxy_headers"] is False


def test_verify_limit_zero_disables_it(sqlite: Database) -> None:
    with TestClient(make_app(sqlite, verify_rate_limit_per_minute=0)) as client:
        answers = {client.get("/verify/DULY-X-Y").status_code for _ in range(40)}
    assert answers == {404}


def test_every_route_documents_413_and_429(sqlite: Database) -> None:
    paths = make_app(sqlite).openapi()["paths"]
    operations = [op for methods in paths.values() for op in methods.values()]
    assert operations
    assert all({"413", "429"} <= set(op["responses"]) for op in operations)
    assert "Retry-After" in paths["/rules/validate"]["post"]["responses"]["429"]["headers"]
