"""``${NAME}`` and ``${NAME:-default}`` in config values, expanded from the environment."""

from __future__ import annotations

import os
import re
from typing import Any

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_variable_name(value: str) -> bool:
    """Whether ``value`` looks like an environment variable's name (letters, digits and ``_``; not a digit first)."""
    return _NAME.fullmatch(value) is not None


def variables_used(data: Any, loc: tuple[int | str, ...] = ()) -> list[tuple[tuple[int | str, ...], str]]:
    """``(location, variable)`` of every ``${NAME}`` (or ``${NAME:-default}``) in ``data``, before expansion."""
    if isinstance(data, str):
        return [(loc, match.group(1)) for match in _VAR.finditer(data)]
    found: list[tuple[tuple[int | str, ...], str]] = []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        found += variables_used(value, (*loc, key))
    return found


def expand_env(data: Any, loc: tuple[int | str, ...] = ()) -> tuple[Any, list[tuple[tuple[int | str, ...], str]]]:
    """Return ``data`` with variables expanded, and ``(location, variable)`` for each unset one."""
    missing: list[tuple[tuple[int | str, ...], str]] = []
    if isinstance(data, str):

        def replace(match: re.Match[str]) -> str:
            value = os.environ.get(match.group(1))
            if not value and match.group(2) is not None:
                return match.group(2)  # as in the shell, ``:-`` also replaces a variable set to ""
            if value is None:
                missing.append((loc, match.group(1)))
                return match.group(0)
            return value

        return _VAR.sub(replace, data), missing
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            out[key], more = expand_env(value, (*loc, key))
            missing += more
        return out, missing
    if isinstance(data, list):
        items = []
        for index, value in enumerate(data):
            item, more = expand_env(value, (*loc, index))
            items.append(item)
            missing += more
        return items, missing
    return data, missing
