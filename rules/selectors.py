"""Who a bulk job selects from the directory: selector semantics as a pure function.

Criteria are ANDed; the values inside one criterion are ORed; ``manager`` matches everyone who
reports to that person, transitively. The caller reads the directory (active people only) and
passes its rows as plain data.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import NamedTuple


class DirectoryRow(NamedTuple):
    """One directory entry as a selector sees it."""

    id: int
    external_id: str
    roles: list[str] | None
    department: str | None
    location: str | None
    manager_id: int | None


#: A row as a plain tuple, in :class:`DirectoryRow`'s field order (what a SELECT returns).
RowTuple = tuple[int, str, list[str] | None, str | None, str | None, int | None]


class UnknownManager(ValueError):
    """``manager`` names nobody among the rows (not an active person)."""


def select_people(
    rows: Iterable[
        DirectoryRow | tuple[int, str, list[str] | None, str | None, str | None, int | None]
    ],
    *,
    roles: Collection[str] | None = None,
    departments: Collection[str] | None = None,
    locations: Collection[str] | None = None,
    manager: str | None = None,
    people: Collection[str] | None = None,
) -> list[str]:
    """The external ids of the rows every given criterion matches, sorted.

    Args:
        rows: The active people (the whole directory, so the manager's team can be walked).
        roles: Has any of these roles (None: any).
        departments: In one of these departments (None: any).
        locations: At one of these locations (None: any).
        manager: Reports, directly or not, to this external id (None: anyone).
        people: One of these external ids (None: anyone).

    Raises:
        UnknownManager: ``manager`` is not among the rows.
    """
    entries = [DirectoryRow(*row) for row in rows]
    team: set[int] | None = None
    if manager is not None:
        by_external = {row.external_id: row.id for row in entries}
        if manager not in by_external:
            raise UnknownManager(f"manager {manager!r} is not an active person")
        reports: dict[int, list[int]] = {}
        for row in entries:
            if row.manager_id is not None:
                reports.setdefault(row.manager_id, []).append(row.id)
        # Breadth first; ``team`` doubles as the visited set, so a loop in the links ends.
        team, frontier = set(), [by_external[manager]]
        while frontier:
            frontier = [r for m in frontier for r in reports.get(m, []) if r not in team]
            team.update(frontier)
    wanted_roles = set(roles) if roles is not None else None
    wanted_departments = set(departments) if departments is not None else None
    wanted_locations = set(locations) if locations is not None else None
    wanted_people = set(people) if people is not None else None
    return sorted(
        row.external_id
        for row in entries
        if (wanted_roles is None or wanted_roles.intersection(row.roles or ()))
        and (wanted_departments is None or row.department in wanted_departments)
        and (wanted_locations is None or row.location in wanted_locations)
        and (team is None or row.id in team)
        and (wanted_people is None or row.external_id in wanted_people)
    )
