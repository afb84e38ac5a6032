"""`duly dev --demo` as a newcomer runs it: reminders flow, Ctrl-C stops it, a restart resumes."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DevStack:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.api_port = free_port()
        self.env = {
            **os.environ,
            "DULY_DATA_DIR": str(data_dir),
            "DULY_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "DULY_TEMPORAL_UI_PORT": str(free_port()),
            "DULY_API_PORT": str(self.api_port),
            "COLUMNS": "200",
            # As a newcomer runs it: the development key is generated into the data dir.
            "DULY_ENV": "dev",
        }
        self.env.pop("DULY_DATABASE_URL", None)
        self.log = data_dir / "dev-out.log"

    def start(self) -> subprocess.Popen[bytes]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.out = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        return subprocess.Popen(
            [sys.executable, "-m", "duly.cli", "dev", "--demo"],
            env=self.env,
            stdout=self.out,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output())
            if match:
                return match.group(1) if match.groups() else match.group(0)
            if proc.poll() is not None:
                pytest.fail(f"duly dev exited {proc.returncode}:\n{self.output()}")
            time.sleep(0.3)
        pytest.fail(f"timed out waiting for {pattern!r}:\n{self.output()}")

    def stop(self, proc: subprocess.Popen[bytes]) -> int:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=40)
        finally:
            if proc.poll() is None:
                proc.kill()
            self.out.close()
        return code


def get(port: int, path: str, token: str) -> httpx.Response:
    """GET as the demo's HR token, waiting out the dev stack's per-token rate limit.

    The test polls far more than a person would (every demo workflow, twice a second), so a
    slow machine reaches ``DULY_RATE_LIMIT_PER_TOKEN`` (100/minute): a 429 is waited out as its
    ``Retry-After`` says, as a well-behaved client does, rather than read as the answer.
    """
    deadline = time.monotonic() + 120
    while True:
        response = httpx.get(
            f"http://127.0.0.1:{port}{path}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        if response.status_code != 429 or time.monotonic() > deadline:
            return response
        time.sleep(float(response.headers.get("Retry-After", "1")))


def stage_pairs(
    ledger: list[dict[str, Any]], *, prefix: str = "assignment/"
) -> set[tuple[str, str]]:
    """(workflow id, stage) of the ledger's stage messages of workflows under ``prefix``.

    Digest rows (``digest/{person}/{day}``) are left out: they fold a person's early reminders
    of the day a few seconds later, and no workflow reports them as a stage. The demo
    apprenticeships' notices (``prefix="apprenticeship/"``) are not assignment stages.
    """
    return {(n["workflow_id"], n["stage"]) for n in ledger if n["workflow_id"].startswith(prefix)}


def settled_assignments(port: int, token: str) -> list[tuple[str, str]] | None:
    """(workflow id, stage) of every reminder the demo workflows report as sent, or None while
    any of them has not yet handled its start.

    The demo starts 12 assignments one by one, a bulk job for the whole Nursing department and
    enrols one person in a track of its client project (two course assignments).
    """
    bulk = get(port, "/assignments/bulk/demo-nursing-fire-safety", token)
    if bulk.status_code != 200 or bulk.json()["status"] != "COMPLETED":
        return None
    # The demo apprenticeships are obligations too (pinned to field-technicians): trainings here.
    obligations = [
        row
        for row in get(port, "/obligations?limit=1000", token).json()
        if row["kind"] == "training"
    ]
    # 12 assignments, the bulk job's, and the demo project's site-administrator courses (two
    # people, two courses each).
    if len(obligations) < 12 + bulk.json()["started"] + 4:
        return None
    sent: list[tuple[str, str]] = []
    now = datetime.now(UTC)
    for row in obligations:
        response = get(port, f"/assignments/{row['workflow_id']}?live=true", token)
        assert response.status_code == 200, response.text
        state = response.json()
        if not state["live"]:
            return None
        future = all(datetime.fromisoformat(s["fire_at"]) > now for s in state["stages"])
        if not state["stages_sent"] and not future:
            return None
        sent += [(row["workflow_id"], stage) for stage in state["stages_sent"]]
    return sent


def test_dev_stack_runs_demo_survives_restart_and_never_resends(tmp_path: Path) -> None:
    stack = DevStack(tmp_path / "data")
    proc = stack.start()
    try:
        token = stack.wait_for(r"hr_admin token (duly_\S+)", proc)
        stack.wait_for(r"Uvicorn running", proc)
        assert "/docs" in stack.output() and "Temporal UI" in stack.output()

        def outbox() -> list[dict[str, object]]:
            response = get(stack.api_port, "/notifications?limit=1000", token)
            assert response.status_code == 200, response.text
            return list(response.json())

        # Wait until every demo workflow has handled its start: it has sent its immediate
        # notice, or all of its stages are still in the future. Each stage the workflows report
        # as sent is then in the ledger (one row per recipient and channel of the pack's stage:
        # learner email + in-app, manager email on the due day…), and nothing else is. The
        # ledger row is written by the send activity before its workflow records the stage, so
        # the two are compared until they agree (a minute at most), not at one instant.
        # (An exhausted assessment's "failed" notice is not a ladder stage: checked below.)
        deadline = time.monotonic() + 90
        while True:
            settled = settled_assignments(stack.api_port, token)
            if settled is not None:
                first = outbox()
                in_ledger = {pair for pair in stage_pairs(first) if pair[1] != "failed"}
                if set(settled) == in_ledger:
                    break
            assert time.monotonic() < deadline, (
                "demo workflows did not settle within 90 s"
                if settled is None
                else f"ledger vs reported stages: {in_ledger ^ set(settled)}"
            )
            time.sleep(0.5)
        assert len(first) >= 5, "the demo should fill the outbox within a minute"
        # The demo apprentices: the stalled one's ladder, the one advancing to period 2.
        notices = stage_pairs(first, prefix="apprenticeship/")
        assert ("apprenticeship/p-2013/elevator-mechanic", "adv:p2") in notices, notices
        assert any(w.endswith("p-2012/elevator-mechanic") and s.endswith(":0") for w, s in notices)
        assert "OUTBOX email to person p-" in stack.output()
        # The demo deployed the medical-practice pack and pinned its assignments to it; the
        # worker created the daily status sweep schedule.
        active = get(stack.api_port, "/rules/active", token).json()
        assert active["name"] == "medical-practice"
        everything = get(stack.api_port, "/obligations?limit=1000", token).json()
        obligations = [o for o in everything if o["kind"] == "training"]
        pinned = {o["pack_hash"] for o in obligations}
        assert pinned == {active["content_hash"]}
        # Three demo apprentices, pinned to the stored field-technicians version.
        apprenticeships = [o for o in everything if o["kind"] == "apprenticeship"]
        assert len(apprenticeships) == 3, apprenticeships
        assert "demo apprenticeships: 3 enrolled" in stack.output()
        # The whole Nursing department was assigned fire safety by one bulk job.
        nursing = get(stack.api_port, "/people?department=Nursing&limit=1000", token).json()
        with_fire = {o["person"] for o in obligations if o["requirement_id"] == "fire-safety"}
        active_nurses = {p["external_id"] for p in nursing if p["employment_status"] == "active"}
        assert active_nurses and active_nurses <= with_fire
        assert "demo department: assigning fire-safety to everyone in Nursing" in stack.output()
        assert "created the daily status sweep schedule" in stack.output()
        # The demo client project: two weeks from go-live, one blocking track.
        assert "demo project: Riverside imaging study" in stack.output()
        projects = get(stack.api_port, "/projects", token).json()
        assert [p["name"] for p in projects] == ["Riverside imaging study"]
        readiness = get(stack.api_port, f"/projects/{projects[0]['id']}/readiness", token).json()
        assert readiness["ready"] is False
        assert [b["track"] for b in readiness["blocking"]] == ["site-administrator"]
        # The demo's assessment failure: three failed attempts, then the course is failed.
        assert "demo assessment: p-1011 failed research-systems-admin 3 times" in stack.output()
        exam = "/assignments/assignment/p-1011/research-systems-admin/1"
        deadline = time.monotonic() + 60
        while (failed := get(stack.api_port, f"{exam}?live=true", token).json()).get(
            "status"
        ) != "failed":
            assert time.monotonic() < deadline, failed
            time.sleep(1)
        assert failed["failed_attempts"] == 3, failed
        # The learner and manager were told once that no attempt is left.
        deadline = time.monotonic() + 60
        while (exam[len("/assignments/") :], "failed") not in stage_pairs(outbox()):
            assert time.monotonic() < deadline, "no 'failed' notice for the exhausted exam"
            time.sleep(1)
        readiness = get(stack.api_port, f"/projects/{projects[0]['id']}/readiness", token).json()
        assert "failed, no attempt left" in " ".join(readiness["blocking"][0]["people_not_done"])
        # Personal data stays out of the console.
        assert "@demo.duly.example" not in stack.output()
    finally:
        code = stack.stop(proc)
    assert code == 0, stack.output()
    assert "Duly stopped" in stack.output()
    assert (tmp_path / "data" / "temporal.db").exists()
    # A random development key, private to its owner, instead of a constant every install shares.
    key_file = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data" / "demo_tokens.json").stat().st_mode) == 0o600
    first_token = token

    proc = stack.start()
    try:
        token = stack.wait_for(r"hr_admin token (duly_\S+)", proc)
        # The demo tokens of the first start are shown again, not four new ones minted.
        assert token == first_token
        stack.wait_for(r"Uvicorn running", proc)
        tokens = get(stack.api_port, "/tokens?all=true", token).json()
        assert len(tokens) == 4, tokens
        assert re.search(r"0 assignments started, \d+ already running", stack.output())
        assert "Nursing bulk job ran on an earlier start" in stack.output()
        assert "demo project: Riverside imaging study exists from an earlier start" in (
            stack.output()
        )
        # An assignment's row (the newest row may be a digest, which no workflow reports).
        wid = next(n["workflow_id"] for n in first if n["workflow_id"].startswith("assignment/"))
        response = get(stack.api_port, f"/assignments/{wid}?live=true", token)
        assert response.status_code == 200
        assert response.json()["live"] is True  # the workflow resumed on the new worker
        settled_again = settled_assignments(stack.api_port, token)
        assert settled_again is not None
        again = get(stack.api_port, "/notifications?limit=1000", token).json()
        sends = [
            (n["workflow_id"], n["stage"], n["person"], n["recipient_role"], n["channel"])
            for n in again
        ]
        assert len(sends) == len(set(sends)), "a reminder was sent twice"
        pairs = {pair for pair in stage_pairs(again) if pair[1] != "failed"}  # not a stage
        assert pairs == set(settled_again)  # ledger and workflows agree
        assert {n["id"] for n in first} <= {n["id"] for n in again}
        # Only a stage that came due meanwhile may add a message, never an old one.
        sent_before = {(n["workflow_id"], n["stage"]) for n in first}
        old_ids = {n["id"] for n in first}
        added = [n for n in again if n["id"] not in old_ids]
        assert all((n["workflow_id"], n["stage"]) not in sent_before for n in added)
    finally:
        assert stack.stop(proc) == 0


def test_demo_mentorship_profiles_give_an_explainable_top_match(sqlite_db: Any) -> None:
    from activities import mentorship_profiles as profiles
    from duly.demo import load_demo_people
    from duly.demo.mentorship import load_demo_mentorship
    from rules.matching import find_mentors

    with sqlite_db.session() as session:
        load_demo_people(session)
    with sqlite_db.session() as session:
        assert load_demo_mentorship(session) == 5
    with sqlite_db.session() as session:
        assert load_demo_mentorship(session) == 0  # idempotent
        (mentee,) = profiles.mentee_profiles(session, only="p-1020")
        mentors = profiles.mentor_profiles(session)
    ranked = find_mentors(mentee, mentors)
    assert [m.person_id for m in ranked] == ["p-1021", "p-1011", "p-1002"]
    reasons = ranked[0].explanations
    assert any("same specialization: iv therapy (+30)" in r for r in reasons), reasons
