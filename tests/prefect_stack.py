"""A Prefect server of its own, the process work pool, ``prefect.yaml`` deployed and two workers, for the tests
that run shards on real workers (``tests/test_sharding.py``, ``tests/test_workers_anywhere.py``)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "rlhf-process"
WORKERS = ("w1", "w2")


def free_port() -> int:
    """A loopback port nothing listens on (a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen[bytes], grace_s: float = 8.0) -> None:
    """Stop a subprocess started in its own session, and everything it started."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # children (flow-run processes) too
    except ProcessLookupError:
        pass
    process.wait()


def _wait_healthy(api: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert server.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{api}/health", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "prefect server did not start"
        time.sleep(0.5)


@contextmanager
def running_stack(
    worker_dirs: dict[str, Path] | None = None, extra_env: dict[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """The server, the pool, the deployments and workers ``w1``, ``w2`` (each started in its directory of
    ``worker_dirs``, default: the repository). Yields ``api``, ``env``, ``logs`` and ``workers``."""
    home = Path(tempfile.mkdtemp(prefix="prefect-shard-"))
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home / "home"),
        PREFECT_API_URL=api,
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        TMPDIR=str(home),
    )
    env.update(extra_env or {})
    processes: list[subprocess.Popen[bytes]] = []
    logs = home / "logs"
    logs.mkdir()

    def start(name: str, *args: str, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
        with (logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        processes.append(process)
        return process

    def cli(*args: str) -> None:
        result = subprocess.run(
            [PREFECT, "--no-prompt", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr

    try:
        server = start("server", PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port))
        _wait_healthy(api, server, logs / "server.log")
        cli("work-pool", "create", POOL, "--type", "process")
        cli("deploy", "--all")
        dirs = worker_dirs or {}
        # --limit 1: a worker runs one shard at a time, so two shards in flight land on both workers.
        workers = [
            start(
                name,
                PREFECT,
                "worker",
                "start",
                "--pool",
                POOL,
                "--name",
                name,
                "--limit",
                "1",
                cwd=dirs.get(name, ROOT),
            )
            for name in WORKERS
        ]
        yield {"api": api, "env": env, "logs": logs, "workers": workers}
    finally:
        for process in reversed(processes):  # workers first, the server last
            stop(process)
        shutil.rmtree(home, ignore_errors=True)
