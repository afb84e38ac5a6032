"""Floor 1 contracts of the directory family: what a directory change is.

:mod:`services.directory` produces a :class:`DirectoryChange` for every person a write changes
(SCIM, the CSV/JSON import, the API); the joiner/mover/leaver automation
(``DirectoryChangeWorkflow``, business key person + change id) will take it as its input, which
is why it lives on the bottom floor: workflows may import it, not the service.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

#: Contact details: shown as this in the audit trail.
REDACTED = "<redacted>"
REDACTED_ATTRIBUTES: frozenset[str] = frozenset({"email", "phone"})

#: The attributes a change record carries (``manager`` is the manager's external id).
ATTRIBUTES: tuple[str, ...] = (
    "name",
    "email",
    "phone",
    "slack_user_id",
    "roles",
    "department",
    "location",
    "time_zone",
    "employer",
    "manager",
    "employment_status",
)
#: A change of any of these makes a mover: what applies to them may have changed.
MOVER_ATTRIBUTES: frozenset[str] = frozenset({"roles", "department", "location", "employer"})


class ChangeKind(StrEnum):
    """What a directory change means for a person's obligations."""

    JOINER = "joiner"
    MOVER = "mover"
    LEAVER = "leaver"
    REHIRE = "rehire"
    #: Leave of absence starts (``employment_status`` becomes ``leave``).
    LEAVE = "leave"
    #: Back from leave (``leave`` → ``active``).
    RETURN = "return"
    #: Other attributes (name, contact details, time zone, manager): nothing to assign or close.
    UPDATE = "update"


class DirectoryChange(BaseModel):
    """One person's change, as the joiner/mover/leaver automation will receive it.

    Attributes:
        change_id: Unique per change; with the person, the automation's business key.
        person_id: The person's database id.
        external_id: The person's directory key.
        kind: Joiner, mover, leaver, rehire, leave, return or update.
        changed: The attributes that changed (all of them for a joiner).
        before: The attributes before (None for a joiner).
        after: The attributes after.
        source: ``import``, ``scim`` or ``api``.
        actor: The audit actor who made the change.
    """

    model_config = ConfigDict(frozen=True)

    change_id: str
    person_id: int
    external_id: str
    kind: ChangeKind
    changed: list[str]
    before: dict[str, Any] | None
    after: dict[str, Any]
    source: str
    actor: str

    def audit_view(self) -> dict[str, Any]:
        """The change without contact details (email and phone are redacted)."""

        def safe(values: dict[str, Any] | None) -> dict[str, Any] | None:
            if values is None:
                return None
            return {
                k: (REDACTED if k in REDACTED_ATTRIBUTES and v is not None else v)
                for k, v in values.items()
                if k in self.changed
            }

        return {
            "change_id": self.change_id,
            "kind": self.kind.value,
            "source": self.source,
            "changed": self.changed,
            "before": safe(self.before),
            "after": safe(self.after),
        }
