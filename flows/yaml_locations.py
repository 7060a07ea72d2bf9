"""Map a validation error's location (``providers[1].source_id``) back to a line of the YAML file."""

from __future__ import annotations

from collections.abc import Sequence

import yaml


def _real(loc: Sequence[int | str]) -> list[int | str]:
    # Union members are tagged "<name>"/"<inline>" by the models: they are not part of the YAML path.
    return [part for part in loc if not (isinstance(part, str) and part.startswith("<"))]


def format_loc(loc: Sequence[int | str]) -> str:
    """``('providers', 1, 'source_id')`` -> ``providers[1].source_id``."""
    out = ""
    for part in _real(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def line_of(root: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """1-based line of the deepest node of ``loc`` that exists in the composed YAML tree."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in _real(loc):
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key_node, value_node in node.value:
                if getattr(key_node, "value", None) == part:
                    # Point at the key's line: for a nested block the value starts on the next line.
                    line = key_node.start_mark.line + 1
                    child = value_node
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def duplicate_keys(root: yaml.Node | None) -> list[tuple[int, str]]:
    """``(line, key)`` of every mapping key that repeats an earlier key of the same mapping.

    YAML loaders silently keep the last value; in a run config that hides a mistake.
    """
    found: list[tuple[int, str]] = []
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = getattr(key_node, "value", None)
                if isinstance(key, str):
                    if key in seen:
                        found.append((key_node.start_mark.line + 1, key))
                    seen.add(key)
                stack.append(value_node)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return sorted(found)
