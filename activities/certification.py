"""Activities of the certification workflow: the public certificate record.

Reminders, status decisions and the obligation read model are the ones every family's ladder
runs (``workflows.ladder``: ``ObligationActivities.send_reminder``/``record_obligation``,
``RulesActivities.plan_stages``/``decide_status``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.contracts.certification import CertificateUpdate
from store.db import Database
from store.models import Certificate, Person


class CertificationActivities:
    """Activities bound to one database (sync: the worker runs them on a thread pool)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn(name="record_certificate")
    def record_certificate(self, update: CertificateUpdate) -> None:
        """Upsert one certificate by its verification code; older updates never win."""
        cert = update.certificate
        with self._db.session() as session:
            person = session.scalar(select(Person).where(Person.external_id == update.person))
            if person is None:
                raise ApplicationError(
                    f"person {update.person!r} is not in the directory", non_retryable=True
                )
            row = session.scalar(
                select(Certificate).where(Certificate.verification_code == cert.verification_code)
            )
            if row is None:
                row = Certificate(verification_code=cert.verification_code, person_id=person.id)
                session.add(row)
            elif row.workflow_id != update.workflow_id:
                # Codes are random; a clash would show one person's certificate as another's.
                raise ApplicationError(
                    "verification code already belongs to another certification",
                    non_retryable=True,
                )
            elif row.as_of > update.as_of:
                return
            row.workflow_id = update.workflow_id
            row.certification_id = update.certification_id
            row.title = update.title
            row.cycle = cert.cycle
            row.certificate_number = cert.certificate_number
            row.issuer = cert.issuer
            row.issued_on = cert.issued_on
            row.expires_on = cert.expires_on
            row.status = update.status
            row.as_of = update.as_of

    def all(self) -> list[Callable[..., Any]]:
        """Every activity callable, for the worker."""
        return [self.record_certificate]
