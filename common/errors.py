"""Input problems reported as ``file:line: field: what`` and the exception that carries them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def location(file: str, line: int | None, field: str | None = None) -> str:
    """``file:line: field``, leaving out what is not known."""
    where = f"{file}:{line}" if line is not None else file
    return f"{where}: {field}" if field else where


@dataclass(frozen=True, slots=True)
class InputProblem:
    """One problem in an input file, located by file and (1-based) line.

    ``context`` is where the file was referred to from, e.g. ``run.yaml:4: prompts.path``.
    """

    file: str
    line: int | None
    message: str
    field: str | None = None
    context: str | None = None

    def __str__(self) -> str:
        text = f"{location(self.file, self.line, self.field)}: {self.message}"
        return f"{text} (from {self.context})" if self.context else text


class InputError(Exception):
    """Raised when a config, prompt or template file is unusable; nothing has been called or written."""

    MAX_LISTED = 20

    def __init__(self, problems: list[InputProblem], hint: str | None = None) -> None:
        self.problems = problems
        self.hint = hint  # what to do about them, printed after the list (e.g. ``--skip-invalid``)
        super().__init__(self.render())

    def render(self, limit: int | None = None) -> str:
        """The problems one per line: the first ``limit`` (default 20), then how many more there are.

        A prompt template's error (field ``template``) is the template's, not the records': each distinct
        one is listed once, with how many more records it hit and their first lines.
        """
        limit = self.MAX_LISTED if limit is None else limit
        lines = _grouped(self.problems)
        shown = lines[:limit]
        if len(lines) > limit:
            shown.append(f"... and {len(lines) - limit} more problem(s)")
        return "\n".join(shown)


def _grouped(problems: list[InputProblem], first_lines: int = 5) -> list[str]:
    groups: dict[tuple[str, str | None, str, str | None], list[InputProblem]] = {}
    order: list[InputProblem | tuple[str, str | None, str, str | None]] = []
    for problem in problems:
        if problem.field != "template" or problem.line is None:
            order.append(problem)
            continue
        key = (problem.file, problem.field, problem.message, problem.context)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(problem)
    lines = []
    for item in order:
        if isinstance(item, InputProblem):
            lines.append(str(item))
            continue
        same = groups[item]
        text = str(same[0])
        if len(same) > 1:
            more = [str(p.line) for p in same[1 : first_lines + 1]]
            more_text = ", ".join(more) + (", …" if len(same) > first_lines + 1 else "")
            text += f" [the same in {len(same) - 1} more record(s): line{'s' if len(same) > 2 else ''} {more_text}]"
        lines.append(text)
    return lines


def referred_from(problems: list[InputProblem], context: str) -> list[InputProblem]:
    """The same problems, each saying where its file was referred to from (``run.yaml:4: prompts.path``)."""
    return [replace(p, context=context) for p in problems]


def lone_surrogates(value: Any, loc: tuple[int | str, ...] = ()) -> Iterator[tuple[tuple[int | str, ...], str]]:
    """``(location, message)`` of every string in ``value`` (nested lists and mappings, keys too) that
    holds a lone surrogate: text that cannot be written as UTF-8 (a JSON ``\\ud800`` escape without its
    pair, a YAML ``"\\ud800"``, an environment variable that was not UTF-8).

    A key holding one is named with the surrogate escaped, so the location itself can always be printed.
    """
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        if found:
            yield loc, f"not valid Unicode: lone surrogate U+{ord(found.group()):04X} at character {found.start() + 1}"
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and _SURROGATE.search(key):
                yield (
                    (*loc, key.encode("utf-8", "backslashreplace").decode()),
                    "not valid Unicode: the key holds a lone surrogate",
                )
            else:
                yield from lone_surrogates(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from lone_surrogates(item, (*loc, index))
