"""Status decisions through durable_rules: a pack's status rules compiled to one ruleset.

durable_rules has sharp edges (see ../shared/ARCHITECTURE.md), all handled here and nowhere else:

* Its Python ``Host`` starts two timer threads that call ``dispatch()`` on every ruleset every
  ~0.2 s, outside any lock Duly could share: they were seen running Duly's pending actions
  between our ``assert_events`` and our reading of the results, which could lose a decision or
  delete a session under a running action. Duly needs no timers, so it drives durable_rules' C
  core (``durable_rules_engine``, the same calls ``Host`` makes) and creates no ``Host`` at all.
  That also drops per-decision Python closures and state re-encoding: about twice as fast.
* A ruleset name can never be registered twice: rulesets are named by the pack's content hash
  (``status_<hash16>``), registered once and cached for the life of the process.
* A ruleset holds at most 1,024 live sessions: every batch posts under a fresh ``sid`` and
  deletes that session's state in ``finally``.
* Only the highest-priority matching rule consumes an event (``pri``: lower first), which gives
  "first matching rule wins" when ``pri`` follows the order HR wrote the rules in. The C core
  serves pending actions in priority order, and an action that completes deletes its messages
  with every lower-priority match of them; so every rule also has a ``cap`` (one action
  carries up to that many of its matches) and a batch takes one action per rule that decides
  something instead of one per message, with the same decisions.
* It compares strings as their raw JSON text (escapes included, never decoded), so messages
  escape facts exactly as ``json`` escaped the ruleset's literals (:func:`message_writer`).
* A message without an ``id`` gets a hash of its content as its id: equal messages in one batch
  would be one message. Every message carries its index in the batch (``"k"``), which also
  tells whose decision an action is.
* No match leaves a half-made session whose ``delete_state`` crashes the process (seen here as a
  segfault): every ruleset therefore ends with an internal rule that matches any decision message
  at the lowest priority, and its firing is reported as :class:`NoRuleMatched` (lint makes that
  impossible for a pack with a catch-all).
* Session state is itself matched against the rules, so every rule also requires a marker field
  that only Duly's decision messages carry (otherwise ``true`` would match the state forever).
* ``"x" not in roles`` compiles to "every element differs"; over an empty list that is false in
  durable_rules, so list facts are posted with a sentinel first element that no literal equals.
* About 1,000 events in one ``assert_events`` overflow its result buffer (error 307): batches
  are cut at :data:`BATCH_SIZE`.
* It never releases the GIL and is not documented as thread-safe: calls are serialised with a
  lock, which costs nothing extra since they hold the GIL anyway.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from json.encoder import encode_basestring
from typing import Any, Protocol, cast

from pydantic import BaseModel, ConfigDict

from rules.facts import FACTS, FactType, complete_facts
from rules.model import Pack, StatusRule

__all__ = [
    "Decision",
    "Evaluator",
    "FactsError",
    "NoRuleMatched",
    "PythonEvaluator",
    "StatusEngine",
    "engine_for",
]

#: Field every decision message carries; session state never has it.
MARKER_FIELD = "duly_decision"
#: First element of every posted list fact (see module docstring).
LIST_SENTINEL = "\u0000duly"
#: Messages per durable_rules batch: larger batches overflow its result buffer (error 307).
BATCH_SIZE = 200
#: Rulesets a process keeps loaded before it warns (they can never be unloaded).
MAX_LOADED = 64
#: The internal lowest-priority rule that catches facts no status rule covers.
_NO_RULE = "__no_rule_matched__"


class Decision(BaseModel):
    """One status decision, with everything needed to explain it later.

    Attributes:
        status: The decided status (a built-in one or one the pack declares).
        severity: The rule's severity, if it sets one.
        rule: The name of the status rule that decided.
        pack_hash: The content hash of the pack the rule came from.
        facts: The complete facts the decision was made on.
    """

    model_config = ConfigDict(frozen=True)

    status: str
    severity: str | None = None
    rule: str
    pack_hash: str
    facts: dict[str, Any]


class NoRuleMatched(LookupError):
    """No status rule holds for these facts (the pack lacks a catch-all rule)."""

    def __init__(self, pack_hash: str, facts: Mapping[str, Any]) -> None:
        super().__init__(
            f"no status rule of pack {pack_hash[:12]} matches these facts; add a last rule"
            f" with 'when: \"true\"' (duly rules lint shows the uncovered cases): {dict(facts)}"
        )
        self.pack_hash = pack_hash
        self.facts = dict(facts)


class FactsError(ValueError):
    """Facts with an unknown name or a value of the wrong type."""


class Evaluator(Protocol):
    """What callers need from a status evaluator (durable_rules or the Python baseline)."""

    pack_hash: str

    def evaluate(self, facts: Mapping[str, Any]) -> Decision:
        """Decide one obligation's status."""
        ...

    def evaluate_many(self, facts: Sequence[Mapping[str, Any]]) -> list[Decision]:
        """Decide many obligations' statuses, in order."""
        ...


_PY_TYPES: dict[FactType, type] = {
    FactType.INT: int,
    FactType.BOOL: bool,
    FactType.STR: str,
    FactType.STR_LIST: list,
}
#: Each known fact's exact Python type (``type(v) is t``: a bool is not an int here).
_TYPES = {name: _PY_TYPES[kind] for name, (kind, _) in FACTS.items()}
_KNOWN = FACTS.keys()
_STR = {str}


def _all_str(values: Any) -> bool:
    """Whether every element of a list is a ``str`` (the element types collected in C)."""
    return not values or {type(x) for x in values} == _STR


def checked_facts(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Every known fact (defaults for missing ones), after checking names and types.

    Raises:
        FactsError: An unknown fact or a value of the wrong type.
    """
    if not facts.keys() <= _KNOWN:
        unknown = sorted(set(facts) - set(_KNOWN))
        raise FactsError(f"unknown facts {unknown}; known facts: {', '.join(FACTS)}")
    types = _TYPES
    for name, value in facts.items():
        # One exact type test per fact (the hot path of every decision); lists also need
        # every element checked.
        kind = types[name]
        if type(value) is not kind or (kind is list and not _all_str(value)):
            raise FactsError(f"fact {name!r} must be {FACTS[name][0].value}, not {value!r}")
    if len(facts) == len(_KNOWN):
        return dict(facts)
    return complete_facts(dict(facts))


class PythonEvaluator:
    """The same first-match semantics in plain Python: the baseline and the cross-check.

    Duly decides through :class:`StatusEngine`; this class exists to measure durable_rules
    against the limit (bench/rules.py) and to prove both agree (tests).
    """

    def __init__(self, pack_hash: str, rules: Sequence[StatusRule]) -> None:
        """Compile ``rules`` (in order)."""
        self.pack_hash = pack_hash
        self._rules = [(_rule_fields(rule, pack_hash), rule.condition.evaluate) for rule in rules]

    def evaluate(self, facts: Mapping[str, Any]) -> Decision:
        """Decide one obligation's status (first matching rule wins)."""
        complete = checked_facts(facts)
        for fields, holds in self._rules:
            if holds(complete):
                return _made(fields, complete)
        raise NoRuleMatched(self.pack_hash, complete)

    def evaluate_many(self, facts: Sequence[Mapping[str, Any]]) -> list[Decision]:
        """Decide many obligations' statuses, in order."""
        return [self.evaluate(f) for f in facts]


_new_object = object.__new__
_set = object.__setattr__
_DECISION_FIELDS = frozenset(Decision.model_fields)


def _decision(rule: StatusRule, pack_hash: str, facts: dict[str, Any]) -> Decision:
    """The decision ``rule`` makes on ``facts`` (see :func:`_made`)."""
    return _made(_rule_fields(rule, pack_hash), facts)


def _rule_fields(rule: StatusRule, pack_hash: str) -> dict[str, Any]:
    """A decision's fields that depend on the rule only (computed once per rule)."""
    return {
        "status": rule.status,
        "severity": rule.severity.value if rule.severity else None,
        "rule": rule.name,
        "pack_hash": pack_hash,
    }


def _made(fields: dict[str, Any], facts: dict[str, Any]) -> Decision:
    # What ``Decision.model_construct`` does, without its per-field loop: every field is already
    # known good (a validated rule, checked facts), and validating a copy of the facts was the
    # largest cost of a decision (bench/rules_decisions.py); model_construct was still the next.
    values = fields.copy()
    values["facts"] = facts
    decision = _new_object(Decision)
    _set(decision, "__dict__", values)
    _set(decision, "__pydantic_fields_set__", set(_DECISION_FIELDS))
    _set(decision, "__pydantic_extra__", None)
    _set(decision, "__pydantic_private__", None)
    return decision


_LOCK = threading.Lock()
_REGISTERED: set[str] = set()
#: Session ids: a process-wide count (``next`` on it is atomic under the GIL), never "0", the
#: session durable_rules uses for messages without a ``sid``.
_SIDS = itertools.count(1)
#: The rule of one action as the C core writes it, ``{"<rule>":[{"m":{"k":<key>,…}},…]}``.
_RULE = re.compile(r'\{"([^"\\]+)":\[\{"m":\{"k":\d').match
#: The keys of the messages in one action (strings are escaped, so no fact can forge one).
_KEYS = re.compile(r'\{"m":\{"k":(\d+),').findall
#: What :mod:`json` writes for :data:`LIST_SENTINEL`.
_SENTINEL_JSON: str = encode_basestring(LIST_SENTINEL)
#: The file name the generated message writers report (tracebacks, profiles).
MESSAGE_SOURCE = "<rules.engine message writer>"


def message_writer(posted: Sequence[str]) -> Callable[[dict[str, Any]], str]:
    """A function writing the JSON text of one obligation's decision message, without its head.

    The text is what ``json.dumps(message, ensure_ascii=False, separators=(",", ":"))`` writes
    for the message ``{MARKER_FIELD: 1, <ints and strings>, <bools as 0/1>, <lists after
    LIST_SENTINEL>}`` (posted facts in the order given within each group), from its opening
    marker field to the closing brace; :func:`_batch_json` prefixes ``{"k":…,"sid":"…",``. It
    is one ``%`` format over the facts instead of a dict per message and the JSON encoder: the
    two were a third of a batch decision (bench/rules_decisions.py). Strings go through
    :func:`json.encoder.encode_basestring`, the function ``json`` itself uses with
    ``ensure_ascii=False``, so they are escaped byte for byte as the ruleset's literals were
    (durable_rules compares strings as their raw JSON text, escapes included).

    Args:
        posted: Names of known facts (:data:`rules.facts.FACTS`), in the order to write them.

    Returns:
        A function of complete, checked facts (:func:`checked_facts`).
    """
    kinds = {name: FACTS[name][0] for name in posted}  # KeyError: not a known fact
    ordered = [
        *(n for n in posted if kinds[n] in (FactType.INT, FactType.STR)),
        *(n for n in posted if kinds[n] is FactType.BOOL),
        *(n for n in posted if kinds[n] is FactType.STR_LIST),
    ]
    parts = [f'"{MARKER_FIELD}":1']
    args = []
    for name in ordered:
        if not name.isidentifier():  # fact names are identifiers; the code below relies on it
            raise ValueError(f"fact name {name!r} is not an identifier")
        kind = kinds[name]
        if kind is FactType.STR:
            parts.append(f'"{name}":%s')
            args.append(f"_s(f[{name!r}])")
        elif kind is FactType.STR_LIST:
            parts.append(f'"{name}":[%s]')
            args.append(f"_j((_S, *map(_s, f[{name!r}])))")
        else:  # int, or bool: "%d" % True is "1"
            parts.append(f'"{name}":%d')
            args.append(f"f[{name!r}]")
    template = ",".join(parts) + "}"
    source = f"def _message(f):\n    return {template!r} % ({''.join(a + ', ' for a in args)})\n"
    scope: dict[str, Any] = {"_s": encode_basestring, "_j": ",".join, "_S": _SENTINEL_JSON}
    exec(compile(source, MESSAGE_SOURCE, "exec"), scope)  # the source is built above
    writer: Callable[[dict[str, Any]], str] = scope["_message"]
    return writer


def _batch_json(bodies: Sequence[str], sid: str) -> str:
    """The JSON array of one batch: each message's head, then its body (see ``_run``)."""
    return "[" + ",".join([f'{{"k":{i},"sid":"{sid}",{b}' for i, b in enumerate(bodies)]) + "]"


class StatusEngine:
    """A pack's status rules as a durable_rules ruleset.

    Safe to call from many threads (activities run in a thread pool): calls are serialised.
    Use :func:`engine_for` rather than constructing one per call: the ruleset is registered
    once per pack hash for the life of the process.
    """

    def __init__(self, pack_hash: str, rules: Sequence[StatusRule]) -> None:
        """Compile ``rules`` and register them as ruleset ``status_<pack_hash[:16]>``.

        Args:
            pack_hash: The pack's content hash (names the ruleset).
            rules: The status rules in the order HR wrote them.
        """
        import durable_rules_engine

        if not rules:
            raise ValueError("a pack needs at least one status rule")
        if any(rule.name == _NO_RULE for rule in rules):
            raise ValueError(f"{_NO_RULE!r} is reserved")
        self.pack_hash = pack_hash
        self.ruleset = f"status_{pack_hash[:16]}"
        self._rules = {rule.name: rule for rule in rules}
        self._fields = {rule.name: _rule_fields(rule, pack_hash) for rule in rules}
        # Post only the facts some rule reads: smaller messages, less JSON, same decisions.
        used: set[str] = set()
        definition: dict[str, Any] = {}
        for priority, rule in enumerate(rules, start=1):
            condition = rule.condition
            used |= condition.facts_used
            marker = {MARKER_FIELD: 1}
            match = marker if condition.always_true else {"$and": [marker, condition.to_durable()]}
            definition[rule.name] = {"all": [{"m": match}], "pri": priority, "cap": BATCH_SIZE}
        definition[_NO_RULE] = {
            "all": [{"m": {MARKER_FIELD: 1}}],
            "pri": len(rules) + 1,
            "cap": BATCH_SIZE,
        }
        self.definition = definition
        self._posted = tuple(sorted(used))
        self._known = frozenset(self._rules) | {_NO_RULE}
        #: The JSON text of one obligation's posted facts: the message body, and the
        #: de-duplication key of :meth:`evaluate_many` (equal posted facts, equal text).
        self._body = message_writer(self._posted)
        self._engine: Any = durable_rules_engine
        with _LOCK:
            if self.ruleset in _REGISTERED:
                raise RuntimeError(
                    f"ruleset {self.ruleset} is already registered in this process;"
                    " use rules.engine.engine_for(pack)"
                )
            self._handle = durable_rules_engine.create_ruleset(
                self.ruleset, json.dumps(definition, ensure_ascii=False)
            )
            _REGISTERED.add(self.ruleset)

    def _run(self, bodies: Sequence[str]) -> list[str]:
        """Post one batch of message bodies; the rule that consumed each (or the catch-all's).

        Every message starts ``{"k":<its index>,"sid":"<this batch's session>",`` and
        durable_rules echoes it unchanged in the action that consumes it. Every rule has a
        ``cap``, so one action carries all the messages a rule consumes (up to the cap),
        ``{"<rule>":[{"m":{…}},{"m":{…}},…]}``: regular expressions read the rule and the keys
        (decoding the echoed messages was the largest Python cost of an action). Anything else
        (another durable_rules version, a rule name with escapes) falls back to decoding JSON.
        """
        sid = f"{next(_SIDS):x}"
        text = _batch_json(bodies, sid)
        engine, handle, known = self._engine, self._handle, self._known
        names = [_NO_RULE] * len(bodies)  # a message no action consumed: no rule matched
        taken: set[int] = set()
        clash = None
        with _LOCK:
            try:
                code, state = engine.assert_events(handle, text)
                if code not in (0, 3):
                    raise RuntimeError(f"durable_rules refused the batch (result code {code})")
                started = engine.start_action_for_state(handle, state)
                pending = started[1] if started else None
                complete, rule_of, keys_of = engine.complete_and_start_action, _RULE, _KEYS
                while pending:
                    head = rule_of(pending)
                    rule = head[1] if head is not None else None
                    if rule in known:
                        keys = list(map(int, keys_of(pending)))
                    else:
                        rule, keys = _decoded(pending)
                    # Actions run in priority order and consume their messages, so a message
                    # is in one rule's actions only (twice in one action when two branches of
                    # an "or" matched it); anything else would be a durable_rules fault.
                    # Raised after the session is drained: deleting a session with actions
                    # still pending can crash the process.
                    if not taken.isdisjoint(keys):
                        clash = rule
                    taken.update(keys)
                    for key in keys:
                        names[key] = rule
                    pending = complete(handle, state)
            finally:
                engine.delete_state(handle, sid)
        if clash is not None:
            raise RuntimeError(f"durable_rules gave a message to {clash} and another rule")
        return names

    def evaluate(self, facts: Mapping[str, Any]) -> Decision:
        """Decide one obligation's status.

        Args:
            facts: Known facts (missing ones take their defaults).

        Returns:
            The decision, with the rule that made it.

        Raises:
            FactsError: Unknown facts or wrong types.
            NoRuleMatched: No rule holds (the pack has no catch-all).
        """
        return self.evaluate_many([facts])[0]

    def evaluate_many(self, facts: Sequence[Mapping[str, Any]]) -> list[Decision]:
        """Decide many obligations' statuses in batches of :data:`BATCH_SIZE`.

        Args:
            facts: One facts mapping per obligation.

        Returns:
            One decision per obligation, in the same order.

        Raises:
            FactsError: Unknown facts or wrong types in any of them (nothing is decided).
            NoRuleMatched: No rule holds for one of them.
        """
        complete = [checked_facts(f) for f in facts]
        body = self._body
        bodies = [body(f) for f in complete]
        # Rules are pure and read only the posted facts: obligations whose posted facts are
        # equal (equal message bodies) get the same rule, so each distinct body goes through
        # durable_rules once. A large organisation has many (same days left, same flags); the
        # bench prints how many. The body is needed anyway, so the key costs a dict insert.
        distinct = list(dict.fromkeys(bodies))
        fields_of = self._fields.get
        decided: dict[str, dict[str, Any]] = {}
        for start in range(0, len(distinct), BATCH_SIZE):
            chunk = distinct[start : start + BATCH_SIZE]
            fields = list(map(fields_of, self._run(chunk)))  # None: the catch-all
            if None in fields:
                unmatched = chunk[fields.index(None)]
                raise NoRuleMatched(self.pack_hash, complete[bodies.index(unmatched)])
            decided.update(zip(chunk, cast(list[dict[str, Any]], fields), strict=True))
        return [_made(decided[b], f) for b, f in zip(bodies, complete, strict=True)]


def _decoded(pending: str) -> tuple[str, list[int]]:
    """The rule and message keys of one durable_rules action, by decoding its JSON."""
    ((rule, frames),) = json.loads(pending).items()
    if isinstance(frames, dict):  # an action without a cap carries one frame
        frames = [frames]
    return rule, [frame["m"]["k"] for frame in frames]


_ENGINES: dict[str, StatusEngine] = {}
_ENGINES_LOCK = threading.Lock()


def engine_for(pack: Pack) -> StatusEngine:
    """The process-wide engine of ``pack`` (registered on first use, then reused)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(pack.content_hash)
        if engine is None:
            if len(_ENGINES) >= MAX_LOADED:
                import logging

                logging.getLogger(__name__).warning(
                    "%d rules packs loaded in this process; durable_rules cannot unload them,"
                    " restart the worker to shed old ones",
                    len(_ENGINES),
                )
            engine = StatusEngine(pack.content_hash, pack.status_rules)
            _ENGINES[pack.content_hash] = engine
        return engine
