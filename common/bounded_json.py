"""JSON read from input files with a bound on nesting: Python's parser (and every walk over what it returns)
recurses, so ``[[[[…`` 200,000 deep would end in a ``RecursionError`` instead of a problem at its line."""

from __future__ import annotations

import json
from typing import Any

# Deeper than any prompt record or annotated task needs to be.
MAX_JSON_DEPTH = 100


class TooDeep(ValueError):
    """JSON nested deeper than ``MAX_JSON_DEPTH`` (a ``ValueError``, as invalid JSON is)."""

    def __init__(self, limit: int = MAX_JSON_DEPTH) -> None:
        super().__init__(f"nested deeper than {limit} levels")


def loads(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads``; :class:`TooDeep` for lists and objects nested deeper than ``limit``."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise TooDeep(limit) from None
    if deeper_than(value, limit):
        raise TooDeep(limit)
    return value


def deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects in ``value`` nest deeper than ``limit`` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
