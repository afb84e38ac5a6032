"""Schemathesis over /openapi.json: no 5xx and every answer documented (issue 13 item 7).

Bounded for ``make test``: a few generated cases per operation (valid and invalid inputs),
as hr_admin, as a learner and without a token, against the demo org on SQLite and a Temporal
that knows no workflows (the read model answers).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from domain.roles import Role
from duly.settings import Settings
from store.db import Database
from store.migrate import upgrade
from tests.api.test_role_matrix import LEARNER, seed_org
from tests.conftest import bearer
from tests.fakes.temporal import NoWorkflows

#: A few cases per operation keeps the three runs well under two minutes on two cores.
EXAMPLES_PER_OPERATION = 4

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path_factory.mktemp('schemathesis') / 'duly.db'}"
    upgrade(url)
    db = Database(url)
    seed_org(db)
    try:
        yield db
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def tokens(database: Database) -> dict[str, dict[str, str]]:
    return {
        "hr_admin": bearer(database, Role.HR_ADMIN),
        "learner": bearer(database, Role.LEARNER, LEARNER),
    }


@pytest.fixture(scope="module")
def api_schema(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings_ = Settings(
        env="test",
        temporal_address="127.0.0.1:1",
        data_dir=Path(tmp_path_factory.mktemp("data")),
        # Hundreds of requests per token: the limiter (tests/api/test_limits.py) would answer.
        rate_limit_per_token="off",
        rate_limit_anonymous="off",
        verify_rate_limit_per_minute=0,
    )
    app = create_app(settings_, database=database, temporal_client=NoWorkflows())  # type: ignore[arg-type]
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return schema


def failures_of(schema: Any, headers: dict[str, str]) -> list[str]:
    """Run every operation's generated cases; one line per operation that broke its description.

    Plain Hypothesis rather than ``schema.parametrize()``: schemathesis' pytest plugin needs a
    pytest attribute (``Node._nodeid``) that pytest 9 no longer has.
    """
    found = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @BOUNDED
            def run(case: Any) -> None:
                case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                continue  # nothing of this operation can be made invalid (no parameters)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001 - FailureGroup; reported, then asserted
                found.append(f"{operation.label} ({mode.value}): {str(exc)[:1500]}")
    return found


#: No shrinking and no example database: each failure is reported as found, runs are repeatable.
BOUNDED = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize("caller", ["hr_admin", "learner", "anonymous"])
def test_the_api_keeps_its_description(
    api_schema: Any, tokens: dict[str, dict[str, str]], caller: str
) -> None:
    failures = failures_of(api_schema, tokens.get(caller, {}))
    assert not failures, "\n\n".join(failures)
