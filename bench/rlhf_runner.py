"""Run ``rlhf run`` as a subprocess against the simulator, with a long-lived Prefect server.

The Prefect server (``prefect server start`` on 127.0.0.1, its own ``PREFECT_HOME`` under
``bench/out/``) is started once, so runs do not pay the ephemeral server's start-up; that start-up
is measured separately once (:func:`run_rlhf` with ``api_url=None``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchlib import (
    ANTHROPIC_KEY,
    MODELS,
    OPENAI_KEY,
    OUT,
    QUIET_ENV,
    ROOT,
    Measured,
    log,
    run_measured,
)

RLHF = ROOT / ".venv" / "bin" / "rlhf"
PREFECT = ROOT / ".venv" / "bin" / "prefect"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrefectServer:
    """``prefect server start`` on 127.0.0.1 with ``PREFECT_HOME`` under ``bench/out/prefect-home``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.home = OUT / "prefect-home"
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None

    def env(self) -> dict[str, str]:
        """Environment for a client of this server."""
        return {"PREFECT_HOME": str(self.home), "PREFECT_API_URL": self.api_url}

    def start(self, timeout_s: float = 180.0) -> PrefectServer:
        """Start the server and wait until ``/api/health`` answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **QUIET_ENV, "PREFECT_HOME": str(self.home)}
        env.pop("PREFECT_API_URL", None)
        log_file = (OUT / "prefect-server.log").open("wb")
        started = time.monotonic()
        self.process = subprocess.Popen(
            [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"prefect server exited with {self.process.returncode}; see {OUT / 'prefect-server.log'}"
                )
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        self.startup_s = time.monotonic() - started
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"prefect server did not answer within {timeout_s:.0f} s")

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group, then SIGKILL)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()

    def __enter__(self) -> PrefectServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def write_config(
    name: str, prompts: Path, sim_url: str, concurrency: int, *, fresh: bool = True, http_client: str = "default"
) -> Path:
    """A run config like examples/demo.yaml under ``bench/out/runs/NAME/``; ``fresh`` clears earlier output.

    ``http_client`` is every provider's exchange: ``default`` (the openai SDK / httpx) or ``aiohttp``.
    """
    run_root = OUT / "runs" / name
    if fresh:
        shutil.rmtree(run_root, ignore_errors=True)
    run_root.mkdir(parents=True, exist_ok=True)
    providers = []
    for model in MODELS:
        providers.append(
            {
                "source_id": model["source_id"],
                "kind": model["kind"],
                "model": model["model"],
                "base_url": f"{sim_url}/v1" if model["kind"] == "openai" else sim_url,
                "api_key_env": "BENCH_OPENAI_KEY" if model["kind"] == "openai" else "BENCH_ANTHROPIC_KEY",
                "params": model["params"],
                "max_concurrency": concurrency,
                "timeout_s": 120,
                **({"http_client": http_client} if http_client != "default" else {}),  # older checkouts lack the key
            }
        )
    config: dict[str, Any] = {
        "project": "bench",
        "batch": name,
        "prompts": {"path": str(prompts)},
        "providers": providers,
        "annotation": {"template": "default", "seed": 7},
        "output": {"dir": str(run_root / "out")},
    }
    path = run_root / "config.yaml"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")  # JSON is YAML
    return path


def run_rlhf(config: Path, api_url_env: dict[str, str] | None, log_name: str, timeout_s: float = 7200.0) -> Measured:
    """``rlhf run CONFIG -q`` as a subprocess; ``api_url_env`` None means Prefect's ephemeral server."""
    env: dict[str, str | None] = {"BENCH_OPENAI_KEY": OPENAI_KEY, "BENCH_ANTHROPIC_KEY": ANTHROPIC_KEY}
    if api_url_env is None:
        home = OUT / "prefect-home-ephemeral"
        shutil.rmtree(home, ignore_errors=True)  # a fresh database: the start-up a new user sees
        env["PREFECT_HOME"] = str(home)
        env["PREFECT_API_URL"] = None
    else:
        env.update(api_url_env)
    measured = run_measured(
        [str(RLHF), "run", str(config), "-q"], env=env, timeout_s=timeout_s, log_path=OUT / "logs" / f"{log_name}.log"
    )
    if measured.code != 0:
        log(f"rlhf run {config} exited {measured.code}: {measured.output[-800:]}")
    return measured


def run_rlhf_at(
    root: Path, config: Path, api_url_env: dict[str, str] | None, log_name: str, timeout_s: float = 7200.0
) -> Measured:
    """``rlhf run`` from another checkout of the project (its modules first on the path), same venv."""
    env: dict[str, str | None] = {
        "BENCH_OPENAI_KEY": OPENAI_KEY,
        "BENCH_ANTHROPIC_KEY": ANTHROPIC_KEY,
        "PYTHONPATH": str(root),
    }
    if api_url_env is None:
        env["PREFECT_HOME"] = str(OUT / "prefect-home-ephemeral")
        env["PREFECT_API_URL"] = None
    else:
        env.update(api_url_env)
    command = [str(ROOT / ".venv" / "bin" / "python"), "-m", "flows.cli", "run", str(config), "-q"]
    measured = run_measured(command, env=env, cwd=root, timeout_s=timeout_s, log_path=OUT / "logs" / f"{log_name}.log")
    if measured.code != 0:
        log(f"rlhf run ({root}) {config} exited {measured.code}: {measured.output[-800:]}")
    return measured


def summary_of(config: Path) -> dict[str, Any]:
    """The run's summary.json."""
    run_root = config.parent
    batch = run_root.name
    return json.loads((run_root / "out" / batch / "summary.json").read_text(encoding="utf-8"))
