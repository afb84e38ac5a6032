"""Apprenticeship tables: the enrolment read model, every hours entry and every evaluation.

The :class:`~workflows.apprenticeship.ApprenticeshipWorkflow` holds the apprenticeship's truth
and carries only a summary across continue-as-new; these tables keep the whole record (every
entry with its approval and any correction reason, every evaluation), so the auditor reads all
of it whatever run the workflow is in. Rows are written by the workflow's activities only.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domain.statuses import STATUS_MAX_CHARS
from store.models import Base, Person
from store.types import StrictJSON, UTCDateTime, utcnow


class Apprenticeship(Base):
    """One person's enrolment in one program: the workflow's latest recorded state."""

    __tablename__ = "apprenticeships"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(255), unique=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    program_id: Mapped[str] = mapped_column(String(80))
    program_name: Mapped[str] = mapped_column(String(200))
    pack_hash: Mapped[str] = mapped_column(String(64))
    #: The supervisor's (journeyworker's) external id.
    supervisor: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    compliance_status: Mapped[str] = mapped_column(String(STATUS_MAX_CHARS))
    #: The rule (or built-in decision) that gave ``compliance_status``.
    decided_by: Mapped[str] = mapped_column(String(120))
    period: Mapped[int] = mapped_column(Integer)
    wage_percentage: Mapped[float] = mapped_column(Float)
    enrolled_on: Mapped[date] = mapped_column(Date)
    expected_completion: Mapped[date] = mapped_column(Date)
    completed_on: Mapped[date | None] = mapped_column(Date)
    work_approved: Mapped[float] = mapped_column(Float, default=0.0)
    classroom_approved: Mapped[float] = mapped_column(Float, default=0.0)
    #: The progress summary the API shows (periods, skills, evaluation due, unmet).
    summary: Mapped[dict[str, Any]] = mapped_column(StrictJSON, default=dict)
    #: Workflow time of the update this row reflects; older updates never overwrite it.
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    person: Mapped[Person] = relationship(lazy="joined")

    __table_args__ = (Index("ix_apprenticeships_person_id", "person_id"),)


class ApprenticeshipHours(Base):
    """One hours entry, as logged, with its approval; ids are the logger's (idempotent)."""

    __tablename__ = "apprenticeship_hours"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(255))
    entry_id: Mapped[str] = mapped_column(String(100))
    day: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(16))
    hours: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    skills: Mapped[list[str]] = mapped_column(StrictJSON, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    #: api, csv, xapi.
    source: Mapped[str] = mapped_column(String(16), default="api")
    #: A correction names the entry it corrects and why.
    corrects: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    logged_by: Mapped[str] = mapped_column(String(120))
    reviewed_by: Mapped[str | None] = mapped_column(String(120))
    review_reason: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("workflow_id", "entry_id", name="uq_apprenticeship_hours_entry"),
    )


class ApprenticeshipEvaluation(Base):
    """One supervisor evaluation: score, skills signed off, notes."""

    __tablename__ = "apprenticeship_evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(255))
    evaluation_id: Mapped[str] = mapped_column(String(100))
    day: Mapped[date] = mapped_column(Date)
    score: Mapped[int] = mapped_column(Integer)
    skills_signed_off: Mapped[list[str]] = mapped_column(StrictJSON, default=list)
    notes: Mapped[str] = mapped_column(Text, default="")
    final: Mapped[bool] = mapped_column(Boolean, default=False)
    evaluator: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("workflow_id", "evaluation_id", name="uq_apprenticeship_evaluations_id"),
    )
