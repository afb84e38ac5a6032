"""Edit one track of a pack's files in place: reorder its courses, (de)activate it.

A pack is YAML its authors comment and review, so an edit made through the API or CLI changes
only the characters it must: the ``order:`` values of the track's courses, or its ``active:``
value (added after its ``id`` when the track has none). Comments, layout and every other line
stay as they were, so ``duly rules`` diffs of the new version show exactly the edit. The caller
loads the edited files (``rules.loader.pack_from_files``), which checks the result like any pack
(milestones still reachable in the new order, ...), and deploys it as a new version.

Pure: files in, files out (PyYAML only parses; it never writes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import yaml

__all__ = ["TrackEditError", "TrackNotFound", "reorder_courses", "set_active"]


class TrackEditError(ValueError):
    """The edit cannot be made (the message says why)."""


class TrackNotFound(TrackEditError):
    """No file of the pack holds a track with this id."""


@dataclass(frozen=True)
class _Located:
    name: str
    text: str
    track: yaml.MappingNode


def _value(node: yaml.MappingNode, key: str) -> yaml.Node | None:
    return next(
        (v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None
    )


def _key(node: yaml.MappingNode, key: str) -> yaml.Node | None:
    return next(
        (k for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None
    )


def _locate(files: Mapping[str, str], track_id: str) -> _Located:
    for name in sorted(files):
        if not name.endswith((".yaml", ".yml")):
            continue
        text = files[name]
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            continue  # the loader reports it; a pack that loaded has none
        if not isinstance(root, yaml.MappingNode):
            continue
        section = _value(root, "tracks")
        if not isinstance(section, yaml.MappingNode):
            continue
        listed = _value(section, "tracks")
        if not isinstance(listed, yaml.SequenceNode):
            continue
        for item in listed.value:
            if not isinstance(item, yaml.MappingNode):
                continue
            ident = _value(item, "id")
            if isinstance(ident, yaml.ScalarNode) and ident.value == track_id:
                return _Located(name, text, item)
    raise TrackNotFound(f"no track {track_id!r} in the pack's tracks section")


def _patched(text: str, edits: Sequence[tuple[int, int, str]]) -> str:
    """``text`` with each ``(start, end, replacement)`` applied (non-overlapping)."""
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def reorder_courses(
    files: Mapping[str, str], track_id: str, courses: Sequence[str]
) -> dict[str, str]:
    """The pack's files with the track's courses in the order given (``order`` 1, 2, ...).

    Args:
        files: The pack's files (name -> text).
        track_id: The track.
        courses: Every course's requirement id, each once, in the new order.

    Returns:
        The files, the track's file edited.

    Raises:
        TrackNotFound: No such track.
        TrackEditError: ``courses`` is not exactly the track's courses.
    """
    found = _locate(files, track_id)
    listed = _value(found.track, "courses")
    if not isinstance(listed, yaml.SequenceNode):
        raise TrackEditError(f"track {track_id!r} has no list of courses")
    places: dict[str, yaml.ScalarNode] = {}
    for course in listed.value:
        requirement = (
            _value(course, "requirement") if isinstance(course, yaml.MappingNode) else None
        )
        order = _value(course, "order") if isinstance(course, yaml.MappingNode) else None
        if not isinstance(requirement, yaml.ScalarNode) or not isinstance(order, yaml.ScalarNode):
            raise TrackEditError(f"track {track_id!r}: every course needs a requirement and order")
        places[requirement.value] = order
    given = list(courses)
    missing = [c for c in places if c not in given]
    unknown = [c for c in given if c not in places]
    twice = sorted({c for c in given if given.count(c) > 1})
    if missing or unknown or twice:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unknown:
            problems.append(f"not courses of the track: {', '.join(unknown)}")
        if twice:
            problems.append(f"listed twice: {', '.join(twice)}")
        raise TrackEditError(
            f"list every course of track {track_id!r} once, in the new order ("
            + "; ".join(problems)
            + f"); its courses: {', '.join(places)}"
        )
    edits = [
        (places[c].start_mark.index, places[c].end_mark.index, str(n))
        for n, c in enumerate(given, start=1)
    ]
    return {**files, found.name: _patched(found.text, edits)}


def set_active(files: Mapping[str, str], track_id: str, active: bool) -> dict[str, str]:
    """The pack's files with the track's ``active`` set (added after its ``id`` when absent).

    Raises:
        TrackNotFound: No such track.
    """
    found = _locate(files, track_id)
    word = "true" if active else "false"
    current = _value(found.track, "active")
    if isinstance(current, yaml.ScalarNode):
        edit = (current.start_mark.index, current.end_mark.index, word)
    else:
        ident = _value(found.track, "id")
        key = _key(found.track, "id")
        assert ident is not None and key is not None  # _locate matched on it
        at = ident.end_mark.index
        if found.track.flow_style:
            edit = (at, at, f", active: {word}")
        else:
            edit = (at, at, "\n" + " " * key.start_mark.column + f"active: {word}")
    return {**files, found.name: _patched(found.text, [edit])}
