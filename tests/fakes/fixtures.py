"""Pytest fixtures for the provider fakes: each started before and stopped after one test.

Enable them in a test module or conftest with::

    pytest_plugins = ["tests.fakes.fixtures"]

or import the fixtures by name (``from tests.fakes.fixtures import fake_sendgrid``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.providers import FakeSendGrid, FakeSlack, FakeTwilio


@pytest.fixture
def fake_sendgrid() -> Iterator[FakeSendGrid]:
    """A running :class:`FakeSendGrid` (``.base_url``, ``.api_key``)."""
    with FakeSendGrid() as fake:
        yield fake


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    """A running :class:`FakeTwilio` (``.base_url``, ``.account_sid``, ``.auth_token``)."""
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A running :class:`FakeSlack` (``.base_url``, ``.token``)."""
    with FakeSlack() as fake:
        yield fake
