"""A Jinja2 sandbox with a work budget, for the HR-authored templates of rules packs.

Jinja's :class:`~jinja2.sandbox.SandboxedEnvironment` stops a template from reaching Python
internals, but not from burning CPU and memory: ``{{ "a" * 10**9 }}`` allocates a gigabyte and
two nested ``range(100000)`` loops run ten billion iterations. :class:`BoundedSandbox` bounds
both, per rendered message (see :func:`render_budget`):

* every value a template builds (``*``, ``+``, ``%``, ``~``, a filter's or a method's result, a
  ``namespace`` attribute) holds at most :data:`MAX_VALUE` characters or items, checked before
  the big allocations (repetition, padding, joins, replacements) and after the others;
* numbers passed to calls and filters are at most :data:`MAX_VALUE` and exponents at most
  :data:`MAX_EXPONENT`;
* loop iterations, calls and output together spend at most :data:`MAX_STEPS` steps (output
  costs one step per 100 characters), and a rendered part is at most :data:`MAX_OUTPUT`
  characters.

Going over any bound raises :class:`TemplateLimitError`: a lint error when a pack is validated
or deployed (:func:`notifications.messages.template_errors` renders every override), and a
non-retryable activity failure if a template slips past with data the samples did not have —
never an activity retrying forever.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer
from temporalio.exceptions import ApplicationError

#: Characters (or items) in any value a template builds, and in one rendered part.
MAX_VALUE = 100_000
MAX_OUTPUT = 100_000
#: Loop iterations + calls + output/100 characters per rendered message.
MAX_STEPS = 100_000
MAX_EXPONENT = 100

_ITER_FILTER = "_duly_counted"
_SIZE_FILTER = "_duly_sized"
#: A width or precision of six digits or more in a format string ("%999999s", "{:>999999}").
_HUGE_FORMAT_NUMBER = re.compile(r"\d{6,}")


class TemplateLimitError(ApplicationError, SecurityError):
    """A template exceeded the sandbox's bounds; retrying cannot help (non-retryable)."""

    def __init__(self, message: str) -> None:
        """Say which bound was exceeded and how to fix the template."""
        super().__init__(
            f"template too expensive: {message}; simplify the template (see "
            "notifications/sandbox.py for the bounds)",
            non_retryable=True,
        )


class _Budget:
    def __init__(self, steps: int) -> None:
        self.steps = steps

    def spend(self, steps: int, what: str) -> None:
        self.steps -= steps
        if self.steps < 0:
            raise TemplateLimitError(
                f"more than {MAX_STEPS:,} steps (loop iterations, calls, output) ({what})"
            )


_budget: ContextVar[_Budget | None] = ContextVar("duly_template_budget", default=None)


@contextmanager
def render_budget(steps: int = MAX_STEPS) -> Iterator[None]:
    """Share one step budget among every template rendered inside (one message's parts).

    A budget already active (a nested render) is kept.
    """
    if _budget.get() is not None:
        yield
        return
    token = _budget.set(_Budget(steps))
    try:
        yield
    finally:
        _budget.reset(token)


def _spend(steps: int, what: str) -> None:
    budget = _budget.get()
    if budget is None:
        # Rendered outside render_budget (a direct Template.render): a fresh budget per call
        # site would be unbounded, so refuse loudly in tests and development.
        raise TemplateLimitError("rendered outside notifications.sandbox.render_budget()")
    budget.spend(steps, what)


def _size(value: Any) -> int:
    if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
        return len(value)
    return 0


def _check_size(value: Any, what: str) -> Any:
    if _size(value) > MAX_VALUE:
        raise TemplateLimitError(f"{what} would hold more than {MAX_VALUE:,} characters or items")
    return value


def _check_numbers(args: Iterable[Any], what: str) -> None:
    for arg in args:
        if isinstance(arg, int | float) and not isinstance(arg, bool) and abs(arg) > MAX_VALUE:
            raise TemplateLimitError(f"{what} was given {arg!r}, above {MAX_VALUE:,}")


def _check_format(text: Any, what: str) -> None:
    if isinstance(text, str) and ("%" in text or "{" in text) and _HUGE_FORMAT_NUMBER.search(text):
        raise TemplateLimitError(f"{what} has a width or precision above {MAX_VALUE:,}")


def _joined_size(items: Any, separator: str) -> int:
    values = list(items) if not isinstance(items, list | tuple) else items
    _check_size(values, "a join")
    return sum(len(str(v)) for v in values) + len(separator) * max(len(values) - 1, 0)


def _replaced_size(text: str, old: str, new: str, count: int = -1) -> int:
    hits = len(text) + 1 if old == "" else text.count(old)
    if count is not None and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(len(new) - len(old), 0)


def _precheck(name: str, value: Any, params: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse a filter or method whose result would be huge, before it allocates it.

    ``value`` is what it applies to (the filtered value, or the string a method is bound to);
    ``params`` and ``kwargs`` are its parameters (widths, counts, separators).
    """
    _check_numbers((*params, *kwargs.values()), f"{name}()")
    if name == "format":
        _check_format(value, "a format string")
    elif name == "join":
        separator = str(kwargs.get("d", params[0] if params else ""))
        if _joined_size(value, separator) > MAX_VALUE:
            raise TemplateLimitError(f"join would build more than {MAX_VALUE:,} characters")
    elif name == "replace" and len(params) >= 2:
        count = params[2] if len(params) > 2 and isinstance(params[2], int) else -1
        if _replaced_size(str(value), str(params[0]), str(params[1]), count) > MAX_VALUE:
            raise TemplateLimitError(f"replace would build more than {MAX_VALUE:,} characters")


def _guard_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)  # keeps jinja_pass_arg (pass_context / pass_environment)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _spend(1, f"filter {name}")
        plain = tuple(a for a in args if not _is_jinja_internal(a))
        if plain:
            _precheck(name, plain[0], plain[1:], kwargs)
        return _check_size(function(*args, **kwargs), f"the {name} filter's result")

    return guarded


def _is_jinja_internal(value: Any) -> bool:
    module = type(value).__module__
    return module.startswith("jinja2.")


def _counted(value: Any) -> Iterator[Any]:
    for item in value:
        _spend(1, "a loop iteration")
        yield item


def _sized(value: Any) -> Any:
    _spend(1 + _size(value) // 100, "output")
    return _check_size(value, "a value")


class _BoundedNamespace(Namespace):
    """``namespace()`` whose attributes are size-checked when set (``{% set ns.x = … %}``)."""

    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, _check_size(value, f"namespace attribute {name!r}"))


class _Instrument(NodeTransformer):
    """Counts every loop iteration and sizes every ``~`` concatenation and output value."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _ITER_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(node, _SIZE_FILTER, [], [], None, None, lineno=node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [
            n
            if isinstance(n, nodes.TemplateData)
            else nodes.Filter(n, _SIZE_FILTER, [], [], None, None, lineno=n.lineno)
            for n in node.nodes
        ]
        return node


class BoundedSandbox(SandboxedEnvironment):
    """A :class:`~jinja2.sandbox.SandboxedEnvironment` with the bounds of this module."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        """Build the environment (``options`` as for Jinja's ``Environment``)."""
        super().__init__(**options)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.filters[_ITER_FILTER] = _counted
        self.filters[_SIZE_FILTER] = _sized
        self.globals["namespace"] = _BoundedNamespace

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        instrumented: nodes.Template = _Instrument().visit(tree)
        return instrumented

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        """Refuse ``*``, ``**``, ``+`` and ``%`` whose result would exceed the bounds."""
        _spend(1, f"operator {operator_}")
        if operator_ == "*":
            for sequence, times in ((left, right), (right, left)):
                length = _size(sequence)
                if length and isinstance(times, int) and length * times > MAX_VALUE:
                    raise TemplateLimitError(
                        f"repetition would build more than {MAX_VALUE:,} characters or items"
                    )
        elif operator_ == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise TemplateLimitError(f"exponent {right!r} is above {MAX_EXPONENT}")
        elif operator_ == "+":
            if _size(left) + _size(right) > MAX_VALUE:
                raise TemplateLimitError(f"+ would build more than {MAX_VALUE:,} characters")
        elif operator_ == "%":
            _check_format(left, "a % format")
        result = super().call_binop(context, operator_, left, right)
        return _check_size(result, f"the result of {operator_}")

    def call(
        __self,
        __context: Any,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Count the call and refuse arguments that would build huge values."""
        _spend(1, "a call")
        name = getattr(__obj, "__name__", "")
        bound_to = getattr(__obj, "__self__", None)
        if isinstance(bound_to, str) and name == "join":
            # sep.join(items): the items are what is joined, the string the separator.
            _precheck(name, args[0] if args else [], (bound_to,), {})
        elif isinstance(bound_to, str):
            _precheck(name, bound_to, args, kwargs)
        else:
            _check_numbers((*args, *kwargs.values()), f"{name or 'a function'}()")
        result = super().call(__context, __obj, *args, **kwargs)
        return _check_size(result, f"the result of {name or 'a call'}()")


def render_bounded(template: Any, values: Any) -> str:
    """Render a template of a :class:`BoundedSandbox` with the output bounded as it streams."""
    with render_budget():
        produced = 0
        parts: list[str] = []
        for chunk in template.generate(values):
            produced += len(chunk)
            if produced > MAX_OUTPUT:
                raise TemplateLimitError(f"the output is longer than {MAX_OUTPUT:,} characters")
            parts.append(chunk)
        return "".join(parts)


__all__ = [
    "MAX_EXPONENT",
    "MAX_OUTPUT",
    "MAX_STEPS",
    "MAX_VALUE",
    "BoundedSandbox",
    "TemplateLimitError",
    "render_bounded",
    "render_budget",
]
