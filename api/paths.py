"""Path convertors for ids that contain slashes (workflow ids are business keys).

``GET /assignments/{assignment_id:path}`` would also match ``/assignments/…/complete``: an
``OPTIONS`` or ``GET`` on an action then reached the catch-all and answered ``Allow: GET``. These
convertors take any id except one that ends in an action of the same family, so an action path
only ever matches its action's route.

Importing this module registers ``assignment_path`` and ``certification_path`` with Starlette.
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor

#: The ``POST /assignments/{id}/<action>`` routes.
ASSIGNMENT_ACTIONS = ("complete", "acknowledge", "start", "extend", "exempt", "cancel", "restart")
#: The ``POST /certifications/{id}/<action>`` routes.
CERTIFICATION_ACTIONS = ("renew", "ce-credits", "suspend", "reinstate", "revoke", "restart")


def _id_not_ending_in(actions: tuple[str, ...]) -> str:
    # Every character is taken unless what follows it is "/<action>" and the end.
    return rf"(?:(?!/(?:{'|'.join(sorted(actions))})$).)+"


class IdPathConvertor(Convertor[str]):
    """A ``path`` (slashes allowed) that does not end in ``/<action>`` (set ``regex``)."""

    def convert(self, value: str) -> str:
        """The id as matched."""
        return value

    def to_string(self, value: str) -> str:
        """The id as written into a URL."""
        return value


class AssignmentIdConvertor(IdPathConvertor):
    """An assignment's workflow id in a path."""

    regex = _id_not_ending_in(ASSIGNMENT_ACTIONS)


class CertificationIdConvertor(IdPathConvertor):
    """A certification's workflow id in a path."""

    regex = _id_not_ending_in(CERTIFICATION_ACTIONS)


register_url_convertor("assignment_path", AssignmentIdConvertor())
register_url_convertor("certification_path", CertificationIdConvertor())
