"""API test fixtures: a fake Temporal client that records signals and starts."""

from __future__ import annotations

import pytest

from tests.fakes.temporal import FakeTemporal


@pytest.fixture
def temporal() -> FakeTemporal:
    """A fresh :class:`FakeTemporal` per test."""
    return FakeTemporal()
