"""``GET /assignments/{id}`` answers from the read model; ``?live=true`` asks the workflow."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from duly.settings import Settings
from store.db import Database
from tests.api.test_ack import SECRET, WORKFLOW, seed
from tests.conftest import bearer
from tests.fakes.temporal import FakeHandle, FakeTemporal


class CountingTemporal(FakeTemporal):
    """Counts the workflow handles asked for (every query or describe needs one)."""

    def __init__(self) -> None:
        super().__init__()
        self.handles: list[str] = []

    def get_workflow_handle(self, workflow_id: str, **kwargs: Any) -> FakeHandle:
        self.handles.append(workflow_id)
        return super().get_workflow_handle(workflow_id, **kwargs)


def test_the_read_model_answers_without_temporal_and_live_asks_the_workflow(
    sqlite_db: Database,
) -> None:
    seed(sqlite_db, stage="due_soon")
    temporal = CountingTemporal()
    app = create_app(
        Settings(env="test", secret_key=SECRET, rate_limit_per_token="off"),
        database=sqlite_db,
        temporal_client=temporal,  # type: ignore[arg-type]
    )
    hr = bearer(sqlite_db, "hr_admin")
    with TestClient(app) as client:
        read = client.get(f"/assignments/{WORKFLOW}", headers=hr)
        assert read.status_code == 200, read.text
        body = read.json()
        assert body["live"] is False and body["id"] == WORKFLOW
        assert body["person"] == "p-1" and body["read_model"]["workflow_id"] == WORKFLOW
        assert temporal.handles == []  # no Temporal round trip on the hot read

        # The learner's peer still cannot see it (visibility before the answer).
        with sqlite_db.session() as session:
            from store.models import Person

            session.add(Person(external_id="p-2", name="Peer", email="peer@example.com"))
        peer = bearer(sqlite_db, "learner", "p-2")
        assert client.get(f"/assignments/{WORKFLOW}", headers=peer).status_code == 404
        assert temporal.handles == []

        # ?live=true asks the workflow (this fake does not answer queries: the read model does).
        live = client.get(f"/assignments/{WORKFLOW}?live=true", headers=hr)
        assert live.status_code == 200, live.text
        assert temporal.handles == [WORKFLOW]


def test_hot_reads_take_one_statement_for_hr(sqlite_db: Database) -> None:
    """With the token verified (cached), HR's hot reads are one ``SELECT`` each.

    The read-model row's joined person answers visibility (no separate person lookup), and a
    person's rows come with the person in one outer-joined ``SELECT`` (an unknown person is
    still 404, a person without rows an empty list).
    """
    from sqlalchemy import event

    from store.models import Person

    seed(sqlite_db, stage="due_soon")
    with sqlite_db.session() as session:
        session.add(Person(external_id="p-0", name="No Rows", email="p0@example.com"))
    app = create_app(
        Settings(env="test", secret_key=SECRET, rate_limit_per_token="off"),
        database=sqlite_db,
        temporal_client=CountingTemporal(),  # type: ignore[arg-type]
    )
    hr = bearer(sqlite_db, "hr_admin")
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    with TestClient(app) as client:
        assert client.get("/obligations", headers=hr).status_code == 200  # token now cached
        event.listen(sqlite_db.engine, "before_cursor_execute", count)
        for path in (f"/assignments/{WORKFLOW}", "/people/p-1/obligations", "/obligations"):
            statements.clear()
            answer = client.get(path, headers=hr)
            assert answer.status_code == 200, answer.text
            assert len(statements) == 1, (path, statements)
        assert [row["workflow_id"] for row in answer.json()] == [WORKFLOW]
        assert client.get("/people/p-0/obligations", headers=hr).json() == []
        assert client.get("/people/nobody/obligations", headers=hr).status_code == 404
