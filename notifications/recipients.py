"""Who a stage notifies, resolved from the directory and the pinned pack at send time.

Managers are looked up when the reminder goes out, not when the obligation was assigned: a
learner who changed teams escalates to their current manager.

Employment status is read at send time too (HR imports it; running workflows are not told):

* a learner who has **left** (``terminated``) gets nothing and nobody is escalated to about
  them: :func:`stage_skip` says so and the caller records every send of the stage ``skipped``;
* a learner on **leave** is not reminded (recorded ``skipped``); the stage's other recipients
  (manager, HR) still are, so someone decides on an exemption or an extension — a pack that
  wants silence adds ``unless: 'employment_status == "leave"'`` to the stage;
* a **manager** (or manager's manager) on leave or gone is passed over for the next active
  person up the chain (recorded ``skipped`` for them, with who got it instead); with nobody
  active above, the role is recorded as not notified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from notifications.delivery import Recipient
from rules.model import Pack, Stage
from store.models import Person


def person_recipient(role: str, person: Person) -> Recipient:
    """A person as a recipient in ``role``, with every address the directory has."""
    return Recipient(
        role=role,
        key=person.external_id,
        person=person,
        email=person.email,
        phone=person.phone,
        slack=person.slack_user_id,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


#: The one employment status that receives reminders.
ACTIVE = "active"


@dataclass(frozen=True)
class PassedOver:
    """A would-be recipient deliberately not notified, and why (a ``skipped`` ledger row)."""

    recipient: Recipient
    #: ``learner:leave``, ``recipient:leave``, ``recipient:terminated``.
    code: str
    #: PII-free explanation (external ids only) for HR.
    reason: str


class Resolved(NamedTuple):
    """Who a stage goes to."""

    recipients: list[Recipient]
    #: Roles nobody could be found for (a CEO has no manager).
    missing: list[str]
    #: People not notified because of their employment status.
    passed_over: list[PassedOver]


class Employee(Protocol):
    """Who an obligation belongs to, as far as :func:`stage_skip` cares (a ``Person`` fits)."""

    @property
    def external_id(self) -> str:
        """The directory's id."""
        ...

    @property
    def employment_status(self) -> str:
        """active, leave or terminated."""
        ...


def stage_skip(learner: Employee) -> tuple[str, str] | None:
    """(code, reason) when no one may be notified about ``learner`` at all: they have left."""
    if learner.employment_status == "terminated":
        return (
            "learner:terminated",
            f"{learner.external_id} has left (employment_status terminated): no reminders "
            "or escalations about them",
        )
    return None


def up_the_chain(role: str, nominal: Person | None) -> tuple[Recipient | None, list[PassedOver]]:
    """``nominal`` if active, else the first active person above them (and who was passed).

    Args:
        role: The role the recipient is found for (``manager``, ``supervisors_manager``...).
        nominal: Who the role names in the directory (None: nobody).

    Returns:
        The recipient (None: nobody active up the chain) and the people passed over.
    """
    passed: list[Person] = []
    seen: set[int] = set()
    current = nominal
    while current is not None and current.employment_status != ACTIVE and current.id not in seen:
        seen.add(current.id)
        passed.append(current)
        current = current.manager
    if current is not None and current.id in seen:
        current = None  # a loop in the directory's manager links: nobody active in it
    found = person_recipient(role, current) if current is not None else None
    instead = (
        f"sent to {current.external_id}, the next active person up the chain"
        if current is not None
        else "nobody active above them to notify instead"
    )
    skipped = [
        PassedOver(
            person_recipient(role, person),
            f"recipient:{person.employment_status}",
            f"{role} {person.external_id} is {_status_phrase(person)}: {instead}",
        )
        for person in passed
    ]
    return found, skipped


def _status_phrase(person: Person) -> str:
    return "on leave" if person.employment_status == "leave" else "no longer employed"


def resolve(learner: Person, roles: list[str], pack: Pack | None, stage: Stage | None) -> Resolved:
    """The recipients for ``roles``, the roles nobody could be found for, and who was passed over.

    Args:
        learner: The person the obligation belongs to.
        roles: Stage recipients (learner, manager, managers_manager, hr, employer_contact,
            slack_channel).
        pack: The pinned pack (contacts), None for the built-in ladder.
        stage: The pack stage (for its Slack channel), None for the built-in ladder.

    Returns:
        Recipients, unresolved roles (recorded, never an error: a CEO has no manager, a direct
        employee has no employer contact) and people passed over for their employment status
        (a learner on leave; a manager on leave, replaced by the next active one up the chain).
    """
    found: list[Recipient] = []
    missing: list[str] = []
    passed_over: list[PassedOver] = []
    contacts = pack.info.contacts if pack else None
    for role in roles:
        recipient: Recipient | None = None
        if role == "learner":
            recipient = person_recipient(role, learner)
            if learner.employment_status == "leave":
                passed_over.append(
                    PassedOver(
                        recipient,
                        "learner:leave",
                        f"{learner.external_id} is on leave: not reminded while on leave "
                        "(the stage's other recipients still are)",
                    )
                )
                continue
        elif role == "manager" and learner.manager is not None:
            recipient, skipped = up_the_chain(role, learner.manager)
            passed_over += skipped
            if recipient is None:
                continue
        elif role == "managers_manager" and learner.manager and learner.manager.manager:
            recipient, skipped = up_the_chain(role, learner.manager.manager)
            passed_over += skipped
            if recipient is None:
                continue
        elif role == "hr" and contacts and contacts.hr_mailbox:
            recipient = Recipient(role=role, key="hr", person=None, email=contacts.hr_mailbox)
        elif role == "employer_contact" and contacts and learner.employer:
            address = contacts.employer_contacts.get(learner.employer)
            if address:
                recipient = Recipient(
                    role=role, key=f"employer:{_slug(learner.employer)}", person=None, email=address
                )
        elif role == "slack_channel" and stage is not None and stage.slack_channel:
            recipient = Recipient(
                role=role,
                key=f"slack:{stage.slack_channel}",
                person=None,
                slack=stage.slack_channel,
            )
        if recipient is None:
            missing.append(role)
        elif all(r.key != recipient.key for r in found):
            found.append(recipient)  # a manager who is also HR's mailbox owner gets one copy
    # Passed over once per person, and never someone who receives the stage in another role.
    keys = {r.key for r in found}
    unique: dict[str, PassedOver] = {}
    for entry in passed_over:
        if entry.recipient.key not in keys:
            unique.setdefault(entry.recipient.key, entry)
    return Resolved(found, missing, list(unique.values()))
