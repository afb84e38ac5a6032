"""API test fixtures: a fake Temporal client, and the event-loop guard on every API test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.temporal import FakeTemporal
from tests.loopguard import LoopGuard


@pytest.fixture
def temporal() -> FakeTemporal:
    """A fresh :class:`FakeTemporal` per test."""
    return FakeTemporal()


@pytest.fixture(autouse=True)
def loop_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopGuard]:
    """Fail the test when a route uses the database on the event loop (tests/loopguard.py).

    Every API test runs with it, so the role matrix (every route) and schemathesis check each
    route that exists now and each one added later.
    """
    guard = LoopGuard()
    with guard.installed(monkeypatch):
        yield guard
    guard.check()
