"""The PDF compliance report, looked at as a picture: its first page rendered to PNG.

The PNG is kept as a test artifact (``artifacts/reports/``, or ``$DULY_ARTIFACTS/reports``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from domain.roles import Role
from duly.settings import Settings
from services import compliance, reports
from store.db import Database
from tests.api.test_compliance_api import NOW, _seed, fixed_clock
from tests.conftest import bearer
from tests.fakes.temporal import FakeTemporal

ARTIFACTS = Path(os.environ.get("DULY_ARTIFACTS", Path(__file__).parents[2] / "artifacts"))


@pytest.fixture
def client(sqlite_db: Database) -> Iterator[TestClient]:
    _seed(sqlite_db)
    settings = Settings(env="test", temporal_address="127.0.0.1:1", rate_limit_per_token="off")
    app = create_app(
        settings,
        database=sqlite_db,
        temporal_client=FakeTemporal(),  # type: ignore[arg-type]
        clock=fixed_clock,
    )
    with TestClient(app) as test_client:
        yield test_client


def _first_page(data: bytes, name: str) -> tuple[str, list[tuple[int, int, int]], tuple[int, int]]:
    """The first page's text, its chart's pixels and its size; the PNG is saved."""
    document = pdfium.PdfDocument(data)
    page = document[0]
    text = page.get_textpage().get_text_range()
    image = page.render(scale=1.5).to_pil().convert("RGB")
    width, height = image.size
    # The trend chart's band of the page (between its title and its month labels).
    chart = image.crop((0, int(height * 0.25), width, int(height * 0.43)))
    ARTIFACTS.joinpath("reports").mkdir(parents=True, exist_ok=True)
    image.save(ARTIFACTS / "reports" / f"{name}.png")
    return text, list(chart.get_flattened_data()), image.size


def _near(pixel: tuple[int, int, int], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 12 for a, b in zip(pixel, colour, strict=True))


def test_the_org_report_renders_its_numbers_and_chart(
    client: TestClient, sqlite_db: Database
) -> None:
    answer = client.get(
        "/compliance/report.pdf?day=2026-06-15", headers=bearer(sqlite_db, Role.HR_ADMIN)
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/pdf"
    assert answer.content.startswith(b"%PDF-")
    text, pixels, size = _first_page(answer.content, "compliance-org-2026-06-15")
    # A4 at 1.5 x 72 dpi.
    assert size == (893, 1263)
    assert "Compliance report - Organisation" in text
    assert "As of 2026-06-15" in text
    # The recorded decisions at the end of that day: p-1020's HIPAA completed, p-1021's
    # overdue: two obligations, one compliant, 50%.
    assert "hipaa" in text and "50.0%" in text
    assert "2025-07" in text and "2026-06" in text
    white = sum(1 for p in pixels if p == (255, 255, 255))
    assert white < len(pixels) * 0.95, "the chart is (nearly) blank"
    # The trend chart's bars: compliant (green) and overdue (red) both drawn.
    assert sum(1 for p in pixels if _near(p, reports.GREEN)) > 200
    assert sum(1 for p in pixels if _near(p, reports.RED)) > 50


def test_a_past_day_shows_what_was_in_force_then(sqlite_db: Database) -> None:
    _seed(sqlite_db)
    with sqlite_db.session() as session:
        audience = compliance.audience(session, visible=None, scope="org", viewer_id=None)
        data = reports.compliance_pdf(
            session, audience=audience, day=date(2026, 3, 15), generated_at=NOW
        )
    text, pixels, _ = _first_page(data, "compliance-org-2026-03-15")
    # On 15 March both HIPAA obligations were open: 0% compliant, nothing overdue.
    assert "As of 2026-03-15" in text and "0.0%" in text
    assert sum(1 for p in pixels if _near(p, reports.RED)) == 0
    assert sum(1 for p in pixels if _near(p, reports.AMBER)) > 50


def test_a_manager_gets_their_teams_report_only(client: TestClient, sqlite_db: Database) -> None:
    answer = client.get(
        "/compliance/report.pdf?scope=team&day=2026-06-15",
        headers=bearer(sqlite_db, Role.MANAGER, "p-1010"),
    )
    assert answer.status_code == 200
    text, _, _ = _first_page(answer.content, "compliance-team-p-1010-2026-06-15")
    assert "Team of Nora Placeholder" in text
    refused = client.get(
        "/compliance/report.pdf", headers=bearer(sqlite_db, Role.LEARNER, "p-1020")
    )
    assert refused.status_code == 403
