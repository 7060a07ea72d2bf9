"""Progress reporting from inside the flow to whoever runs it (the CLI's progress bar, or nothing)."""

from __future__ import annotations

from typing import Protocol


class ProgressSink(Protocol):
    """Receives one event per planned and per finished call."""

    def planned(self, calls: int) -> None:
        """``calls`` more (prompt, provider) pairs are part of the run (reused answers included)."""

    def finished(self, source_id: str, ok: bool, reused: bool) -> None:
        """One (prompt, provider) pair has its result."""


class _NullSink:
    def planned(self, calls: int) -> None:
        pass

    def finished(self, source_id: str, ok: bool, reused: bool) -> None:
        pass


_sink: ProgressSink = _NullSink()


def set_sink(sink: ProgressSink | None) -> None:
    """Install a sink for this process (``None`` restores the silent one)."""
    global _sink
    _sink = sink if sink is not None else _NullSink()


def sink() -> ProgressSink:
    """The sink in force."""
    return _sink
