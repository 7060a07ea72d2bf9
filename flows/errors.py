"""Input problems reported as ``file:line: field: what`` and the exception that carries them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InputProblem:
    """One problem in an input file, located by file and (1-based) line."""

    file: str
    line: int | None
    message: str
    field: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        what = f"{self.field}: {self.message}" if self.field else self.message
        return f"{where}: {what}"


class InputError(Exception):
    """Raised when a config, prompt or template file is unusable; nothing has been called or written."""

    MAX_LISTED = 20

    def __init__(self, problems: list[InputProblem]) -> None:
        self.problems = problems
        super().__init__(self.render())

    def render(self, limit: int | None = None) -> str:
        """The problems one per line: the first ``limit`` (default 20), then how many more there are."""
        limit = self.MAX_LISTED if limit is None else limit
        lines = [str(p) for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more problem(s)")
        return "\n".join(lines)
