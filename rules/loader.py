"""Load a rules pack directory into a cross-checked :class:`rules.model.Pack`.

A pack is every ``*.yaml`` / ``*.yml`` file directly in a directory plus, optionally, message
templates below ``templates/``. Loading reports *every* problem it can find at once, each with
``file:line:column`` and a message written for the HR author (what is wrong, the offending value
and how to fix it), as a :class:`PackInvalid` exception. Bad input never raises anything else.

YAML is parsed with :class:`yaml.SafeLoader` into a node tree first, so every key and value keeps
its position; pydantic errors are mapped back to those positions. Anchors and aliases are refused
(they are almost surely a mistake in an HR file and enable "billion laughs" expansion).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tempfile
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import jinja2
import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from rules.mentorship_model import MentorshipPolicy
from rules.model import BUILTIN_STATUSES, Pack, PackFile
from rules.tracks_model import TracksSection

__all__ = ["MAX_FILE_BYTES", "PackInvalid", "PackIssue", "content_hash", "load_pack"]

#: Largest YAML or template file a pack may hold.
MAX_FILE_BYTES = 1024 * 1024
_MAX_DEPTH = 50
_MAX_ISSUES_PER_FILE = 100
_SECTIONS = tuple(PackFile.model_fields)
_ID_PATTERN = "^[a-z0-9][a-z0-9_.-]*$"
_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null")}
_SCALAR_TAGS.add("tag:yaml.org,2002:timestamp")
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_AT_CHARACTER = re.compile(r" \[at character (\d+)\]$")
_FACT_ERROR = re.compile(r"^(unknown fact|fact) (['\"])(.*?)\2")
_ITEM_LABELS = ("id", "name", "at", "requirement")


@dataclass(frozen=True)
class PackIssue:
    """One problem in a pack, at a position in one of its files.

    Attributes:
        file: Path relative to the pack directory (the directory itself for directory problems).
        line: 1-based line.
        column: 1-based column.
        message: What is wrong, the offending value and how to fix it.
    """

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class PackInvalid(Exception):
    """A pack that cannot be loaded; ``issues`` lists every problem found.

    Attributes:
        issues: The problems, sorted by file, line and column.
    """

    def __init__(self, issues: list[PackIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.file, i.line, i.column))
        super().__init__("\n".join(str(issue) for issue in self.issues))


def content_hash(files: dict[str, bytes]) -> str:
    """SHA-256 over a pack's files, independent of their order.

    Every (relative path, bytes) pair is framed with its lengths, so no two different sets of
    files can produce the same input to the hash.

    Args:
        files: Relative path → file content.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256(b"duly-rules-pack-v1\0")
    digest.update(len(files).to_bytes(8, "big"))
    for path in sorted(files):
        name = path.encode("utf-8")
        data = files[path]
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def load_pack(directory: Path | str) -> Pack:
    """Load, validate and cross-check the rules pack in ``directory``.

    Args:
        directory: The pack directory.

    Returns:
        The pack, with every YAML file merged in name order.

    Raises:
        PackInvalid: Anything is wrong; ``issues`` lists every problem found.
    """
    root = Path(directory)
    issues: list[PackIssue] = []
    where = str(directory)
    if not root.exists():
        raise PackInvalid([PackIssue(where, 1, 1, "the pack directory does not exist")])
    if not root.is_dir():
        raise PackInvalid(
            [PackIssue(where, 1, 1, "this is a file; a rules pack is a directory of YAML files")]
        )
    yaml_names, template_names = _discover(root, where, issues)
    if not yaml_names and not issues:
        message = (
            "no YAML file (*.yaml or *.yml) in the pack directory; a pack needs at least one,"
            " with a 'pack' section and 'status_rules'"
        )
        raise PackInvalid([PackIssue(where, 1, 1, message)])
    raw: dict[str, bytes] = {}
    texts: dict[str, str] = {}
    checked: list[_Checked] = []
    yaml_failed = False
    for name in [*yaml_names, *template_names]:
        before = len(issues)
        content = _read(root / name, name, issues)
        text = None if content is None else _decode(name, content, issues)
        if content is not None and text is not None:
            raw[name], texts[name] = content, text
            result = _check_file(name, text, issues)
            if result is not None:
                checked.append(result)
        yaml_failed |= len(issues) > before and not name.startswith("templates/")
    _cross_check(checked, yaml_names[0] if yaml_names else where, issues, complete=not yaml_failed)
    if issues:
        raise PackInvalid(_limited(issues))
    info = next(c.data.pack for c in checked if c.data.pack is not None)
    templates = {n.removeprefix("templates/"): texts[n] for n in template_names}
    pack = Pack(
        info=info,
        requirements=[r for c in checked for r in c.data.requirements],
        escalation_policies=[p for c in checked for p in c.data.escalation_policies],
        status_rules=[r for c in checked for r in c.data.status_rules],
        tests=[t for c in checked for t in c.data.tests],
        mentorship=next(
            (c.data.mentorship for c in checked if c.data.mentorship is not None),
            MentorshipPolicy(),
        ),
        tracks=next((c.data.tracks for c in checked if c.data.tracks is not None), TracksSection()),
        programs=[p for c in checked for p in c.data.programs],
        templates=templates,
        content_hash=content_hash(raw),
        files=texts,
    )
    # Pack strips whitespace from every str (str_strip_whitespace), templates and files included;
    # keep the texts exactly as read so they match content_hash.
    return pack.model_copy(update={"templates": templates, "files": texts})


_NAME = re.compile(r"^(templates/([A-Za-z0-9_.-]+/)*)?[A-Za-z0-9_.-]+$")


def pack_from_files(files: Mapping[str, str]) -> Pack:
    """Load a pack from its files (stored, or uploaded through the API) exactly as from a directory.

    Args:
        files: Relative file name -> text, as :attr:`rules.model.Pack.files` holds them.

    Raises:
        PackInvalid: A file name that is not a plain pack file name, or anything
            :func:`load_pack` finds.
    """
    bad = [
        PackIssue(
            name[:80],
            1,
            1,
            "file names are plain names like requirements.yaml or templates/<dir>/<name>.j2"
            " (no '..', '/' at the start or backslashes)",
        )
        for name in files
        # "." names the directory itself (writing it was an IsADirectoryError, a 500).
        if not _NAME.match(name) or {".", ".."} & set(name.split("/"))
    ]
    if bad:
        raise PackInvalid(bad)
    # The loader reads a directory: write the texts to a private scratch one (no shared state).
    with tempfile.TemporaryDirectory(prefix="duly-pack-") as tmp:
        root = Path(tmp)
        for name, text in files.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        try:
            return load_pack(root)
        except PackInvalid as invalid:
            # Directory-level issues name the directory: the server's temporary path, an
            # internal no client should see. Name it "(pack)" instead.
            raise PackInvalid(
                [
                    PackIssue(
                        issue.file.replace(tmp, "(pack)"),
                        issue.line,
                        issue.column,
                        issue.message.replace(tmp, "(pack)"),
                    )
                    for issue in invalid.issues
                ]
            ) from None


# --------------------------------------------------------------------------------------------
# Files


def _check_file(name: str, text: str, issues: list[PackIssue]) -> _Checked | None:
    """Check one file; a YAML file that validated is returned for the cross-file checks."""
    try:
        if name.startswith("templates/"):
            _check_template(name, text, issues)
            return None
        return _check_yaml(name, text, issues)
    except Exception as error:  # noqa: BLE001 - one file's surprise must not hide the others
        problem = f"{type(error).__name__}: {_short(error, 200)}"
        message = f"this file could not be checked ({problem}); please report this to the Duly team"
        issues.append(PackIssue(name, 1, 1, message))
        return None


def _limited(issues: list[PackIssue]) -> list[PackIssue]:
    """At most :data:`_MAX_ISSUES_PER_FILE` issues per file, then one saying there are more."""
    by_file: dict[str, list[PackIssue]] = {}
    for issue in issues:
        by_file.setdefault(issue.file, []).append(issue)
    out: list[PackIssue] = []
    for mine in by_file.values():
        mine.sort(key=lambda i: (i.line, i.column))
        if len(mine) > _MAX_ISSUES_PER_FILE:
            rest = mine[_MAX_ISSUES_PER_FILE]
            more = f"more problems from here on; fix the {_MAX_ISSUES_PER_FILE} above first"
            mine[_MAX_ISSUES_PER_FILE:] = [PackIssue(rest.file, rest.line, rest.column, more)]
        out += mine
    return out


def _discover(root: Path, where: str, issues: list[PackIssue]) -> tuple[list[str], list[str]]:
    """The pack's YAML file names and ``templates/...`` paths, each sorted."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as error:
        issues.append(PackIssue(where, 1, 1, f"the pack directory cannot be read: {error}"))
        return [], []
    yaml_names = [
        e.name
        for e in entries
        if not e.name.startswith(".") and e.name.lower().endswith((".yaml", ".yml")) and e.is_file()
    ]
    templates: list[str] = []
    base = root / "templates"

    def unreadable(error: OSError) -> None:
        rel = Path(error.filename or base).relative_to(root).as_posix()
        issues.append(PackIssue(rel, 1, 1, f"this folder cannot be read: {error.strerror}"))

    if base.is_dir():
        for folder, dirs, files in os.walk(base, onerror=unreadable):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel = Path(folder).relative_to(root).as_posix()
            templates += [f"{rel}/{f}" for f in sorted(files) if not f.startswith(".")]
    return yaml_names, sorted(templates)


def _read(path: Path, name: str, issues: list[PackIssue]) -> bytes | None:
    try:
        with path.open("rb") as handle:
            content = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        issues.append(PackIssue(name, 1, 1, f"the file cannot be read: {error.strerror or error}"))
        return None
    if len(content) > MAX_FILE_BYTES:
        message = "the file is larger than 1 MiB, the limit; split it into several files"
        issues.append(PackIssue(name, 1, 1, message))
        return None
    return content


def _decode(name: str, content: bytes, issues: list[PackIssue]) -> str | None:
    try:
        return content.decode("utf-8-sig" if name.lower().endswith(("yaml", "yml")) else "utf-8")
    except UnicodeDecodeError as error:
        before = content[: error.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        message = f"the file is not valid UTF-8 (byte 0x{content[error.start]:02x}); save as UTF-8"
        issues.append(PackIssue(name, line, column, message))
        return None


def _check_template(name: str, text: str, issues: list[PackIssue]) -> None:
    if not name.endswith(".j2"):
        example = "templates/training/reminder.email.html.j2"
        message = f"a template file name must end in .j2, such as {example}; rename or remove it"
        issues.append(PackIssue(name, 1, 1, message))
        return
    try:
        jinja2.Environment(autoescape=True).parse(text)
    except jinja2.TemplateSyntaxError as error:
        problem = " ".join(str(error.message or "invalid syntax").split()).rstrip(".")
        hint = "check that every {{ }}, {% %} and {% end... %} tag is closed"
        issues.append(
            PackIssue(name, max(error.lineno, 1), 1, f"template syntax error: {problem}; {hint}")
        )


# --------------------------------------------------------------------------------------------
# YAML


class _Refused(yaml.MarkedYAMLError):
    """A YAML construct the loader refuses (anchors, aliases, deep nesting)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses anchors/aliases and limits nesting while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.check_event()  # makes current_event the next event, without consuming it
        event: Any = self.current_event
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(
                problem=f"YAML aliases (*{event.anchor}) are not allowed in a rules pack; write"
                " the value out in full",
                problem_mark=mark,
            )
        if getattr(event, "anchor", None) is not None:
            raise _Refused(
                problem=f"YAML anchors (&{getattr(event, 'anchor', '')}) are not allowed in a"
                " rules pack; remove the anchor and write values out in full",
                problem_mark=mark,
            )
        self.depth += 1
        try:
            if self.depth > _MAX_DEPTH:
                raise _Refused(
                    problem=f"the YAML is nested more than {_MAX_DEPTH} levels deep",
                    problem_mark=mark,
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_YAML_HINTS = (
    ("'\\t'", "YAML indentation must use spaces, not tabs"),
    (
        "mapping values are not allowed",
        "a value containing ': ' must be quoted, or a line is indented wrongly",
    ),
    (
        "could not find expected ':'",
        "each line of a mapping needs 'key: value'; check the indentation and quotes",
    ),
    ("<block end>", "check the indentation: entries at the same level must line up"),
    ("another document", "a file holds one YAML document; remove the extra '---'"),
)


def _syntax_issue(name: str, text: str, error: yaml.YAMLError) -> PackIssue:
    if isinstance(error, yaml.reader.ReaderError):
        before = text[: error.position]
        line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        code = ord(error.character) if isinstance(error.character, str) else error.character
        message = f"the file contains a control character (U+{code:04X}) YAML does not allow"
        return PackIssue(name, line, column, f"{message}; remove it")
    if not isinstance(error, yaml.MarkedYAMLError):
        return PackIssue(name, 1, 1, f"the file is not valid YAML: {_short(error, 200)}")
    problem = error.problem or "invalid YAML"
    mark = error.problem_mark or error.context_mark
    unclosed = "end of stream" in problem or "<stream end>" in problem
    if unclosed and error.context_mark is not None:
        mark = error.context_mark  # point at the quote/bracket that is never closed
    if isinstance(error, _Refused):
        message = problem
    else:
        hint = "a quote or bracket opened here is never closed" if unclosed else None
        hint = hint or next((h for key, h in _YAML_HINTS if key in problem), None)
        hint = hint or "check the indentation, colons and quotes near here"
        if error.context and error.context.startswith("expected"):
            problem = f"{error.context}, {problem}"
        elif error.context:
            problem = f"{problem} ({error.context})"
        message = f"YAML syntax error: {problem}; {hint}"
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return PackIssue(name, line, column, message)


@dataclass
class _Checked:
    """A YAML file that validated on its own."""

    name: str
    root: yaml.Node
    data: PackFile


def _check_yaml(name: str, text: str, issues: list[PackIssue]) -> _Checked | None:
    """Parse and validate one YAML file; None when it is empty or has problems."""
    try:
        loader = _Loader(text)  # checks for characters YAML does not allow
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        issues.append(_syntax_issue(name, text, error))
        return None
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag.endswith(":null")):
        return None
    if not isinstance(root, yaml.MappingNode):
        sections = ", ".join(_SECTIONS)
        message = f"the top level of the file must be a mapping of sections ({sections})"
        issues.append(_at(name, root, f"{message}, such as 'requirements:' followed by a list"))
        return None
    before = len(issues)
    data = _to_python(root, name, issues)
    reported = {(i.line, i.column) for i in issues[before:]}
    try:
        return _Checked(name, root, PackFile.model_validate(data))
    except ValidationError as error:
        for detail in error.errors()[: _MAX_ISSUES_PER_FILE + 1]:  # _limited drops the rest
            issue = _pydantic_issue(name, text, root, detail)
            if (issue.line, issue.column) not in reported:  # not a cascade of a YAML problem
                issues.append(issue)
        return None


def _to_python(node: yaml.Node, name: str, issues: list[PackIssue]) -> Any:
    """Plain data from a node tree; mapping keys are their text. Reports duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        if node.tag != _MAP_TAG:
            return _bad_tag(node, name, issues)
        out: dict[str, Any] = {}
        first: dict[str, yaml.Node] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                issues.append(_at(name, key, "a key must be a plain name"))
                continue
            text = str(key.value)
            if text in first:
                line = _position(first[text])[0]
                message = f"duplicate key '{text}' (first at line {line}); remove or rename one"
                issues.append(_at(name, key, message))
                continue
            first[text] = key
            out[text] = _to_python(value, name, issues)
        return out
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _SEQ_TAG:
            return _bad_tag(node, name, issues)
        return [_to_python(item, name, issues) for item in node.value]
    if node.tag not in _SCALAR_TAGS:
        return _bad_tag(node, name, issues)
    return yaml.constructor.SafeConstructor().construct_object(node)


def _bad_tag(node: yaml.Node, name: str, issues: list[PackIssue]) -> None:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    issues.append(_at(name, node, f"YAML tags such as {tag} are not allowed; remove it"))


def _position(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _at(name: str, node: yaml.Node, message: str) -> PackIssue:
    return PackIssue(name, *_position(node), message)


# --------------------------------------------------------------------------------------------
# Mapping pydantic errors back to the YAML


@dataclass
class _Found:
    """Where a pydantic ``loc`` ends in the node tree."""

    node: yaml.Node  # the deepest node that exists
    key: yaml.Node | None  # its key, when it is a mapping value
    depth: int  # how many loc parts were found
    words: str  # the found part of the loc, for people


def _find(root: yaml.Node, loc: tuple[int | str, ...]) -> _Found:
    node, key, words = root, None, ""
    for depth, part in enumerate(loc):
        if part == "[key]" and key is not None:
            return _Found(key, None, depth + 1, words + " (the key)")
        if isinstance(part, int) and isinstance(node, yaml.SequenceNode):
            if not 0 <= part < len(node.value):
                return _Found(node, key, depth, words)
            node, key = node.value[part], None
            words += f"[{part}]" + _label(node)
            continue
        if isinstance(part, str) and isinstance(node, yaml.MappingNode):
            pair = next((p for p in node.value if getattr(p[0], "value", None) == part), None)
            if pair is None:
                return _Found(node, key, depth, words)
            key, node = pair
            words += f".{part}" if words else part
            continue
        return _Found(node, key, depth, words)
    return _Found(node, key, len(loc), words)


def _label(node: yaml.Node) -> str:
    if not isinstance(node, yaml.MappingNode):
        return ""
    for key, value in node.value:
        if key.value in _ITEM_LABELS and isinstance(value, yaml.ScalarNode) and value.value:
            return f" ({key.value}: {_short(value.value, 30)})"
    return ""


def _owner(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc``, if any."""
    current: Any = PackFile
    for part in loc:
        current = _unwrap(current, part)
        if current is None:
            return None
    current = _unwrap(current, None)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any, part: int | str | None) -> Any:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        models = [a for a in get_args(annotation) if a is not type(None)]
        return _unwrap(models[0], part) if len(models) == 1 else None
    if part is None:
        return annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for field_name, field in annotation.model_fields.items():
            if part in (field.alias, field_name):
                return field.annotation
        return None
    if origin is list and isinstance(part, int):
        return get_args(annotation)[0]
    if origin is dict and isinstance(part, str):
        return get_args(annotation)[1]
    return None


def _allowed(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _suggest(word: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(value: Any) -> str:
    if value is None:
        return "nothing (the value is empty)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return repr(_short(value))
    if isinstance(value, bool):
        return str(value).lower()
    return _short(repr(value))


_TYPE_MESSAGES = {
    "int_parsing": "must be a whole number, such as 30",
    "int_type": "must be a whole number, such as 30",
    "int_from_float": "must be a whole number, such as 30",
    "float_parsing": "must be a number, such as 1.5",
    "float_type": "must be a number, such as 1.5",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "list_type": "must be a list: one '- item' per line, or [a, b]",
    "dict_type": "must be a mapping of 'key: value' lines",
    "model_type": "must be a mapping of 'key: value' lines",
    "model_attributes_type": "must be a mapping of 'key: value' lines",
    "string_too_short": "must not be empty",
}


def _explain(detail: ErrorDetails) -> str:
    """Pydantic's message rewritten for the HR author (without the location)."""
    kind, loc, ctx = detail["type"], detail["loc"], detail.get("ctx") or {}
    if kind == "missing":
        return f"missing required key '{loc[-1]}'"
    if kind == "extra_forbidden":
        key = str(loc[-1])
        owner = _owner(loc[:-1])
        allowed = _allowed(owner) if owner is not None else []
        what = "section" if len(loc) == 1 else "key"
        listed = f" allowed {what}s: {', '.join(allowed)}" if allowed else ""
        hint = _suggest(key, allowed) + ";"
        return f"unknown {what} '{_short(key)}'{hint}{listed}"
    if kind == "enum":
        message = f"must be one of {ctx.get('expected', '')}"
    elif kind == "string_pattern_mismatch" and ctx.get("pattern") == _ID_PATTERN:
        message = (
            "must be an identifier: lowercase letters, digits, '-', '_' or '.', starting with a"
            " letter or digit"
        )
    elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        words = {"ge": "at least", "le": "at most", "gt": "more than", "lt": "less than"}
        bound = next((f"{words[k]} {v}" for k, v in ctx.items() if k in words), "in range")
        message = f"must be {bound}"
    elif kind == "too_short":
        message = f"needs at least {ctx.get('min_length', 1)} item(s)"
    elif kind in ("string_too_long", "too_long"):
        unit = "characters" if kind == "string_too_long" else "items"
        message = f"must be at most {ctx.get('max_length')} {unit}"
    elif kind == "value_error":
        message = detail["msg"].removeprefix("Value error, ")
        if _AT_CHARACTER.search(message):
            return message  # a condition: the caller turns the bracket into a column
    else:
        message = _TYPE_MESSAGES.get(kind, detail["msg"])
    value = detail.get("input")
    if isinstance(value, (dict, list)) and kind in ("value_error", "too_short"):
        return message  # a whole section: the message says what is missing
    shown = _shown(value)
    if kind == "string_type" and value is not None and not isinstance(value, (dict, list)):
        message += " (put it in quotes: YAML reads this value as something else)"
    return message if shown in message else f"{message}; found {shown}"


def _pydantic_issue(name: str, text: str, root: yaml.Node, detail: ErrorDetails) -> PackIssue:
    loc = detail["loc"]
    found = _find(root, loc)
    node = found.node
    if detail["type"] == "extra_forbidden" and found.key is not None:
        node = found.key
    elif (
        isinstance(node, yaml.ScalarNode)
        and node.tag.endswith(":null")
        and node.value in ("", "~")
        and found.key is not None
    ):
        node = found.key  # an empty value: point at its key
    line, column = _position(node)
    words = found.words or "top level"
    if found.depth < len(loc) and detail["type"] not in ("missing", "extra_forbidden"):
        words += "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[found.depth :])
    message = _explain(detail)
    at_char = _AT_CHARACTER.search(message)
    if at_char and isinstance(node, yaml.ScalarNode) and found.depth == len(loc):
        message = message[: at_char.start()]
        offset = _scalar_column(text, node, int(at_char.group(1)) - 1)
        if offset is None:
            message += f" (at character {at_char.group(1)} of the condition)"
        else:
            column = offset + 1
    fact = _FACT_ERROR.match(message) if loc[-1:] == ("facts",) else None
    if fact and isinstance(node, yaml.MappingNode):
        pair = next((p for p in node.value if p[0].value == fact.group(3)), None)
        if pair is not None:
            line, column = _position(pair[0] if fact.group(1) == "unknown fact" else pair[1])
            words += f".{fact.group(3)}"
    return PackIssue(name, line, column, f"{words}: {message}")


def _scalar_column(text: str, node: yaml.ScalarNode, offset: int) -> int | None:
    """0-based column of character ``offset`` of a single-line scalar's value, if known."""
    start, end = node.start_mark, node.end_mark
    if start.line != end.line or node.style not in (None, "'", '"'):
        return None
    if node.style is None:
        return start.column + offset
    source = text[start.index + 1 : end.index]
    position = count = 0
    while count < offset and position < len(source):
        if node.style == "'":
            step = 2 if source.startswith("''", position) else 1
        elif source[position] == "\\" and position + 1 < len(source):
            step = {"x": 4, "u": 6, "U": 10}.get(source[position + 1], 2)
        else:
            step = 1
        position += step
        count += 1
    return start.column + 1 + position


# --------------------------------------------------------------------------------------------
# Cross-file checks


_UNIQUE = (
    ("requirements", "id", "requirement id"),
    ("escalation_policies", "id", "escalation policy id"),
    ("status_rules", "name", "status rule name"),
    ("tests", "name", "test name"),
    ("programs", "id", "program id"),
)


def _locate(item: _Checked, loc: tuple[int | str, ...]) -> tuple[int, int, str]:
    """Line, column and words for ``loc`` in a checked file (a section: its name)."""
    found = _find(item.root, loc)
    node = found.key if len(loc) == 1 and found.key is not None else found.node
    return *_position(node), found.words


def _cross_check(
    checked: list[_Checked], first_file: str, issues: list[PackIssue], *, complete: bool
) -> None:
    """Checks across files. Without ``complete`` only those that cannot cascade run."""

    def add(item: _Checked, loc: tuple[int | str, ...], message: str) -> None:
        line, column, words = _locate(item, loc)
        issues.append(PackIssue(item.name, line, column, f"{words}: {message}"))

    def where(item: _Checked, loc: tuple[int | str, ...]) -> str:
        return f"{item.name}:{_locate(item, loc)[0]}"

    def unique(what: str, entries: list[tuple[Any, _Checked, tuple[int | str, ...]]]) -> None:
        seen: dict[Any, tuple[_Checked, tuple[int | str, ...]]] = {}
        for value, item, loc in entries:
            if value in seen:
                first = where(*seen[value])
                add(item, loc, f"duplicate {what} '{value}' (first at {first}); make it unique")
            else:
                seen[value] = (item, loc)

    for section, key, what in _UNIQUE:
        unique(
            what,
            [
                (getattr(entry, key), c, (section, i, key))
                for c in checked
                for i, entry in enumerate(getattr(c.data, section))
            ],
        )
    packs = [(c, c.data.pack) for c in checked if c.data.pack is not None]
    for extra, _ in packs[1:]:
        first = where(packs[0][0], ("pack",))
        add(extra, ("pack",), f"a second 'pack' section (the first is at {first}); keep one")
    mentorships = [c for c in checked if c.data.mentorship is not None]
    for extra in mentorships[1:]:
        first = where(mentorships[0], ("mentorship",))
        message = f"a second 'mentorship' section (the first is at {first}); keep one"
        add(extra, ("mentorship",), message)
    track_sections = [c for c in checked if c.data.tracks is not None]
    for extra in track_sections[1:]:
        first = where(track_sections[0], ("tracks",))
        add(extra, ("tracks",), f"a second 'tracks' section (the first is at {first}); keep one")
    if packs:
        item, info = packs[0]
        unique("status", [(s, item, ("pack", "statuses", i)) for i, s in enumerate(info.statuses)])
    if not complete:
        return  # the rest would only cascade from the problems already reported
    if not packs:
        message = "the pack has no 'pack' section; add one, such as 'pack: {name: my-clinic}'"
        issues.append(PackIssue(first_file, 1, 1, message))
        return
    item, info = packs[0]
    statuses = list(BUILTIN_STATUSES) + [s for s in info.statuses if s not in BUILTIN_STATUSES]
    rule_names = [r.name for c in checked for r in c.data.status_rules]
    policies = [p.id for c in checked for p in c.data.escalation_policies]
    if not rule_names:
        line, column, _ = _locate(item, ("pack",))
        message = (
            "the pack has no status rules; add a 'status_rules' section ending with a catch-all"
            " rule such as {name: default, when: 'true', status: compliant}"
        )
        issues.append(PackIssue(item.name, line, column, message))
    for c in checked:
        for i, r in enumerate(c.data.requirements):
            if r.escalation is not None and r.escalation not in policies:
                known = ", ".join(policies) or "none are defined"
                hint = _suggest(r.escalation, policies)
                message = (
                    f"unknown escalation policy '{r.escalation}'{hint}; known policies: {known}"
                )
                add(c, ("requirements", i, "escalation"), message)
        for i, s in enumerate(c.data.status_rules):
            if s.status not in statuses:
                add(c, ("status_rules", i, "status"), _unknown_status(s.status, statuses))
        for i, t in enumerate(c.data.tests):
            if t.expect.status not in statuses:
                add(c, ("tests", i, "expect", "status"), _unknown_status(t.expect.status, statuses))
            if t.expect.rule is not None and t.expect.rule not in rule_names:
                hint = _suggest(t.expect.rule, rule_names)
                names = ", ".join(rule_names)
                message = f"no status rule is named '{t.expect.rule}'{hint}; rules: {names}"
                add(c, ("tests", i, "expect", "rule"), message)
        if c.data.tracks is not None:
            gates = {r.id: r.passing_score for d in checked for r in d.data.requirements}
            for loc, message in c.data.tracks.problems(gates):
                add(c, ("tracks", *loc), message)
    kinds = {r.id: r.kind.value for c in checked for r in c.data.requirements}
    for c in checked:
        for i, program in enumerate(c.data.programs):
            for loc, ids in (
                (
                    ("graduation", "required_certifications"),
                    program.graduation.required_certifications,
                ),
                (("awards",), program.awards),
            ):
                for j, requirement_id in enumerate(ids):
                    problem = _not_a_certification(requirement_id, kinds)
                    if problem:
                        add(c, ("programs", i, *loc, j), problem)
            for j, requirement_id in enumerate(program.awards):
                if requirement_id in program.graduation.required_certifications:
                    message = (
                        f"'{requirement_id}' is both required to graduate and awarded on"
                        " graduation, so nobody could graduate; remove it from one list"
                    )
                    add(c, ("programs", i, "awards", j), message)


def _not_a_certification(requirement_id: str, kinds: dict[str, str]) -> str | None:
    """Why ``requirement_id`` cannot be a program's certification (None: it can)."""
    certifications = [r for r, kind in kinds.items() if kind == "certification"]
    known = ", ".join(certifications) or "none are defined"
    if requirement_id not in kinds:
        hint = _suggest(requirement_id, certifications)
        return (
            f"unknown requirement '{requirement_id}'{hint}; name a requirement of kind"
            f" certification (certifications in this pack: {known})"
        )
    if kinds[requirement_id] != "certification":
        return (
            f"requirement '{requirement_id}' is a {kinds[requirement_id]}, not a certification;"
            f" name a requirement of kind certification (certifications in this pack: {known})"
        )
    return None


def _unknown_status(status: str, statuses: list[str]) -> str:
    return (
        f"unknown status '{status}'{_suggest(status, statuses)}; use one of"
        f" {', '.join(statuses)}, or declare it under pack: statuses"
    )
