"""Batch mode vs online: HTTP requests and client CPU of the same run, one provider call per request or batches.

    .venv/bin/python bench/batch_vs_online.py                 # 10,000 prompts × 3 (~3 min), updates bench/RESULTS.md
    .venv/bin/python bench/batch_vs_online.py --prompts 1000  # writes bench/out/batch_vs_online-1000.md only
    .venv/bin/python bench/batch_vs_online.py --rlhf-root DIR # `rlhf run` from another copy (e.g. a commit's git archive)

``rlhf run`` (the flow ``generate_tasks``, a subprocess using the long-lived Prefect server of the
other benchmarks) generates N prompts × the three providers of examples/demo.yaml (two OpenAI-kind, one
Anthropic-kind) on the project's simulator, in its own process. Each mode runs on a fresh output
directory (its own response store):

- **online**: every provider ``mode: online`` with ``http_client: aiohttp`` (the lean path of the
  throughput section), one chat request per prompt and provider;
- **batch**: every provider ``mode: batch`` (OpenAI's Batch API with its Files API, Anthropic's Message
  Batches; the ``openai`` SDK and httpx, whatever ``http_client`` says), polling every ``--poll-s``;
  the simulator ends a batch ``--completion-s`` after it was created;
- **rerun**: the batch run's config again, every answer already in the store: no provider request, so
  its CPU is the fixed cost (start-up, reading the store, writing the tasks) that both modes pay.

HTTP requests are counted by the simulator (``GET /_sim/stats``): online chat requests
(``requests_total``) plus every request to a batch endpoint (``batches.http_requests``: file uploads,
batch creates, polls, result downloads, look-ups). CPU and peak RSS are the client's whole process tree
(``rlhf run`` and its task-writer process; ``os.wait4`` and ``/proc``), never the simulator's or Prefect's.
Answers stored are counted in the run's response store.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import MODELS, OUT, fmt, log, markdown_table, prompt_file, write_section  # noqa: E402
from rlhf_runner import PrefectServer, run_rlhf, run_rlhf_at, summary_of, write_config  # noqa: E402

from simulator import start_simulator_process  # noqa: E402

PROMPTS = 10_000
LATENCY_MS = 50
CONCURRENCY = 8
COMPLETION_S = 1.0
POLL_S = 0.25
BEGIN, END = "<!-- batch-vs-online -->", "<!-- /batch-vs-online -->"
FAMILIES = ("openai_files", "openai_batches", "anthropic_batches")


@dataclass
class ModeRun:
    """One ``rlhf run`` and what the simulator saw of it."""

    mode: str
    label: str
    code: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    maxrss_mb: float = 0.0
    load1: float = 0.0
    chat_requests: int = 0
    batch_http: dict[str, int] = field(default_factory=dict)
    files_uploaded: int = 0
    batches_created: int = 0
    requests_submitted: int = 0
    answers_stored: int = 0
    answers_in_run: int = 0
    called_this_run: int = 0
    tasks_written: int = 0
    flow_s: float | None = None
    note: str = ""

    @property
    def http_requests(self) -> int:
        return self.chat_requests + sum(self.batch_http.values())

    @property
    def cpu_us_per_answer(self) -> float | None:
        return self.cpu_s / self.answers_in_run * 1e6 if self.answers_in_run else None


def stored_answers(summary: dict[str, Any]) -> int:
    """Successful answers in the run's response store (``ok`` rows of ``responses``)."""
    path = summary.get("files", {}).get("store")
    if not path or not Path(path).is_file():
        return 0
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT COUNT(*) FROM responses WHERE ok").fetchone()[0])


class BatchVsOnline:
    """The three runs on one simulator process; one Prefect server for all of them."""

    def __init__(
        self, prefect: PrefectServer, prompts: int, concurrency: int, poll_s: float, rlhf_root: Path | None = None
    ) -> None:
        self.prefect = prefect
        self.rlhf_root = rlhf_root
        self.prompts = prompts
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.runs: list[ModeRun] = []

    def config(self, mode: str, sim_url: str, prompts: Path) -> Path:
        name = f"bvo-{mode}-{self.prompts}"
        if mode == "online":
            return write_config(name, prompts, sim_url, self.concurrency, http_client="aiohttp")
        config = write_config(name, prompts, sim_url, self.concurrency)
        data = json.loads(config.read_text(encoding="utf-8"))
        for provider in data["providers"]:
            provider.update(mode="batch", batch_poll_s=self.poll_s)
        config.write_text(json.dumps(data, indent=2), encoding="utf-8")
        return config

    def run(self, sim: Any, rerun: bool = True) -> list[ModeRun]:
        prompts = prompt_file(self.prompts)
        online = self.config("online", sim.url, prompts)
        batch = self.config("batch", sim.url, prompts)
        self.runs.append(self.one(sim, online, "online", "online, http_client: aiohttp"))
        self.runs.append(self.one(sim, batch, "batch", "batch"))
        if rerun:
            self.runs.append(self.one(sim, batch, "rerun", "rerun of the batch run (all answers in the store)"))
        return self.runs

    def one(self, sim: Any, config: Path, mode: str, label: str) -> ModeRun:
        sim.reset()
        result = ModeRun(mode, label, load1=os.getloadavg()[0])
        log(f"batch vs online: {label}, {self.prompts:,} prompts × {len(MODELS)} (load {result.load1:.1f})")
        log_name = f"bvo-{mode}-{self.prompts}"
        if self.rlhf_root is None:
            measured = run_rlhf(config, self.prefect.env(), log_name, timeout_s=3600)
        else:
            measured = run_rlhf_at(self.rlhf_root, config, self.prefect.env(), log_name, timeout_s=3600)
        result.code, result.wall_s, result.cpu_s, result.maxrss_mb = (
            measured.code,
            measured.wall_s,
            measured.cpu_s,
            measured.maxrss_mb,
        )
        stats = sim.stats()
        batches = stats.get("batches", {})
        result.chat_requests = int(stats.get("requests_total", 0))
        result.batch_http = {family: int(n) for family, n in batches.get("http_requests", {}).items()}
        result.files_uploaded = int(batches.get("openai_files_uploaded", 0))
        result.batches_created = int(batches.get("openai_batches_created", 0)) + int(
            batches.get("anthropic_batches_created", 0)
        )
        result.requests_submitted = int(batches.get("requests_submitted", 0))
        try:
            summary = summary_of(config)
        except (OSError, ValueError):
            summary = {}
            result.note = "no summary.json"
        providers = summary.get("providers", {}).values()
        result.answers_in_run = sum(int(p.get("answered", 0)) for p in providers)
        result.called_this_run = sum(int(p.get("called_this_run", 0)) for p in providers)
        result.tasks_written = int(summary.get("tasks_written", 0))
        result.flow_s = summary.get("wall_s")
        result.answers_stored = stored_answers(summary) if summary else 0
        expected = self.prompts * len(MODELS)
        if result.code != 0:
            result.note = f"exit {result.code}"
        elif result.answers_in_run != expected:
            result.note = f"{result.answers_in_run:,} of {expected:,} answered"
        log(
            f"  → {result.http_requests:,} HTTP requests, CPU {result.cpu_s:.1f} s, wall {result.wall_s:.1f} s, "
            f"{result.answers_stored:,} answers stored, exit {result.code}"
        )
        return result


def main_table(runs: list[ModeRun]) -> str:
    rerun = next((r for r in runs if r.mode == "rerun" and r.code == 0), None)
    rows = []
    for r in runs:
        above = None
        if rerun is not None and r is not rerun and r.answers_in_run:
            above = (r.cpu_s - rerun.cpu_s) / r.answers_in_run * 1e6
        rows.append(
            [
                r.label,
                fmt(r.wall_s),
                f"{r.http_requests:,}",
                fmt(r.cpu_s),
                fmt(r.cpu_us_per_answer, 0),
                fmt(above, 0),
                fmt(r.maxrss_mb, 0),
                f"{r.answers_stored:,}",
                f"{r.called_this_run:,}",
                f"{r.load1:.1f}",
                r.note,
            ]
        )
    return markdown_table(
        [
            "mode",
            "wall s",
            "HTTP requests",
            "client CPU s",
            "CPU µs / answer",
            "µs / answer above the rerun",
            "peak RSS MB",
            "answers stored",
            "requested this run",
            "load",
            "note",
        ],
        rows,
    )


def requests_table(runs: list[ModeRun]) -> str:
    rows = []
    for r in runs:
        families = [r.batch_http.get(family, 0) for family in FAMILIES]
        other = sum(r.batch_http.values()) - r.files_uploaded - r.batches_created
        rows.append(
            [
                r.label,
                f"{r.chat_requests:,}",
                *(f"{n:,}" for n in families),
                f"{r.files_uploaded:,}",
                f"{r.batches_created:,}",
                f"{other:,}",
                f"{r.requests_submitted:,}",
            ]
        )
    return markdown_table(
        [
            "mode",
            "chat requests",
            "`/v1/files`",
            "`/v1/batches`",
            "`/v1/messages/batches`",
            "file uploads",
            "batches created",
            "polls, downloads, look-ups",
            "requests in batches",
        ],
        rows,
    )


def meaning(runs: list[ModeRun], completion_s: float, poll_s: float) -> str:
    """One paragraph on the numbers (filled in from this run)."""
    by_mode = {r.mode: r for r in runs}
    online, batch, rerun = by_mode.get("online"), by_mode.get("batch"), by_mode.get("rerun")
    if online is None or batch is None or not online.answers_in_run or not batch.answers_in_run:
        return ""
    text = (
        f"Batch mode sent the same {batch.answers_in_run:,} requests in {batch.batches_created} batches with "
        f"{batch.http_requests:,} HTTP requests in all, where online mode made {online.http_requests:,} (one per "
        "answer). The polls are few here because the simulator ends a batch "
        f"{completion_s:g} s after it was created; against a real provider they grow with how long a batch takes "
        f"divided by `batch_poll_s` ({poll_s:g} s here, 30 s by default: 120 an hour per batch), not with the "
        f"number of prompts. The client's CPU fell from {online.cpu_s:.1f} s to {batch.cpu_s:.1f} s "
        f"({online.cpu_us_per_answer:,.0f} → {batch.cpu_us_per_answer:,.0f} µs per answer): batch mode saved "
        f"{online.cpu_s - batch.cpu_s:.1f} s, {(online.cpu_s - batch.cpu_s) / batch.answers_in_run * 1e6:,.0f} µs "
        "per answer"
    )
    if rerun is not None and rerun.code == 0:
        online_above = (online.cpu_s - rerun.cpu_s) / online.answers_in_run * 1e6
        batch_above = (batch.cpu_s - rerun.cpu_s) / batch.answers_in_run * 1e6
        share = "most of" if rerun.cpu_s >= batch.cpu_s / 2 else "part of"
        text += (
            f". {share.capitalize()} what is left is the fixed cost both modes pay: the rerun, which sends nothing "
            f"and finds every answer in the store, costs {rerun.cpu_s:.1f} s (start-up, reading the store, the "
            "writer process building and writing the tasks)"
        )
        if online_above > 0 and batch_above > 0:
            text += (
                f". Above that, an answer costs {online_above:,.0f} µs online (its own HTTP exchange, parsing, "
                f"limiter, retry loop and store write) and {batch_above:,.0f} µs in batch mode (a JSONL line encoded "
                "and uploaded, a result line downloaded, parsed and stored); the batch figure is the difference of "
                "two whole-run CPU times that each move by a few seconds between runs on this shared machine, so "
                "only its order of magnitude is measured"
            )
    text += (
        f". Peak RSS was {online.maxrss_mb:.0f} MB online and {batch.maxrss_mb:.0f} MB in batch mode. The batch "
        f"run's wall time ({batch.wall_s:.1f} s) is the simulator's {completion_s:g} s batches plus the fixed cost; "
        "a real provider ends a batch within 24 h, at half the online price."
    )
    return text


def section_markdown(bench: BatchVsOnline, started: float, completion_s: float, latency_ms: int) -> str:
    code = "" if bench.rlhf_root is None else f", `rlhf run` from `{bench.rlhf_root.name}` (`--rlhf-root`)"
    parts = [
        BEGIN,
        f"## Batch mode vs online ({bench.prompts // 1000 if bench.prompts >= 1000 else bench.prompts}"
        f"{'k' if bench.prompts >= 1000 else ''} × {len(MODELS)})",
        f"Generated by `bench/batch_vs_online.py` on {time.strftime('%Y-%m-%d %H:%M %Z')}, "
        f"{(time.monotonic() - started) / 60:.1f} min{code}. `rlhf run` (a subprocess, the long-lived Prefect server) "
        f"generates {bench.prompts:,} prompts × the three providers of examples/demo.yaml on the simulator (its own "
        "process) once per mode, each on a fresh output directory: **online** (`mode: online`, "
        f"`http_client: aiohttp`, {bench.concurrency} in flight per provider, {latency_ms} ms latency) and **batch** "
        f"(`mode: batch`, `batch_poll_s: {bench.poll_s:g}`; the simulator ends a batch {completion_s:g} s after it "
        "was created; the batch APIs go through the `openai` SDK and httpx), then the batch run's config once more "
        "(**rerun**: every answer is in the store, nothing is sent). *HTTP requests* are counted by the simulator: "
        "chat requests plus every request to a batch endpoint. *Client CPU* (user + system) and *peak RSS* are "
        "`rlhf run`'s whole process tree (with its task-writer process; `wait4`, `/proc`), not the simulator's or "
        "Prefect's, start-up included; *CPU µs / answer* divides it by the answers in the run's tasks. "
        "*Answers stored* are the successful answers in the run's response store.",
        main_table(bench.runs),
        "HTTP requests by endpoint family, as the simulator counted them:",
        requests_table(bench.runs),
    ]
    paragraph = meaning(bench.runs, completion_s, bench.poll_s)
    if paragraph:
        parts.append(paragraph)
    parts += [
        "Reproduce: `.venv/bin/python bench/batch_vs_online.py` (`--prompts N`; only a run at 10,000 or more "
        "rewrites this section); logs in `bench/out/logs/bvo-*.log`, raw numbers in "
        "`bench/out/batch_vs_online-N.json`.",
        END,
    ]
    return "\n\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description="batch mode vs online: HTTP requests and client CPU (bench/README.md)")
    parser.add_argument("--prompts", type=int, default=PROMPTS, help=f"prompts (default {PROMPTS:,}), × 3 providers")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="online: in flight per provider")
    parser.add_argument("--latency-ms", type=int, default=LATENCY_MS, help="simulator latency of an online request")
    parser.add_argument("--completion-s", type=float, default=COMPLETION_S, help="simulator: a batch ends after this")
    parser.add_argument("--poll-s", type=float, default=POLL_S, help="batch_poll_s of the batch providers")
    parser.add_argument("--no-rerun", action="store_true", help="leave out the rerun (fixed cost) row")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    parser.add_argument(
        "--rlhf-root", type=Path, help="run `rlhf` from another copy of the project (e.g. `git archive` of a commit)"
    )
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.pop("PREFECT_API_URL", None)
    started = time.monotonic()
    log("starting prefect server (PREFECT_HOME=bench/out/prefect-home)")
    with PrefectServer() as prefect:
        root = args.rlhf_root.resolve() if args.rlhf_root else None
        bench = BatchVsOnline(prefect, args.prompts, args.concurrency, args.poll_s, root)
        with start_simulator_process(
            latency_ms=args.latency_ms, mode="derived", batch_completion_s=args.completion_s
        ) as sim:
            bench.run(sim, rerun=not args.no_rerun)
    markdown = section_markdown(bench, started, args.completion_s, args.latency_ms)
    report = OUT / f"batch_vs_online-{args.prompts}.md"
    report.write_text(markdown + "\n", encoding="utf-8")
    raw = {
        "prompts": args.prompts,
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "batch_completion_s": args.completion_s,
        "batch_poll_s": args.poll_s,
        "rlhf_root": str(bench.rlhf_root) if bench.rlhf_root else None,
        "runs": [asdict(r) | {"http_requests": r.http_requests} for r in bench.runs],
    }
    report.with_suffix(".json").write_text(json.dumps(raw, indent=2), encoding="utf-8")
    print(markdown)
    failed = [r for r in bench.runs if r.code != 0 or r.note]
    if args.prompts >= PROMPTS and not args.no_write and not failed:
        write_section(markdown, BEGIN, END)
        log("wrote the batch-vs-online section of bench/RESULTS.md")
    else:
        log(f"report: {report} (bench/RESULTS.md is updated only by a clean run at {PROMPTS:,} prompts or more)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
