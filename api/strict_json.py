"""Request JSON parsed with limits: size, nesting depth, and finite numbers only.

``json.loads`` accepts ``NaN``, ``Infinity`` and ``1e400`` (infinity), and raises
``RecursionError`` on a few thousand nested brackets. Both reached Duly's handlers: a NaN went
into the audit log's JSON and a deep statement escaped as a 500. :func:`loads` refuses each with
a :class:`JsonRefused` whose message says what is wrong, for a 400.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Nesting (objects and arrays) a request may hold. An xAPI statement needs about 8 levels
#: (context.contextActivities.grouping[].definition.extensions...); 32 leaves room for extensions.
MAX_DEPTH = 32
#: The largest body parsed here, in bytes (also the API's default body limit).
MAX_BYTES = 1024 * 1024


class JsonRefused(ValueError):
    """The body is not JSON Duly accepts; ``str(exc)`` says why (safe to show the client)."""


def _constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not a JSON number; send a finite number or null")


def _walk(value: Any, *, finite: bool) -> int:
    """How deeply ``value`` nests (a scalar is 0); with ``finite``, refuse infinite floats.

    One iterative pass (no recursion, so no depth can exhaust the stack here).
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            # json.loads reads 1e400 as inf without asking parse_constant.
            if finite and isinstance(item, float) and not math.isfinite(item):
                raise JsonRefused("a number is out of range (over 1.8e308); send a finite number")
            continue
        deepest = max(deepest, level + 1)
        stack.extend((child, level + 1) for child in children)
    return deepest


def depth(value: Any) -> int:
    """How deeply ``value`` nests lists and dicts (a scalar is 0), without recursion."""
    return _walk(value, finite=False)


def loads(raw: bytes | str, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``raw`` as JSON within the limits.

    Args:
        raw: The request body.
        max_bytes: The largest body accepted.
        max_depth: The deepest nesting accepted.

    Returns:
        The decoded value.

    Raises:
        JsonRefused: Too large, not UTF-8 JSON, nested deeper than ``max_depth``, or holding
            ``NaN``/``Infinity`` or a number too large for a float.
    """
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise JsonRefused(f"the body has {size:,} bytes, more than the {max_bytes:,} allowed")
    try:
        value = json.loads(raw, parse_constant=_constant)
    except JsonRefused:
        raise
    except RecursionError:
        # The C scanner stops at the interpreter's recursion limit; that is far past ours.
        raise JsonRefused(
            f"the body nests objects or arrays more than {max_depth} levels deep"
        ) from None
    except json.JSONDecodeError as exc:
        raise JsonRefused(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError as exc:
        # Not UTF-8, or an integer literal longer than Python converts (4,300 digits).
        raise JsonRefused(f"the body is not valid JSON: {str(exc)[:120]}") from None
    if _walk(value, finite=True) > max_depth:
        raise JsonRefused(f"the body nests objects or arrays more than {max_depth} levels deep")
    return value
