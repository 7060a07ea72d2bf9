"""Shared helpers of the benchmark: paths, the workload, measuring a client subprocess, tables.

Every client (the floors, ``rlhf run``, the peers) runs as its own subprocess and is reaped with
``os.wait4``, whose resource usage covers that process and every descendant it waited for: CPU
seconds, with nothing of the benchmark driver in it. Peak RSS is the larger of ``wait4``'s (the largest
single process) and the peak of the whole tree's summed RSS, sampled from ``/proc`` every 0.25 s, so a
client that works in several processes is charged for all of them.
Request rates are measured at the simulator from its arrival times (``GET /_sim/stats``), which use
the system-wide monotonic clock, so they compare directly with ``time.monotonic()`` here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
VENVS = BENCH / ".venvs"
PROJECT_PYTHON = ROOT / ".venv" / "bin" / "python"
SOURCE_PROMPTS = ROOT / "prompts" / "examples" / "alpaca_eval.jsonl"

OPENAI_KEY = "sk-bench-not-a-real-key"
ANTHROPIC_KEY = "sk-ant-bench-not-a-real-key"

# Same three providers as examples/demo.yaml: two OpenAI-kind models and one Anthropic-kind model.
MODELS: list[dict[str, Any]] = [
    {
        "source_id": "gpt-4o",
        "kind": "openai",
        "model": "gpt-4o-2024-05-13",
        "params": {"temperature": 0.7, "max_tokens": 1024, "top_p": 1.0},
    },
    {
        "source_id": "llama-3-8b",
        "kind": "openai",
        "model": "Meta-Llama-3-8B-Instruct",
        "params": {"temperature": 0.7, "max_tokens": 1024},
    },
    {
        "source_id": "claude-sonnet",
        "kind": "anthropic",
        "model": "claude-3-5-sonnet-20240620",
        "params": {"temperature": 0.7, "max_tokens": 1024},
    },
]
OPENAI_MODELS = [m for m in MODELS if m["kind"] == "openai"]

# Quiet and offline for every process we start (Prefect, curator, distilabel, HF libraries).
QUIET_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


def log(message: str) -> None:
    """Progress line on stderr (the tables go to stdout and RESULTS.md)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def prompt_file(n: int) -> Path:
    """``bench/out/prompts-N.jsonl``: N prompts cycling AlpacaEval, each with a unique id *and* text.

    The text gets a numbered suffix after the first cycle: the response store keys answers by the
    exact messages, so a repeated text would be (correctly) answered from the store instead of called.
    """
    path = OUT / f"prompts-{n}.jsonl"
    if path.is_file():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    sources = [
        json.loads(line)["prompt"] for line in SOURCE_PROMPTS.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    tmp = path.with_suffix(".partial")
    with tmp.open("w", encoding="utf-8") as handle:
        for i in range(n):
            text = sources[i % len(sources)]
            if i >= len(sources):
                text = f"{text}\n\n(bench variant {i // len(sources)})"
            handle.write(json.dumps({"id": f"b{i:07d}", "prompt": text}, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
RSS_SAMPLE_S = 0.25


def tree_rss_bytes(root_pid: int) -> int:
    """Summed resident memory of ``root_pid`` and all its descendants now (0 where ``/proc`` is absent)."""
    parents: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    total, pending = 0, [root_pid]
    while pending:
        pid = pending.pop()
        pending.extend(parents.get(pid, ()))
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_BYTES
        except (OSError, IndexError, ValueError):
            continue
    return total


@dataclass
class Measured:
    """One client run: exit code, wall time, CPU and peak RSS of its process tree, output tail."""

    code: int
    wall_s: float
    cpu_s: float
    maxrss_mb: float
    started: float  # time.monotonic() just before the process was started
    output: str = ""


def run_measured(
    command: list[str],
    env: dict[str, str | None] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 3600.0,
    log_path: Path | None = None,
) -> Measured:
    """Run ``command`` to completion; measure wall time and (via ``wait4``) its tree's CPU and peak RSS.

    ``env`` is added to the environment; a ``None`` value removes that variable.
    """
    full_env = {**os.environ, **QUIET_ENV}
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    log_path = log_path or OUT / "last-client.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as sink:
        started = time.monotonic()
        proc = subprocess.Popen(
            command, env=full_env, cwd=cwd or ROOT, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = started + timeout_s
        tree_peak, next_sample = 0, started
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() >= next_sample:
                tree_peak = max(tree_peak, tree_rss_bytes(proc.pid))
                next_sample = time.monotonic() + RSS_SAMPLE_S
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log_path.read_text(errors="replace")
    return Measured(
        code=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        maxrss_mb=max(usage.ru_maxrss / 1024.0, tree_peak / 1024.0 / 1024.0),
        started=started,
        output=text[-3000:],
    )


@dataclass
class Row:
    """One line of a throughput table."""

    client: str
    prompts: int
    expected: int
    served: int = 0
    rate: float | None = None
    wall_s: float | None = None
    startup_s: float | None = None
    cpu_per_1k: float | None = None
    maxrss_mb: float | None = None
    note: str = ""
    floor_rate: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        return self.rate is None

    def ratio(self) -> str:
        if self.rate is None or not self.floor_rate:
            return "–"
        return f"{self.rate / self.floor_rate:.2f}×"


def arrival_rate(
    stats: dict[str, Any], expected_per_model: dict[str, int] | None = None
) -> tuple[float | None, float | None, int]:
    """Requests/s at the simulator from the first to the last arrival, the first arrival, and the count.

    With ``expected_per_model``, extra early requests of a model (a peer's start-up probe) are left
    out: the last ``expected`` arrivals of each model are the benchmark's requests.
    """
    times: list[float] = []
    for model, arrivals in stats.get("request_times", {}).items():
        if expected_per_model is not None and model in expected_per_model:
            arrivals = sorted(arrivals)[-expected_per_model[model] :] if expected_per_model[model] else []
        times.extend(arrivals)
    if len(times) < 2:
        return None, (min(times) if times else None), len(times)
    times.sort()
    span = times[-1] - times[0]
    return ((len(times) - 1) / span if span > 0 else None), times[0], len(times)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table."""
    text_columns = {"note", "wanted", "measured", "met"}
    align = ["---" if i == 0 or h in text_columns else "---:" for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a table, or an en dash."""
    return "–" if value is None else f"{value:,.{digits}f}"


def write_section(markdown: str, begin: str, end: str, path: Path = BENCH / "RESULTS.md") -> None:
    """Replace the section between the markers ``begin`` and ``end`` in RESULTS.md, or append it at the end."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + markdown + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + markdown + "\n"
    path.write_text(text, encoding="utf-8")
