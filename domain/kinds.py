"""The kinds of obligation Duly tracks."""

from __future__ import annotations

from enum import StrEnum


class ObligationKind(StrEnum):
    """The kinds of obligation Duly tracks."""

    TRAINING = "training"
    CERTIFICATION = "certification"
    APPRENTICESHIP = "apprenticeship"
    MENTORSHIP = "mentorship"
