"""Read a YAML input file and map a location in it (``providers[1].source_id``) back to its line."""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from common.errors import InputError, InputProblem, lone_surrogates


def resolve_path(base_dir: Path, value: str | Path) -> Path:
    """``value`` as written in a file in ``base_dir``: absolute paths as they are, relative ones joined to
    ``base_dir`` (``..`` folded, so ``examples/../out`` reads ``out``)."""
    path = Path(value)
    return path if path.is_absolute() else Path(os.path.normpath(base_dir / path))


def where_searched(base_dir: Path, value: str | Path) -> str:
    """The words a "not found" error adds: the directory that was searched, and why that one."""
    path = Path(value)
    searched = resolve_path(base_dir, path).parent.absolute()
    if path.is_absolute():
        return f"looked in {searched}"
    hint = f"looked in {searched}: relative paths in a config start at the config file's directory"
    if base_dir.absolute() != Path.cwd() and path.exists():
        hint += (
            f"; a file of that name exists relative to the working directory ({path.absolute()}): "
            f"write it relative to {base_dir.absolute()}, or as an absolute path"
        )
    return hint


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


# Bounds on what a YAML input may expand to (a "billion laughs" file: aliases of aliases of lists of
# aliases): every value counted as often as aliases repeat it, aliases within aliased values, and nesting.
MAX_YAML_VALUES = 100_000
MAX_ALIAS_NESTING = 10
MAX_YAML_DEPTH = 100


class YamlTooLarge(yaml.composer.ComposerError):
    """A YAML file over one of the bounds above (refused, not invalid: PyYAML would follow it)."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(None, None, message, mark)


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses, at the line it happens, a document whose aliases expand to more than
    ``MAX_YAML_VALUES`` values or nest more than ``MAX_ALIAS_NESTING`` deep, an alias inside the value it
    names (a cycle), and nesting deeper than ``MAX_YAML_DEPTH`` (PyYAML composes recursively)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._values = 0  # values so far, each alias counted as the values it stands for
        self._anchored: dict[int, tuple[int, int]] = {}  # id(anchored node) -> (values, alias nesting)
        self._nesting: list[int] = []  # alias nesting of each node being composed

    def _count(self, values: int, mark: Any) -> None:
        self._values += values
        if self._values > MAX_YAML_VALUES:
            raise YamlTooLarge(f"aliases expand this document to over {MAX_YAML_VALUES:,} values: refused", mark)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._anchored:
                raise YamlTooLarge(f"alias *{event.anchor} is inside the value it names", event.start_mark)
            node = super().compose_node(parent, index)  # an undefined alias is PyYAML's error
            values, nesting = self._anchored[id(node)]
            if nesting + 1 > MAX_ALIAS_NESTING:
                raise YamlTooLarge(
                    f"aliases nest more than {MAX_ALIAS_NESTING} deep (alias *{event.anchor}): refused",
                    event.start_mark,
                )
            self._count(values, event.start_mark)
            if self._nesting:
                self._nesting[-1] = max(self._nesting[-1], nesting + 1)
            return node
        if len(self._nesting) >= MAX_YAML_DEPTH:
            raise YamlTooLarge(f"nested more than {MAX_YAML_DEPTH} levels deep: refused", event.start_mark)
        before = self._values
        self._count(1, event.start_mark)
        self._nesting.append(0)
        node = super().compose_node(parent, index)
        nesting = self._nesting.pop()
        if self._nesting:
            self._nesting[-1] = max(self._nesting[-1], nesting)
        if event.anchor is not None:
            self._anchored[id(node)] = (self._values - before, nesting)
        return node


def read_yaml(path: Path) -> tuple[yaml.Node | None, Any]:
    """The composed tree (for :func:`line_of`) and the data of a YAML file; :class:`InputError` if unreadable,
    or if its aliases expand it beyond the bounds above (``MAX_YAML_VALUES``, ``MAX_ALIAS_NESTING``)."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError([InputProblem(name, None, "file not found")]) from None
    except IsADirectoryError:
        raise InputError([InputProblem(name, None, "is a directory, not a file")]) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError([InputProblem(name, line, f"not valid UTF-8 ({exc.reason})")]) from None
    loader = _BoundedLoader(text)
    try:
        root = loader.get_single_node()
        return root, (loader.construct_document(root) if root is not None else None)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        mark_line: int | None = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        prefix = "" if isinstance(exc, YamlTooLarge) else "invalid YAML: "
        raise InputError([InputProblem(name, mark_line, f"{prefix}{problem}")]) from None
    finally:
        loader.dispose()


def problem_at(file: str, root: yaml.Node | None, loc: Sequence[int | str], message: str) -> InputProblem:
    """A problem at ``loc`` of a YAML file: its line and its field (``providers[1].source_id``)."""
    return InputProblem(file, line_of(root, loc), message, format_loc(loc) or None)


def surrogate_problems(file: str, root: yaml.Node | None, data: Any) -> list[InputProblem]:
    """Every string of ``data`` that is not valid Unicode (a YAML ``"\\ud800"``, an undecodable variable)."""
    return [problem_at(file, root, loc, message) for loc, message in lone_surrogates(data)]


def validation_problems(
    file: str, root: yaml.Node | None, exc: ValidationError, model: type[BaseModel] | None = None
) -> list[InputProblem]:
    """pydantic's errors as problems at their line and field (``unknown key`` for an extra one, with the
    allowed key it most likely misspells when ``model``, the validated model, is given)."""
    problems = []
    for err in exc.errors():
        if err["type"] == "missing" and _real(err["loc"]) and isinstance(_real(err["loc"])[-1], str):
            problems.append(_missing(file, root, err["loc"]))
            continue
        if err["type"] == "extra_forbidden":
            message = "unknown key" + _suggestion(model, err["loc"])
        else:
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] in ("literal_error", "enum") and isinstance(err.get("input"), str):
                message += _value_suggestion(err["input"], str((err.get("ctx") or {}).get("expected", "")))
        problems.append(problem_at(file, root, err["loc"], message))
    return problems


def _missing(file: str, root: yaml.Node | None, loc: Sequence[int | str]) -> InputProblem:
    """A required key that is not there, named, at the line of the mapping it belongs in: none for a key of
    the file's top level (the file's first line holds some other key, and pointing there misleads)."""
    real = _real(loc)
    parent = real[:-1]
    where = f"{format_loc(parent)} has" if parent else "the file has"
    line = line_of(root, parent) if parent else None
    return InputProblem(file, line, f"required, but {where} no '{real[-1]}:' key", format_loc(loc))


_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


def _value_suggestion(value: str, expected: str) -> str:
    """`` (did you mean 'anthropic'?)`` for a value that misspells one of the ``expected`` ones (pydantic's
    ``'openai' or 'anthropic'``), or nothing."""
    match = did_you_mean(value, _QUOTED.findall(expected), cutoff=0.7)
    return f" (did you mean '{match}'?)" if match is not None and match != value else ""


def did_you_mean(key: str, known: list[str] | tuple[str, ...] | frozenset[str], cutoff: float = 0.8) -> str | None:
    """The known key ``key`` is most likely a misspelling of (``temprature`` -> ``temperature``), if any."""
    matches = difflib.get_close_matches(key, sorted(known), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def _suggestion(model: type[BaseModel] | None, loc: Sequence[int | str]) -> str:
    """`` (did you mean 'temperature'?)`` for an unknown key at ``loc`` of ``model``, or nothing."""
    if model is None or not loc or not isinstance(loc[-1], str):
        return ""
    key = loc[-1]
    models = _models_at(model, loc[:-1])
    allowed = sorted({name for m in models for name in m.model_fields})
    match = did_you_mean(key, allowed, cutoff=0.75)
    if match is not None:
        return f" (did you mean '{match}'?)"
    for m in models:
        for parent, keys in getattr(m, "nested_key_hints", {}).items():
            match = did_you_mean(key, keys, cutoff=0.75)
            if match is not None:
                return f" (did you mean '{parent}: {{{match}: …}}'?)"
    return ""


def _models_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[type[BaseModel]]:
    """The pydantic models that can sit at ``loc`` inside ``model`` (list indexes and union tags skipped)."""
    models = [model]
    for part in loc:
        if not isinstance(part, str) or part.startswith("<"):
            continue
        found: list[type[BaseModel]] = []
        for m in models:
            field = m.model_fields.get(part)
            if field is not None:
                found += _models_in(field.annotation)
        models = found
    return models


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every pydantic model a type annotation can hold (through Optional, unions, lists, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found
