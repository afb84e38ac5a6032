"""The PDF compliance report (fpdf2): an organisation's or a team's compliance as of a day.

Every number comes from the decisions recorded up to the end of that day (UTC), so a report
for a past day shows what was in force then, decided by the rules of then. The PDF is
deterministic for the same data and generation instant (fpdf2 stamps that instant).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.orm import Session

from services import compliance

#: Colours (RGB): compliant, in progress, overdue, ink, rule lines.
GREEN = (46, 125, 50)
AMBER = (249, 168, 37)
RED = (198, 40, 40)
INK = (33, 33, 33)
GREY = (189, 189, 189)


def _text(value: object) -> str:
    """Text the core PDF fonts can draw (Latin-1): other characters become ``?``."""
    return str(value).replace("—", "-").encode("latin-1", "replace").decode("latin-1")


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def report_instant(day: date, now: datetime) -> datetime:
    """The instant a report "as of ``day``" counts at: the end of that UTC day, or now."""
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC) - timedelta(
        microseconds=1
    )
    return min(end, now)


def compliance_pdf(
    session: Session,
    *,
    audience: compliance.Audience,
    day: date,
    generated_at: datetime,
) -> bytes:
    """The report as PDF bytes.

    Headline numbers, a 12-month trend chart and a table by requirement, all as of the end of
    ``day``.

    Args:
        session: An open session.
        audience: Whose obligations (:func:`services.compliance.audience`).
        day: The day the report is as of (UTC; a future day counts as now).
        generated_at: The current instant (printed, and the PDF's creation date).
    """
    at = report_instant(day, generated_at)
    points = compliance.trend(session, audience=audience, now=at, months=12)
    # The trend's last point is counted at ``at`` itself: the headline, not a second count.
    headline = points[-1]
    rows = compliance.requirements_at(session, audience=audience, at=at)

    # fpdf2 (and fontTools under it) costs seconds to import: only the report pays for it.
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_creation_date(generated_at)
    pdf.set_title(_text(f"Compliance report: {audience.label}"))
    pdf.set_author("Duly")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_text_color(*INK)
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(
        0, 10, _text(f"Compliance report - {audience.label}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT
    )
    pdf.set_font("Helvetica", "", 10)
    pdf.cell(
        0,
        6,
        _text(f"As of {day.isoformat()} (counted at {at.isoformat(timespec='seconds')})"),
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.cell(
        0,
        6,
        _text(f"Generated {generated_at.astimezone(UTC).isoformat(timespec='seconds')} by Duly"),
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.ln(4)

    # Headline boxes.
    boxes = [
        ("Obligations", str(headline.total), INK),
        ("Compliant", str(headline.completed), GREEN),
        ("In progress", str(headline.in_progress), AMBER),
        ("Overdue", str(headline.overdue), RED),
        ("Compliance rate", _pct(headline.rate), INK),
    ]
    width = (pdf.w - pdf.l_margin - pdf.r_margin) / len(boxes)
    top = pdf.get_y()
    for index, (label, value, colour) in enumerate(boxes):
        x = pdf.l_margin + index * width
        pdf.set_draw_color(*GREY)
        pdf.rect(x + 1, top, width - 2, 22)
        pdf.set_xy(x + 1, top + 2)
        pdf.set_font("Helvetica", "", 9)
        pdf.cell(width - 2, 5, label, align="C")
        pdf.set_xy(x + 1, top + 8)
        pdf.set_font("Helvetica", "B", 16)
        pdf.set_text_color(*colour)
        pdf.cell(width - 2, 10, value, align="C")
        pdf.set_text_color(*INK)
    pdf.set_y(top + 28)

    # Trend: one stacked bar per month (compliant / in progress / overdue), rate above it.
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 8, "Compliance over the last 12 months", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    chart_top, chart_height = pdf.get_y() + 6, 50
    chart_width = pdf.w - pdf.l_margin - pdf.r_margin
    slot = chart_width / len(points)
    peak = max((p.total for p in points), default=0) or 1
    pdf.set_draw_color(*GREY)
    pdf.line(
        pdf.l_margin, chart_top + chart_height, pdf.l_margin + chart_width, chart_top + chart_height
    )
    for index, point in enumerate(points):
        x = pdf.l_margin + index * slot + slot * 0.2
        bottom = chart_top + chart_height
        for count, colour in (
            (point.completed, GREEN),
            (point.in_progress, AMBER),
            (point.overdue, RED),
        ):
            height = chart_height * count / peak
            if height > 0:
                pdf.set_fill_color(*colour)
                pdf.rect(x, bottom - height, slot * 0.6, height, style="F")
                bottom -= height
        pdf.set_font("Helvetica", "", 7)
        pdf.set_xy(pdf.l_margin + index * slot, bottom - 5)
        pdf.cell(slot, 4, _pct(point.rate) if point.total else "", align="C")
        pdf.set_xy(pdf.l_margin + index * slot, chart_top + chart_height + 1)
        pdf.cell(slot, 4, point.month, align="C")
    pdf.set_y(chart_top + chart_height + 8)
    pdf.set_font("Helvetica", "", 8)
    for label, colour in (("compliant", GREEN), ("in progress", AMBER), ("overdue", RED)):
        pdf.set_fill_color(*colour)
        pdf.rect(pdf.get_x(), pdf.get_y() + 1, 3, 3, style="F")
        pdf.set_x(pdf.get_x() + 4)
        pdf.cell(25, 5, label)
    pdf.ln(9)

    # By requirement.
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 8, "By requirement", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    columns = [
        ("Requirement", 70),
        ("Total", 20),
        ("Compliant", 22),
        ("In progress", 24),
        ("Overdue", 20),
        ("Rate", 24),
    ]
    pdf.set_font("Helvetica", "B", 9)
    pdf.set_fill_color(238, 238, 238)
    for name, w in columns:
        pdf.cell(w, 7, name, border=1, fill=True)
    pdf.ln()
    pdf.set_font("Helvetica", "", 9)
    if not rows:
        pdf.cell(
            0,
            7,
            "No decisions were recorded by then.",
            border=1,
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
    for row in rows:
        cells: list[object] = [
            row.label,
            row.total,
            row.completed,
            row.in_progress,
            row.overdue,
            _pct(row.rate),
        ]
        for (_, w), cell in zip(columns, cells, strict=True):
            pdf.cell(w, 6, _text(cell)[:45], border=1)
        pdf.ln()
    pdf.ln(4)
    pdf.set_font("Helvetica", "I", 8)
    pdf.multi_cell(
        0,
        4,
        "Counts are the statuses Duly recorded when each was decided (rule, pack hash and facts "
        "are in the evidence pack), not re-decided with today's rules. Compliant: completed, "
        "compliant or exempt; overdue: overdue, non-compliant, expired, lapsed, failed or "
        "revoked; cancelled and superseded obligations are not counted.",
    )
    return bytes(pdf.output())
