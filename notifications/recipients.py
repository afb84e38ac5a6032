"""Who a stage notifies, resolved from the directory and the pinned pack at send time.

Managers are looked up when the reminder goes out, not when the obligation was assigned: a
learner who changed teams escalates to their current manager.
"""

from __future__ import annotations

import re

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


def resolve(
    learner: Person, roles: list[str], pack: Pack | None, stage: Stage | None
) -> tuple[list[Recipient], list[str]]:
    """The recipients for ``roles`` and the roles nobody could be found for.

    Args:
        learner: The person the obligation belongs to.
        roles: Stage recipients (learner, manager, managers_manager, hr, employer_contact,
            slack_channel).
        pack: The pinned pack (contacts), None for the built-in ladder.
        stage: The pack stage (for its Slack channel), None for the built-in ladder.

    Returns:
        (recipients, unresolved roles) — an unresolved role is recorded, never an error: a CEO
        has no manager, a direct employee has no employer contact.
    """
    found: list[Recipient] = []
    missing: list[str] = []
    contacts = pack.info.contacts if pack else None
    for role in roles:
        recipient: Recipient | None = None
        if role == "learner":
            recipient = person_recipient(role, learner)
        elif role == "manager" and learner.manager is not None:
            recipient = person_recipient(role, learner.manager)
        elif role == "managers_manager" and learner.manager and learner.manager.manager:
            recipient = person_recipient(role, learner.manager.manager)
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
    return found, missing
