"""Graceful stop: SIGINT/SIGTERM stop new calls, in-flight ones get a grace period, results are written.

The ``rlhf`` command enables it; a flow run started by a Prefect worker keeps Prefect's own SIGTERM
handling (cancellation), because :func:`install_handlers` only acts when enabled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Coroutine, Iterable
from types import FrameType
from typing import Any

_POLL_S = 0.25
_enabled = False
_signal: int | None = None

DEFAULT_GRACE_S = 30.0
"""How long calls in flight may go on after a stop signal: Kubernetes' default termination grace period."""
GRACE_ENV = "RLHF_STOP_GRACE_S"
_grace_s: float | None = None


def set_grace(seconds: float | None) -> None:
    """Set the stop grace for runs in this process (``rlhf run --stop-grace-s``); None: the environment's."""
    global _grace_s
    _grace_s = seconds


def grace_s() -> float:
    """The stop grace in force: :func:`set_grace`'s, else ``RLHF_STOP_GRACE_S``, else :data:`DEFAULT_GRACE_S`.

    A value in the environment that is not a non-negative number raises ``ValueError`` naming it.
    """
    if _grace_s is not None:
        return _grace_s
    raw = os.environ.get(GRACE_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_GRACE_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{GRACE_ENV}={raw!r}: give the stop grace in seconds, a number >= 0")
    return value


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


# Prefect's temporary local server (no PREFECT_API_URL) is a child process. In the terminal's process
# group a Ctrl-C reached it too: it died at once while the run was still stopping gracefully, and the
# run then spent minutes retrying the API (state changes, logs, the report) and ended in tracebacks.
# Started in a session of its own it only hears from this process: Prefect stops it at exit, and it
# stops itself when this process is gone (kill -9, a terminal closing), so it never outlives the run.
_WATCH_PARENT = """\
import os, runpy, signal, sys, threading, time
parent = int(sys.argv[1])
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(15)
    os._exit(1)
threading.Thread(target=watch, daemon=True, name="watch-parent").start()
sys.argv = ["uvicorn", *sys.argv[2:]]
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""


def isolate_temporary_server() -> bool:
    """Start Prefect's temporary server, when Prefect starts one, in a session of its own.

    Call before anything talks to the Prefect API. Returns False if Prefect's server is already
    running, or its internals are not the ones this wraps (the server then shares the terminal's
    signals as before).
    """
    import subprocess

    try:
        from prefect.server.api import server as server_module
        from prefect.server.api.server import SubprocessASGIServer
    except ImportError:
        return False
    if not hasattr(SubprocessASGIServer, "_run_uvicorn_command") or not isinstance(
        getattr(SubprocessASGIServer, "_instances", None), dict
    ):
        return False

    class _Subprocess:
        """Stands in for the ``subprocess`` module in Prefect's server module while it starts the server."""

        def __getattr__(self, name: str) -> object:
            return getattr(subprocess, name)

        @staticmethod
        def Popen(args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:  # noqa: N802 - the module's name
            args = list(args)
            if args[1:3] != ["-m", "uvicorn"]:  # not the command this knows how to watch: leave it as it is
                return subprocess.Popen(args, **kwargs)  # type: ignore[call-overload]
            args = [args[0], "-c", _WATCH_PARENT, str(os.getpid()), *args[3:]]
            return subprocess.Popen(args, start_new_session=True, **kwargs)  # type: ignore[call-overload]

    class _OwnSessionServer(SubprocessASGIServer):
        def _run_uvicorn_command(self) -> subprocess.Popen[bytes]:
            server_module.subprocess = _Subprocess()  # type: ignore[attr-defined,assignment]
            try:
                return super()._run_uvicorn_command()
            finally:
                server_module.subprocess = subprocess  # type: ignore[attr-defined]

    return type(_OwnSessionServer()) is _OwnSessionServer  # registered as the server Prefect's clients start


async def gather_until_stopped(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines; after a stop request give them :func:`grace_s` seconds, then cancel the rest.

    Calls that finish within the grace are stored as usual; those cancelled were not answered.
    """
    pending = {asyncio.ensure_future(c) for c in coroutines}
    while pending:
        _, pending = await asyncio.wait(pending, timeout=_POLL_S)
        if pending and requested():
            _, pending = await asyncio.wait(pending, timeout=grace_s())
            for leftover in pending:
                leftover.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            return
