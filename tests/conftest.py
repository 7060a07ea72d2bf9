"""Shared fixtures: Prefect's real local API (once per session), the provider simulator, config files.

Environment first: Prefect reads its settings at import, so PREFECT_HOME, TMPDIR and the quiet/offline
switches are set here, before any test module imports Prefect.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_SCRATCH = Path(tempfile.mkdtemp(prefix="rlhf-tests-"))
# Registered before Prefect's own exit hooks, so it runs after them (atexit is last-in, first-out).
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
os.environ["PREFECT_HOME"] = str(_SCRATCH / "prefect")
os.environ["TMPDIR"] = str(_SCRATCH / "tmp")
(_SCRATCH / "tmp").mkdir()
tempfile.tempdir = str(_SCRATCH / "tmp")
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)

import pytest  # noqa: E402
import yaml  # noqa: E402

from providers.config import ProviderConfig  # noqa: E402
from simulator import RunningSimulator, SimulatorSettings  # noqa: E402

FAKE_OPENAI_KEY = "sk-test-FAKEKEY-0penai-7c1d9e"
FAKE_ANTHROPIC_KEY = "sk-ant-test-FAKEKEY-4nthr0pic-5b2a"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A real Prefect API (temporary local server on SQLite) for the whole session; yields its URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def _session_simulator() -> Iterator[RunningSimulator]:
    with RunningSimulator(mode="derived") as sim:
        yield sim


@pytest.fixture
def sim(_session_simulator: RunningSimulator) -> Iterator[RunningSimulator]:
    """The simulator, reset to its defaults (derived answers, no latency, no faults) for each test: every
    setting of its model, so a setting added later cannot leak from one test into the next."""
    defaults = SimulatorSettings(mode="derived")
    _session_simulator.configure(**{name: getattr(defaults, name) for name in SimulatorSettings.model_fields})
    _session_simulator.reset()
    yield _session_simulator


@pytest.fixture
def fake_keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Recognisable fake API keys in the environment (tests grep outputs for them)."""
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_ANTHROPIC_KEY)
    return {"openai": FAKE_OPENAI_KEY, "anthropic": FAKE_ANTHROPIC_KEY}


def flow_run_artifacts(flow_run_id: Any) -> list[Any]:
    """The artifacts a finished Prefect flow run published (read from the API the test runs against)."""
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> list[Any]:
        async with get_client() as client:
            run_filter = ArtifactFilterFlowRunId(any_=[flow_run_id])
            return await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=run_filter))

    return asyncio.run(read())


def closed_port_url() -> str:
    """``http://127.0.0.1:PORT`` where nothing listens (the port was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def exits_within(pid: int, timeout_s: float = 30.0) -> bool:
    """Whether ``pid`` exits within ``timeout_s`` (a zombie no one reaped counts as exited)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
                return True
        except OSError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def child_processes(parent: int, marker: bytes) -> list[int]:
    """Process ids of the children of ``parent`` whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == parent and marker in cmdline:
            found.append(int(entry.name))
    return found


def provider_entry(sim: RunningSimulator, source_id: str, kind: str, model: str, **extra: Any) -> dict[str, Any]:
    """A provider block pointing at the simulator, with fast retries for tests."""
    entry: dict[str, Any] = {
        "source_id": source_id,
        "kind": kind,
        "model": model,
        "base_url": sim.openai_base_url if kind == "openai" else sim.anthropic_base_url,
        "params": {"temperature": 0.5, "max_tokens": 512},
        "max_concurrency": 8,
        "timeout_s": 5,
        "max_retries": 3,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
    }
    entry.update(extra)
    return entry


def provider_config(sim: RunningSimulator, kind: str, model: str = "model-under-test", **extra: Any) -> ProviderConfig:
    """A provider config for calling the simulator directly (``source_id`` ``<kind>-src``, fast retries)."""
    extra.setdefault("params", {"temperature": 0.2, "max_tokens": 4096})  # room for every derived answer
    return ProviderConfig(**provider_entry(sim, f"{kind}-src", kind, model, **extra))


def three_providers(sim: RunningSimulator) -> list[dict[str, Any]]:
    """Two OpenAI-kind providers and one Anthropic-kind provider on the simulator."""
    return [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o"),
        provider_entry(sim, "llama-3", "openai", "llama-3-8b"),
        provider_entry(sim, "claude", "anthropic", "claude-sonnet-4-5"),
    ]


def write_prompts(path: Path, count: int, start: int = 0) -> Path:
    """A JSONL prompt file with ``count`` distinct prompts ``p-000``…"""
    import json

    with path.open("w", encoding="utf-8") as handle:
        for i in range(start, start + count):
            handle.write(
                json.dumps({"id": f"p-{i:03d}", "prompt": f"Question number {i}: why is the sky blue?"}) + "\n"
            )
    return path


def write_config(tmp_path: Path, providers: list[dict[str, Any]], prompts: Path, **extra: Any) -> Path:
    """A run config YAML in ``tmp_path`` writing its output under ``tmp_path/out``."""
    config: dict[str, Any] = {
        "project": "test-project",
        "batch": "b1",
        "prompts": {"path": str(prompts)},
        "providers": providers,
        "annotation": {"template": "default", "seed": 3},
        "output": {"dir": str(tmp_path / "out")},
    }
    config.update(extra)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Label Studio on 127.0.0.1 for the session (installed once into its own cached venv)."""
    from platforms.label_studio.local_server import LabelStudioServer

    scratch = tmp_path_factory.mktemp("label-studio")
    server = LabelStudioServer(scratch / "data", scratch / "label-studio.log").start()
    try:
        yield server
    finally:
        server.stop()


# A real PostgreSQL for the tests that need one (tests/pg_server.py): one server per session, a fresh empty
# database per test (its password in the environment variable pg_server.PASSWORD_ENV).
import pg_server  # noqa: E402 - after the environment is set, like every import here

postgres_server = pg_server.postgres_server
postgres_url = pg_server.postgres_url

# A real S3-compatible server (moto's, tests/s3_server.py): one per session, a fresh bucket per test, with fake
# credentials and AWS_ENDPOINT_URL set for that test only.
from s3_server import s3_bucket, s3_server  # noqa: E402, F401
