"""Graceful stop: SIGINT/SIGTERM stop new calls, in-flight ones get a grace period, results are written.

The ``rlhf`` command enables it; a flow run started by a Prefect worker keeps Prefect's own SIGTERM
handling (cancellation), because :func:`install_handlers` only acts when enabled.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_enabled = False
_signal: int | None = None


def enable() -> None:
    """Let the next flow run in this process take over SIGINT and SIGTERM."""
    global _enabled
    _enabled = True


def requested() -> bool:
    """True once a stop signal arrived."""
    return _signal is not None


def signal_number() -> int | None:
    """The signal that asked for the stop, if any."""
    return _signal


def reset() -> None:
    """Forget a previous stop request (tests, or several runs in one process)."""
    global _signal
    _signal = None


def _handle(signum: int, frame: FrameType | None) -> None:
    global _signal
    if _signal is not None:  # a second signal: stop now, the store already holds every finished call
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
        return
    _signal = signum


def install_handlers() -> None:
    """Install the stop handlers if enabled and on the main thread (Prefect installs its own first)."""
    if _enabled and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handle)
        signal.signal(signal.SIGTERM, _handle)
