"""Helpers that run the simulator for tests and benchmarks: in a thread or in a subprocess."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from aiohttp import web

from simulator.batches import summaries
from simulator.server import (
    SIMULATOR_KEY,
    Simulator,
    bind_socket,
    build_app,
    make_runner,
)
from simulator.settings import FaultRule, SimulatorSettings

T = TypeVar("T")

HOST = "127.0.0.1"
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent
_LISTENING_PREFIX = "simulator listening on "


def _jsonable_patch(fields: dict[str, Any]) -> dict[str, Any]:
    """Copy of a settings patch with FaultRule objects turned into plain dicts."""
    patch = dict(fields)
    if patch.get("faults") is not None:
        patch["faults"] = [
            rule.model_dump(mode="json") if isinstance(rule, FaultRule) else rule for rule in patch["faults"]
        ]
    return patch


def _settings_from(settings: SimulatorSettings | None, fields: dict[str, Any]) -> SimulatorSettings:
    base = settings or SimulatorSettings()
    return base.merged(_jsonable_patch(fields)) if fields else base


class _SimulatorUrls:
    """URL properties shared by the in-thread and subprocess simulators."""

    _port: int

    @property
    def port(self) -> int:
        """The TCP port the simulator listens on (on 127.0.0.1)."""
        return self._port

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self._port}"

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for the OpenAI SDK (``url + "/v1"``)."""
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Anthropic base URL (the host root; post to ``{anthropic_base_url}/v1/messages``)."""
        return self.url


class RunningSimulator(_SimulatorUrls):
    """A simulator served from a background thread with its own event loop on 127.0.0.1.

    Use as a context manager (``with RunningSimulator(latency_ms=5) as sim: ...``) or call
    :meth:`start` / :meth:`close`. Keyword arguments are :class:`SimulatorSettings` fields.
    """

    def __init__(self, settings: SimulatorSettings | None = None, **fields: Any) -> None:
        self._initial_settings = _settings_from(settings, fields)
        self._port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._sim: Simulator | None = None

    def start(self) -> RunningSimulator:
        """Start serving; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        sock = bind_socket(HOST, 0)
        self._port = sock.getsockname()[1]
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        errors: list[BaseException] = []

        async def startup() -> None:
            app = build_app(self._initial_settings)
            self._sim = app[SIMULATOR_KEY]
            self._runner = make_runner(app)
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(startup())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                errors.append(exc)
                ready.set()
                loop.close()
                sock.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
                sock.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"simulator-{self._port}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=10):
            self.close()
            raise RuntimeError("simulator did not start within 10 s")
        if errors:
            self._thread.join()
            self._thread = self._loop = None
            raise RuntimeError("simulator failed to start") from errors[0]
        return self

    def _call(self, fn: Callable[[Simulator], T]) -> T:
        """Run ``fn(simulator)`` on the server loop and return its result (thread-safe)."""
        if self._loop is None or self._sim is None:
            raise RuntimeError("simulator is not running")
        sim = self._sim

        async def call() -> T:
            return fn(sim)

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=10)

    @property
    def settings(self) -> SimulatorSettings:
        """The current settings."""
        return self._call(lambda sim: sim.settings)

    def configure(self, **fields: Any) -> SimulatorSettings:
        """Update settings (e.g. ``latency_ms=20, faults=[FaultRule(kind="429", times=1)]``).

        Fault counters restart when ``faults`` or ``seed`` is given. Returns the new settings.
        """
        patch = _jsonable_patch(fields)
        return self._call(lambda sim: sim.configure(patch))

    def stats(self) -> dict[str, Any]:
        """Statistics, same shape as ``GET /_sim/stats``."""
        return self._call(lambda sim: sim.snapshot())

    def reset(self) -> None:
        """Clear statistics, fault-rule counters, batches and files."""
        self._call(lambda sim: sim.reset())

    def batches(self) -> list[dict[str, Any]]:
        """Every batch of both APIs, oldest first, brought up to date (same shape as
        ``GET /_sim/batches``): ``api``, ``id``, ``status`` (OpenAI ``status`` or Anthropic
        ``processing_status``), ``total``, ``request_counts`` (succeeded, errored, expired, canceled,
        processing), ``custom_ids`` and ``metadata``."""
        return self._call(summaries)

    def close(self) -> None:
        """Stop the server, its thread and its event loop (idempotent)."""
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        if runner is not None and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=5)
            except Exception:  # noqa: BLE001 - best effort, the loop is stopped below anyway
                pass
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._loop = self._thread = self._runner = self._sim = None

    def __enter__(self) -> RunningSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SimulatorProcess(_SimulatorUrls):
    """A simulator running as ``python -m simulator`` in a subprocess, driven over HTTP."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, stderr_path: Path) -> None:
        self._process = process
        self._port = port
        self._stderr_path = stderr_path
        self._client = httpx.Client(base_url=f"http://{HOST}:{port}", timeout=10.0, trust_env=False)

    @property
    def pid(self) -> int:
        """Process id of the simulator subprocess."""
        return self._process.pid

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The underlying ``subprocess.Popen`` object."""
        return self._process

    def configure(self, **fields: Any) -> SimulatorSettings:
        """Update settings through ``PUT /_sim/settings``; returns the new settings."""
        response = self._client.put("/_sim/settings", json=_jsonable_patch(fields))
        response.raise_for_status()
        return SimulatorSettings.model_validate(response.json())

    def stats(self) -> dict[str, Any]:
        """``GET /_sim/stats``."""
        response = self._client.get("/_sim/stats")
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        """``POST /_sim/reset``."""
        self._client.post("/_sim/reset").raise_for_status()

    def batches(self) -> list[dict[str, Any]]:
        """``GET /_sim/batches`` (see :meth:`RunningSimulator.batches`)."""
        response = self._client.get("/_sim/batches")
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        """Terminate the subprocess (SIGTERM, then SIGKILL after 5 s) and release resources."""
        self._client.close()
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr_path.unlink(missing_ok=True)

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_simulator_process(port: int = 0, *, startup_timeout_s: float = 20.0, **settings: Any) -> SimulatorProcess:
    """Start ``python -m simulator`` on 127.0.0.1 (port 0 = a free port) and wait until ready.

    Keyword arguments are :class:`SimulatorSettings` fields (``faults`` may hold FaultRule
    objects or dicts).
    """
    resolved = _settings_from(None, settings)
    fd, stderr_name = tempfile.mkstemp(prefix="simulator-", suffix=".stderr")
    stderr_path = Path(stderr_name)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_PARENT), env.get("PYTHONPATH")) if p)
    command = [
        sys.executable,
        "-m",
        "simulator",
        "--host",
        HOST,
        "--port",
        str(port),
        "--settings-json",
        resolved.model_dump_json(),
    ]
    with os.fdopen(fd, "wb") as stderr_file:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr_file, env=env)
    assert process.stdout is not None
    deadline = time.monotonic() + startup_timeout_s
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        readable, _, _ = select.select([process.stdout], [], [], remaining)
        if not readable:
            break
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            break
        line += chunk
    text = line.decode(errors="replace").strip()
    if not text.startswith(_LISTENING_PREFIX):
        process.kill()
        process.wait()
        process.stdout.close()
        stderr = stderr_path.read_text(errors="replace")[-2000:]
        stderr_path.unlink(missing_ok=True)
        raise RuntimeError(f"simulator process did not start (stdout={text!r}); stderr:\n{stderr}")
    real_port = int(text.rsplit(":", 1)[1])
    return SimulatorProcess(process, real_port, stderr_path)
