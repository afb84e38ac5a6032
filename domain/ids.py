"""External ids, business-key workflow ids and the built-in pack marker."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

#: External ids end up in workflow ids and URLs, so they stay URL- and path-safe.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ExternalId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]

#: Marks decisions made before a rules pack is deployed (the skeleton's built-in ladder).
BUILTIN_PACK = "builtin"


def slugify(text: str) -> str:
    """Turn a title into a stable, id-safe slug (``HIPAA Privacy`` → ``hipaa-privacy``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:64] or "requirement"


def assignment_workflow_id(person: str, requirement: str, cycle: int) -> str:
    """The business key of a training assignment: one workflow per person, requirement and cycle."""
    return f"assignment/{person}/{requirement}/{cycle}"


def certification_workflow_id(person: str, certification: str) -> str:
    """The business key of a held certification: one workflow per person and certification.

    Every cycle (issue → renewal) runs under this id; each renewal continues as new.
    """
    return f"certification/{person}/{certification}"


def bulk_workflow_id(bulk_id: str) -> str:
    """The business-key workflow id of a bulk job."""
    return f"bulk/{bulk_id}"


def directory_change_workflow_id(person: str, change_id: str) -> str:
    """The business key of one directory change's automation: the person and the change id."""
    return f"directory-change/{person}/{change_id}"
