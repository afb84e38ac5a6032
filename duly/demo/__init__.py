"""A small, clearly fake demo organisation for `duly dev --demo` and tests.

36 people in a four-level chain (CEO -> directors -> managers -> staff) across Boston, Chicago,
Denver, Seattle and London, employed by "Duly Health" or the contractor "Acme Staffing". Emails are
at ``demo.duly.example`` and phone numbers are in fictional ranges (+1 555 01xx, +44 7700 900xxx).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from store.people import ImportReport, import_people, parse_csv

#: The demo directory in the HRIS CSV format `duly people import` reads.
DEMO_PEOPLE_CSV: Path = Path(__file__).with_name("people.csv")


def load_demo_people(session: Session) -> ImportReport:
    """Import (or re-import, idempotently) the demo organisation.

    Args:
        session: An open session; the caller commits.

    Returns:
        The import report (all created on the first call, all unchanged afterwards).
    """
    rows, errors = parse_csv(DEMO_PEOPLE_CSV.read_text(encoding="utf-8"))
    return import_people(session, rows, errors)
