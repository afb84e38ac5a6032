"""The condition language HR writes in status rules and ``unless`` clauses.

Examples::

    days_until_due < 0 and not completed
    exempt
    true
    "nurse" in roles
    department == "Radiology" or (kind == "certification" and days_until_expiry <= 14)
    department in ["Nursing", "Pharmacy"]

Grammar (keywords are lowercase)::

    condition  := or_expr END
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | primary
    primary    := "(" or_expr ")" | "true" | "false" | comparison | BOOL_FACT
    comparison := operand (("==" | "!=" | "<" | "<=" | ">" | ">=") operand
                          | ["not"] "in" operand)
    operand    := FACT | INT | STRING | "true" | "false" | "[" [STRING ("," STRING)*] "]"

One side of a comparison is a fact and the other a literal. Each condition is type-checked against
:data:`rules.facts.FACTS`; every problem raises :class:`ConditionError` with a message written for
the HR author and the character offset of the problem. The text is parsed by a hand-written
tokenizer and recursive-descent parser: user input never reaches ``eval`` or :mod:`ast`.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rules.facts import FACTS, FactType

__all__ = ["Condition", "ConditionError", "compile_condition"]

_Eval = Callable[[Mapping[str, Any]], bool]

_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false"})
_COMPARE_OPS = ("==", "!=", "<", "<=", ">", ">=")
_ORDER_OPS = frozenset({"<", "<=", ">", ">="})
_FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_NEGATED = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_PY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_DURABLE_OPS = {"!=": "$neq", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}


class ConditionError(ValueError):
    """A condition that does not parse or does not type-check.

    Attributes:
        message: What is wrong and how to fix it, for the HR author.
        offset: 0-based character offset into the condition text where the problem is.
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.offset))


# --------------------------------------------------------------------------------------------
# Tokenizer


@dataclass(frozen=True)
class _Token:
    kind: str  # NAME, KW, INT, STR, OP, PUNCT, END
    value: Any
    offset: int
    text: str


_PYTHONISMS = {
    "&&": "use 'and' instead of '&&'",
    "||": "use 'or' instead of '||'",
    "&": "use 'and' instead of '&'",
    "|": "use 'or' instead of '|'",
}


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        start = i
        if ch.isalpha() or ch == "_":
            while i < n and (text[i].isalnum() or text[i] == "_"):
                i += 1
            word = text[start:i]
            kind = "KW" if word in _KEYWORDS else "NAME"
            tokens.append(_Token(kind, word, start, word))
            continue
        if ch.isdigit() or (ch == "-" and i + 1 < n and text[i + 1].isdigit()):
            i += 1
            while i < n and text[i].isdigit():
                i += 1
            if i < n and (text[i].isalpha() or text[i] == "_" or text[i] == "."):
                raise ConditionError(
                    f"'{text[start : i + 1]}' is not a number; numbers are whole, like 30 or -7",
                    start,
                )
            tokens.append(_Token("INT", int(text[start:i]), start, text[start:i]))
            continue
        if ch in "\"'":
            i += 1
            chars: list[str] = []
            while i < n and text[i] != ch:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(text[i])
                i += 1
            if i >= n:
                raise ConditionError(
                    f"unterminated string: add the closing {ch} after {text[start:]}", start
                )
            i += 1
            tokens.append(_Token("STR", "".join(chars), start, text[start:i]))
            continue
        two = text[i : i + 2]
        if two in ("==", "!=", "<=", ">="):
            tokens.append(_Token("OP", two, start, two))
            i += 2
            continue
        if two in _PYTHONISMS:
            raise ConditionError(_PYTHONISMS[two], start)
        if ch in "<>":
            tokens.append(_Token("OP", ch, start, ch))
            i += 1
            continue
        if ch in _PYTHONISMS:
            raise ConditionError(_PYTHONISMS[ch], start)
        if ch == "!":
            raise ConditionError("use 'not' instead of '!'", start)
        if ch == "=":
            raise ConditionError("use '==' to compare; a single '=' is not allowed", start)
        if ch in "()[],":
            tokens.append(_Token("PUNCT", ch, start, ch))
            i += 1
            continue
        raise ConditionError(f"unexpected character {ch!r}", start)
    tokens.append(_Token("END", None, n, ""))
    return tokens


# --------------------------------------------------------------------------------------------
# Syntax tree (already type-checked)


class _Node:
    def facts(self) -> set[str]:
        raise NotImplementedError

    def constants(self, out: dict[str, set[Any]]) -> None:
        raise NotImplementedError

    def compile(self) -> _Eval:
        raise NotImplementedError

    def negate(self) -> _Node:
        """An equivalent of ``not self`` with negation pushed down to the leaves."""
        raise NotImplementedError

    def durable(self) -> dict[str, Any]:
        """A durable_rules expression (negations must already be pushed down)."""
        raise NotImplementedError


@dataclass(frozen=True)
class _Const(_Node):
    value: bool

    def facts(self) -> set[str]:
        return set()

    def constants(self, out: dict[str, set[Any]]) -> None:
        return None

    def compile(self) -> _Eval:
        value = self.value
        return lambda facts: value

    def negate(self) -> _Node:
        return _Const(not self.value)

    def durable(self) -> dict[str, Any]:
        # The posted event never has a field "$none", so "$nex" holds and "$ex" fails.
        return {"$nex" if self.value else "$ex": {_ABSENT_FIELD: 1}}


_ABSENT_FIELD = "__absent__"


@dataclass(frozen=True)
class _BoolFact(_Node):
    name: str
    value: bool = True  # the value the fact must have for the node to hold

    def facts(self) -> set[str]:
        return {self.name}

    def constants(self, out: dict[str, set[Any]]) -> None:
        out.setdefault(self.name, set()).update({True, False})

    def compile(self) -> _Eval:
        name = self.name
        if self.value:
            return lambda facts: bool(facts[name])
        return lambda facts: not facts[name]

    def negate(self) -> _Node:
        return _BoolFact(self.name, not self.value)

    def durable(self) -> dict[str, Any]:
        # Bool facts are posted as 1/0 (see rules.engine); compare with the integer.
        return {self.name: 1 if self.value else 0}


@dataclass(frozen=True)
class _Compare(_Node):
    name: str
    op: str
    value: int | str

    def facts(self) -> set[str]:
        return {self.name}

    def constants(self, out: dict[str, set[Any]]) -> None:
        out.setdefault(self.name, set()).add(self.value)

    def compile(self) -> _Eval:
        name, value, fn = self.name, self.value, _PY_OPS[self.op]
        return lambda facts: fn(facts[name], value)

    def negate(self) -> _Node:
        return _Compare(self.name, _NEGATED[self.op], self.value)

    def durable(self) -> dict[str, Any]:
        if self.op == "==":
            return {self.name: self.value}
        return {_DURABLE_OPS[self.op]: {self.name: self.value}}


@dataclass(frozen=True)
class _Contains(_Node):
    """``"value" in list_fact`` (or ``not in`` when ``negated``)."""

    name: str
    value: str
    negated: bool = False

    def facts(self) -> set[str]:
        return {self.name}

    def constants(self, out: dict[str, set[Any]]) -> None:
        out.setdefault(self.name, set()).add(self.value)

    def compile(self) -> _Eval:
        name, value = self.name, self.value
        if self.negated:
            return lambda facts: value not in facts[name]
        return lambda facts: value in facts[name]

    def negate(self) -> _Node:
        return _Contains(self.name, self.value, not self.negated)

    def durable(self) -> dict[str, Any]:
        if self.negated:
            return {"$iall": {self.name: {"$neq": {"$i": self.value}}}}
        return {"$iany": {self.name: {"$i": self.value}}}


@dataclass(frozen=True)
class _InList(_Node):
    """``str_fact in ["a", "b"]`` (or ``not in`` when ``negated``)."""

    name: str
    values: tuple[str, ...]
    negated: bool = False

    def facts(self) -> set[str]:
        return {self.name}

    def constants(self, out: dict[str, set[Any]]) -> None:
        out.setdefault(self.name, set()).update(self.values)

    def compile(self) -> _Eval:
        name, values = self.name, frozenset(self.values)
        if self.negated:
            return lambda facts: facts[name] not in values
        return lambda facts: facts[name] in values

    def negate(self) -> _Node:
        return _InList(self.name, self.values, not self.negated)

    def durable(self) -> dict[str, Any]:
        if not self.values:
            return _Const(self.negated).durable()
        if self.negated:
            parts = [_Compare(self.name, "!=", v).durable() for v in self.values]
            return parts[0] if len(parts) == 1 else {"$and": parts}
        parts = [_Compare(self.name, "==", v).durable() for v in self.values]
        return parts[0] if len(parts) == 1 else {"$or": parts}


@dataclass(frozen=True)
class _Not(_Node):
    operand: _Node

    def facts(self) -> set[str]:
        return self.operand.facts()

    def constants(self, out: dict[str, set[Any]]) -> None:
        self.operand.constants(out)

    def compile(self) -> _Eval:
        inner = self.operand.compile()
        return lambda facts: not inner(facts)

    def negate(self) -> _Node:
        return self.operand

    def durable(self) -> dict[str, Any]:
        return self.operand.negate().durable()


@dataclass(frozen=True)
class _Junction(_Node):
    op: str  # "and" | "or"
    items: tuple[_Node, ...]

    def facts(self) -> set[str]:
        out: set[str] = set()
        for item in self.items:
            out |= item.facts()
        return out

    def constants(self, out: dict[str, set[Any]]) -> None:
        for item in self.items:
            item.constants(out)

    def compile(self) -> _Eval:
        parts = tuple(item.compile() for item in self.items)
        if self.op == "and":
            return lambda facts: all(p(facts) for p in parts)
        return lambda facts: any(p(facts) for p in parts)

    def negate(self) -> _Node:
        return _Junction(
            "or" if self.op == "and" else "and", tuple(item.negate() for item in self.items)
        )

    def durable(self) -> dict[str, Any]:
        return {"$and" if self.op == "and" else "$or": [_pushed(i).durable() for i in self.items]}


def _pushed(node: _Node) -> _Node:
    """``node`` with every ``not`` pushed down to the leaves (De Morgan)."""
    if isinstance(node, _Not):
        return _pushed(node.operand).negate()
    if isinstance(node, _Junction):
        return _Junction(node.op, tuple(_pushed(i) for i in node.items))
    return node


# --------------------------------------------------------------------------------------------
# Parser


def _describe(kind: FactType) -> str:
    return {
        FactType.INT: "a number",
        FactType.BOOL: "true/false",
        FactType.STR: "text",
        FactType.STR_LIST: "a list of text",
    }[kind]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.pos]

    def advance(self) -> _Token:
        tok = self.tokens[self.pos]
        if tok.kind != "END":
            self.pos += 1
        return tok

    def at(self, kind: str, value: Any = None) -> bool:
        tok = self.tok
        return tok.kind == kind and (value is None or tok.value == value)

    def parse(self) -> _Node:
        if self.at("END"):
            raise ConditionError(
                "the condition is empty; write one such as 'days_until_due < 0 and not completed'"
                " or 'true'",
                0,
            )
        node = self.or_expr()
        if not self.at("END"):
            tok = self.tok
            raise ConditionError(
                f"unexpected {tok.text!r} after a complete condition; join conditions with"
                " 'and' or 'or'",
                tok.offset,
            )
        return node

    def or_expr(self) -> _Node:
        items = [self.and_expr()]
        while self.at("KW", "or"):
            self.advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else _Junction("or", tuple(items))

    def and_expr(self) -> _Node:
        items = [self.not_expr()]
        while self.at("KW", "and"):
            self.advance()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else _Junction("and", tuple(items))

    def not_expr(self) -> _Node:
        if self.at("KW", "not"):
            self.advance()
            return _Not(self.not_expr())
        return self.primary()

    def primary(self) -> _Node:
        tok = self.tok
        if self.at("PUNCT", "("):
            self.advance()
            node = self.or_expr()
            if not self.at("PUNCT", ")"):
                raise ConditionError(
                    f"missing ')' to close the '(' at position {tok.offset}", self.tok.offset
                )
            self.advance()
            return node
        if tok.kind == "END":
            raise ConditionError("the condition ends too early; something is missing", tok.offset)
        if tok.kind in ("OP",) or (tok.kind == "KW" and tok.value in ("and", "or", "in")):
            raise ConditionError(f"expected a fact or a value before {tok.text!r}", tok.offset)
        if tok.kind == "PUNCT" and tok.value in ")],":
            raise ConditionError(f"unexpected {tok.text!r}", tok.offset)
        left = self.operand()
        nxt = self.tok
        if nxt.kind == "OP":
            self.advance()
            right = self.operand()
            return self.comparison(left, nxt, right)
        if nxt.kind == "KW" and nxt.value in ("in", "not"):
            if nxt.value == "not":
                self.advance()
                if not self.at("KW", "in"):
                    raise ConditionError(
                        f"unexpected 'not' after {left.text!r}; did you mean 'not in'?",
                        nxt.offset,
                    )
            self.advance()
            right = self.operand()
            return self.membership(left, right, negated=nxt.value == "not", op_tok=nxt)
        return self.bare(left)

    def operand(self) -> _Token:
        tok = self.tok
        if tok.kind in ("NAME", "INT", "STR") or (
            tok.kind == "KW" and tok.value in ("true", "false")
        ):
            self.advance()
            if tok.kind == "NAME":
                self.check_fact(tok)
            return tok
        if self.at("PUNCT", "["):
            return self.list_literal()
        if tok.kind == "END":
            raise ConditionError("the condition ends too early; a value is missing", tok.offset)
        raise ConditionError(f"expected a fact or a value, found {tok.text!r}", tok.offset)

    def list_literal(self) -> _Token:
        start = self.advance()
        values: list[str] = []
        if not self.at("PUNCT", "]"):
            while True:
                tok = self.tok
                if tok.kind != "STR":
                    if tok.kind == "END":
                        raise ConditionError(
                            f"missing ']' to close the list at position {start.offset}",
                            tok.offset,
                        )
                    raise ConditionError(
                        f'lists may only hold quoted text, such as ["Nursing", "Pharmacy"];'
                        f" found {tok.text!r}",
                        tok.offset,
                    )
                values.append(self.advance().value)
                if self.at("PUNCT", ","):
                    self.advance()
                    continue
                if self.at("PUNCT", "]"):
                    break
                raise ConditionError(
                    "separate list items with ',' and close the list with ']'", self.tok.offset
                )
        end = self.advance()
        return _Token("LIST", tuple(values), start.offset, self.text[start.offset : end.offset + 1])

    def check_fact(self, tok: _Token) -> None:
        name = tok.value
        if name in FACTS:
            return
        known = ", ".join(FACTS)
        close = difflib.get_close_matches(name, list(FACTS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "."
        raise ConditionError(f"unknown fact '{name}'{hint} Known facts: {known}", tok.offset)

    def bare(self, tok: _Token) -> _Node:
        if tok.kind == "KW":
            return _Const(tok.value == "true")
        if tok.kind != "NAME":
            raise ConditionError(
                f"{tok.text} on its own is not a condition; compare a fact with it, such as"
                f" days_until_due < {tok.text}"
                if tok.kind == "INT"
                else f"{tok.text} on its own is not a condition; compare a fact with it, such as"
                f" department == {tok.text}",
                tok.offset,
            )
        name = tok.value
        kind = FACTS[name][0]
        if kind is FactType.BOOL:
            return _BoolFact(name)
        example = {
            FactType.INT: f"{name} < 0",
            FactType.STR: f'{name} == "Nursing"',
            FactType.STR_LIST: f'"nurse" in {name}',
        }[kind]
        return _error_bare(name, kind, example, tok.offset)

    def comparison(self, left: _Token, op_tok: _Token, right: _Token) -> _Node:
        op = op_tok.value
        if left.kind == "NAME" and right.kind == "NAME":
            raise ConditionError(
                f"compare a fact with a value, not with another fact ({left.text} {op}"
                f" {right.text})",
                right.offset,
            )
        if left.kind != "NAME" and right.kind != "NAME":
            raise ConditionError(
                f"a comparison needs a fact on one side ({left.text} {op} {right.text})",
                left.offset,
            )
        if left.kind != "NAME":
            left, right, op = right, left, _FLIPPED[op]
        name = left.value
        kind = FACTS[name][0]
        if kind is FactType.BOOL:
            if right.kind == "KW" and op in ("==", "!="):
                want = (right.value == "true") == (op == "==")
                return _BoolFact(name, want)
            bad = right.text if op not in _ORDER_OPS or right.kind != "KW" else f"{op} {right.text}"
            raise ConditionError(
                f"'{name}' is true/false, compare it with '{name}' or 'not {name}', not with {bad}",
                right.offset,
            )
        if kind is FactType.INT:
            if right.kind != "INT":
                raise ConditionError(
                    f"{name} is a number; compare it with a number, such as {name} {op} 0",
                    right.offset,
                )
            return _Compare(name, op, right.value)
        if kind is FactType.STR:
            if right.kind != "STR":
                raise ConditionError(
                    f'{name} is text; compare it with quoted text, such as {name} == "Nursing"',
                    right.offset,
                )
            if op in _ORDER_OPS:
                raise ConditionError(
                    f"{name} is text; compare it with == or !=, not {op}", op_tok.offset
                )
            return _Compare(name, op, right.value)
        raise ConditionError(
            f'{name} is a list of text; test membership with "nurse" in {name}'
            f' or "nurse" not in {name}',
            op_tok.offset,
        )

    def membership(self, left: _Token, right: _Token, *, negated: bool, op_tok: _Token) -> _Node:
        word = "not in" if negated else "in"
        if right.kind == "NAME":
            name = right.value
            kind = FACTS[name][0]
            if kind is not FactType.STR_LIST:
                if kind is FactType.STR and left.kind == "STR":
                    hint = f"use {name} == {left.text}"
                else:
                    hint = f'\'{word}\' needs a list, such as roles or ["Nursing", "Pharmacy"]'
                raise ConditionError(
                    f"{name} is {_describe(kind)}, not a list; {hint}", right.offset
                )
            if left.kind != "STR":
                raise ConditionError(
                    f'{name} is a list of text; test it with quoted text, such as "nurse"'
                    f" {word} {name}",
                    left.offset,
                )
            return _Contains(name, left.value, negated)
        if right.kind == "LIST":
            if left.kind != "NAME":
                raise ConditionError(
                    f"put a fact before '{word}' [...], such as department {word} {right.text}",
                    left.offset,
                )
            name = left.value
            kind = FACTS[name][0]
            if kind is not FactType.STR:
                raise ConditionError(
                    f"{name} is {_describe(kind)}; only text facts can be tested with"
                    f" '{word} [...]'",
                    left.offset,
                )
            return _InList(name, right.value, negated)
        raise ConditionError(
            f'\'{word}\' needs a list after it, such as roles or ["Nursing", "Pharmacy"]',
            right.offset,
        )


def _error_bare(name: str, kind: FactType, example: str, offset: int) -> _Node:
    raise ConditionError(
        f"'{name}' is {_describe(kind)}; write a comparison such as {example}", offset
    )


# --------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True)
class Condition:
    """A parsed, type-checked condition.

    Attributes:
        text: The condition as written.
        facts_used: Names of the facts the condition reads.
        always_true: Whether the condition is the literal ``true``.
    """

    text: str
    facts_used: frozenset[str]
    always_true: bool
    _tree: _Node = field(repr=False, compare=False)
    _eval: _Eval = field(repr=False, compare=False)

    def evaluate(self, facts: Mapping[str, Any]) -> bool:
        """Whether the condition holds.

        Args:
            facts: Complete facts (see :func:`rules.facts.complete_facts`).

        Returns:
            The truth of the condition for these facts.
        """
        return self._eval(facts)

    def to_durable(self) -> dict[str, Any]:
        """The condition as a durable_rules JSON expression for a rule's ``m``.

        Negations are pushed down to the leaves, ``x in [a, b]`` becomes ``x == a or x == b``,
        and bool facts are compared with 1/0 (the engine posts bools as integers).

        Returns:
            A fresh dict (callers may mutate it).
        """
        return _pushed(self._tree).durable()

    def constants(self) -> dict[str, set[Any]]:
        """Per fact read, the literal values it is compared with (bool facts: True and False).

        Returns:
            A fresh dict of fresh sets.
        """
        out: dict[str, set[Any]] = {}
        self._tree.constants(out)
        return out


def compile_condition(text: str) -> Condition:
    """Parse and type-check a condition against :data:`rules.facts.FACTS`.

    Args:
        text: The condition as HR wrote it.

    Returns:
        The compiled condition.

    Raises:
        ConditionError: The text does not parse or does not type-check; ``message`` says what to
            fix and ``offset`` where.
    """
    if not isinstance(text, str):
        raise ConditionError(
            f"a condition must be text, not {type(text).__name__} ({text!r}); quote it in YAML",
            0,
        )
    tree = _Parser(text).parse()
    return Condition(
        text=text,
        facts_used=frozenset(tree.facts()),
        always_true=isinstance(tree, _Const) and tree.value,
        _tree=tree,
        _eval=tree.compile(),
    )
