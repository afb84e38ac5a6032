"""The bottom floor: ids, roles, kinds, statuses, bounds and zone-aware calendar maths.

Pure (no I/O, no imports of Duly's other packages), so workflows may import it inside the Temporal
sandbox and every other floor may build on it. The per-family workflow contracts live in
:mod:`domain.contracts`; the common basics are re-exported here for convenience.
"""

from domain.bounds import BoundedDate, BoundedInstant, Cycle, OutOfRange, Score
from domain.calendar import DEFAULT_LADDER_DAYS, REMINDER_HOUR, LadderStage, add_months
from domain.ids import BUILTIN_PACK, ID_PATTERN, ExternalId, slugify
from domain.kinds import ObligationKind
from domain.roles import Role
from domain.statuses import EmploymentStatus, ObligationStatus

__all__ = [
    "BUILTIN_PACK",
    "DEFAULT_LADDER_DAYS",
    "ID_PATTERN",
    "REMINDER_HOUR",
    "BoundedDate",
    "BoundedInstant",
    "Cycle",
    "EmploymentStatus",
    "ExternalId",
    "LadderStage",
    "ObligationKind",
    "ObligationStatus",
    "OutOfRange",
    "Role",
    "Score",
    "add_months",
    "slugify",
]
