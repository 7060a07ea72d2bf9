"""`make bench`: throughput against the raw floor and peers, memory and resume cost, all in one run.

    .venv/bin/python bench/run.py                 # the full benchmark (~35 min), writes bench/RESULTS.md
    .venv/bin/python bench/run.py --quick         # a smaller run (~10 min), writes bench/out/results-quick.md
    .venv/bin/python bench/run.py --only memory   # one section (capacity, throughput, ephemeral, memory, resume)

Every client runs as its own subprocess against the project's simulator (its own process too), and
every request rate is measured at the simulator, from the first to the last request's arrival.
See bench/README.md for what each section measures and why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402
    BENCH,
    MODELS,
    OUT,
    PROJECT_PYTHON,
    RSS_SAMPLE_S,
    VENVS,
    Measured,
    Row,
    arrival_rate,
    fmt,
    log,
    markdown_table,
    prompt_file,
    run_measured,
)
from machine import describe  # noqa: E402
from rlhf_runner import PrefectServer, run_rlhf, summary_of, write_config  # noqa: E402

from simulator import start_simulator_process  # noqa: E402

SECTIONS = ("capacity", "paths", "throughput", "ephemeral", "memory", "resume", "ratelimits")
CAPACITY_FACTOR = 8  # the capacity check runs the floor at 8x the benchmark's per-provider concurrency
MEMORY_CONCURRENCY = 16
TIKTOKEN_BUNDLED = "lib/python3.11/site-packages/litellm/litellm_core_utils/tokenizers"


@dataclass(frozen=True)
class Setting:
    """A simulator latency and the per-provider concurrency every client gets at it."""

    name: str
    latency_ms: int
    concurrency: int
    cpu_bound: bool = False  # so many in flight that client CPU per call decides the rate

    @property
    def ideal_rate(self) -> float:
        """Requests/s if every slot were always busy: 3 providers × concurrency / latency."""
        return len(MODELS) * self.concurrency / (self.latency_ms / 1000.0)


SETTINGS = (Setting("50 ms", 50, 8), Setting("200 ms", 200, 16), Setting("50 ms, CPU-bound", 50, 64, cpu_bound=True))
AIOHTTP_FLOOR, HTTPX_FLOOR = "floor: asyncio + aiohttp", "floor: asyncio + httpx"


@dataclass(frozen=True)
class Profile:
    """Sizes of one benchmark run."""

    name: str
    prompts: int  # N for the floor and rlhf rows (the target is stated at 10k)
    peer_prompts: int  # N for the rows that include the peers (they cost far more CPU per call)
    capacity_prompts: int
    memory_sizes: tuple[int, ...]
    resume_prompts: int
    ephemeral_prompts: int = 100


FULL = Profile("full", 10_000, 1_000, 3_000, (1_000, 10_000, 100_000), 10_000)
QUICK = Profile("quick", 2_000, 300, 1_000, (1_000, 10_000), 10_000)
SMOKE = Profile("smoke", 200, 60, 300, (200, 500), 500, 30)  # checks the harness itself, in a few minutes


class Bench:
    """One benchmark run: sections append markdown to ``self.parts`` and raw numbers to ``self.raw``."""

    def __init__(self, profile: Profile, rlhf_root: Path | None, skip_peers: bool, rlhf_only: bool = False) -> None:
        self.profile = profile
        self.rlhf_root = rlhf_root
        self.skip_peers = skip_peers or rlhf_only
        self.rlhf_only = rlhf_only
        self.parts: list[str] = []
        self.raw: dict[str, Any] = {"profile": asdict(profile), "rows": {}}
        self.server: PrefectServer | None = None
        self.targets: list[tuple[str, str, str, bool | None]] = []
        self.rlhf_label = "rlhf run" if rlhf_root is None else f"rlhf run ({rlhf_root})"
        self.lean_label = f"{self.rlhf_label}, http_client: aiohttp"

    # -- helpers -------------------------------------------------------------------------------
    def prefect(self) -> PrefectServer:
        """The long-lived Prefect server (started on first use)."""
        if self.server is None:
            log("starting prefect server (PREFECT_HOME=bench/out/prefect-home)")
            self.server = PrefectServer().start()
            log(f"prefect server ready in {self.server.startup_s:.1f} s at {self.server.api_url}")
        return self.server

    def rlhf(self, config: Path, log_name: str, ephemeral: bool = False) -> Measured:
        """Run ``rlhf run`` (or the ``--rlhf-root`` checkout's) as a subprocess."""
        api = None if ephemeral else self.prefect().env()
        if self.rlhf_root is None:
            return run_rlhf(config, api, log_name)
        from rlhf_runner import run_rlhf_at

        return run_rlhf_at(self.rlhf_root, config, api, log_name)

    @staticmethod
    def measure_row(
        client: str,
        prompts: int,
        measured: Measured,
        stats: dict[str, Any],
        *,
        probes_excluded: bool = False,
        note: str = "",
    ) -> Row:
        """A table row from a client run and the simulator's statistics."""
        expected = prompts * len(MODELS)
        per_model = {m["model"]: prompts for m in MODELS} if probes_excluded else None
        rate, first, served = arrival_rate(stats, per_model)
        row = Row(client=client, prompts=prompts, expected=expected, served=served, note=note)
        row.extra["requests_total"] = stats.get("requests_total")
        if measured.code != 0 and not served:
            row.note = (note + "; " if note else "") + f"exit {measured.code}"
            return row
        row.rate = rate
        row.wall_s = measured.wall_s
        row.startup_s = (first - measured.started) if first is not None else None
        row.cpu_per_1k = measured.cpu_s / max(1, served) * 1000
        row.maxrss_mb = measured.maxrss_mb
        if served < expected:
            row.note = (note + "; " if note else "") + f"only {served}/{expected} requests arrived"
        if measured.code != 0:
            row.note = (note + "; " if note else "") + f"exit {measured.code}"
        return row

    # -- sections ------------------------------------------------------------------------------
    def capacity(self) -> None:
        """The simulator's capacity: the floor client at 8x the benchmark's concurrency."""
        rows = []
        prompts = prompt_file(self.profile.capacity_prompts)
        for setting in (s for s in SETTINGS if not s.cpu_bound):  # there, the aiohttp floor row is the capacity
            concurrency = setting.concurrency * CAPACITY_FACTOR
            with start_simulator_process(latency_ms=setting.latency_ms, mode="derived") as sim:
                log(f"capacity at {setting.name}: floor (aiohttp) with {concurrency} per provider")
                load = os.getloadavg()[0]
                measured = run_measured(
                    [
                        str(PROJECT_PYTHON),
                        str(BENCH / "clients" / "floor.py"),
                        "--client",
                        "aiohttp",
                        "--url",
                        sim.url,
                        "--prompts",
                        str(prompts),
                        "--concurrency",
                        str(concurrency),
                    ],
                    log_path=OUT / "logs" / f"capacity-{setting.latency_ms}.log",
                )
                rate, _, served = arrival_rate(sim.stats())
            if measured.code != 0:
                log(f"  capacity run exited {measured.code}: {measured.output[-300:]}")
            ideal = len(MODELS) * concurrency / (setting.latency_ms / 1000)
            self.raw.setdefault("capacity", {})[setting.name] = {"rate": rate, "served": served, "load1": load}
            rows.append(
                [
                    setting.name,
                    f"{concurrency} × {len(MODELS)}",
                    fmt(ideal, 0),
                    fmt(rate, 0),
                    f"{setting.concurrency} × {len(MODELS)}",
                    fmt(setting.ideal_rate, 0),
                    f"{(rate or 0) / setting.ideal_rate:.1f}×",
                    f"{load:.1f}",
                ]
            )
        self.parts.append(
            "## Simulator capacity\n\nThe floor client (asyncio + aiohttp) at 8× the benchmark's per-provider concurrency, "
            f"{self.profile.capacity_prompts:,} prompts × 3 models. The simulator runs in its own process; "
            "on 2 cores it shares the machine with the client, so this is the capacity of simulator + leanest client together.\n\n"
            + markdown_table(
                [
                    "latency",
                    "in flight",
                    "ideal req/s",
                    "measured req/s",
                    "benchmark in flight",
                    "benchmark ideal req/s",
                    "headroom",
                    "load",
                ],
                rows,
            )
        )

    def paths(self) -> None:
        """CPU per call of each request path (bench/request_paths.py, in its own process)."""
        log("request paths: CPU per call, 2,000 calls × 3 repeats per path")
        table_file = OUT / "request-paths.md"
        table_file.unlink(missing_ok=True)
        measured = run_measured(
            [str(PROJECT_PYTHON), str(BENCH / "request_paths.py"), "--out", str(table_file)],
            log_path=OUT / "logs" / "request-paths.log",
            timeout_s=1800,
        )
        table = (
            table_file.read_text(encoding="utf-8").strip()
            if measured.code == 0 and table_file.is_file()
            else f"(failed, exit {measured.code}; see bench/out/logs/request-paths.log)"
        )
        self.parts.append(
            "## CPU per call, by request path\n\n`bench/request_paths.py`: one process, 2,000 calls, 16 in flight, "
            "the simulator at 0 ms in its own process; CPU of the client process only, best of 3. *send + parse* is "
            "the provider's HTTP exchange and answer parsing; `Provider.call` adds the limiter, the retry loop, the "
            "breaker and the result.\n\n" + table
        )

    def throughput(self) -> None:
        """One table per setting: floors, rlhf run and the peers on the same requests."""
        self.parts.append(
            "## Throughput\n\nEvery client sends the same requests (the three models of examples/demo.yaml, the same "
            "messages and sampling parameters) to the simulator (fixed latency, no faults, no jitter) with the same "
            "per-provider concurrency. *req/s* is measured at the simulator from the first to the last request's "
            "arrival; *start-up* is process start → first request; *CPU* is the client's whole process tree "
            "(user + system, `wait4`), per 1,000 requests, start-up included; *peak RSS* is the whole tree's "
            f"(its summed RSS sampled every {RSS_SAMPLE_S} s, or the largest single process's if higher). "
            "*× aiohttp* and *× httpx* compare with the two floors at the same number of prompts: "
            "issue 6 names plain asyncio + httpx as the floor, ARCHITECTURE.md the leaner asyncio + aiohttp. "
            "`rlhf run` runs twice: with the default HTTP clients (the `openai` SDK, `httpx` for Anthropic) and with "
            "`http_client: aiohttp` (providers/http.py). "
            f"The peers cost far more CPU per call, so they run at {self.profile.peer_prompts:,} prompts; "
            f"`rlhf run` and the floor run at both sizes. The CPU-bound setting ({SETTINGS[-1].concurrency} in flight "
            f"per provider) runs {self.profile.capacity_prompts:,} prompts: the floors, `rlhf run` and curator "
            "(the httpx floor is left out there: an httpx pool with that many waiters is pathologically slow, "
            "ARCHITECTURE.md; distilabel too: its batches wait for their slowest request, it is not CPU-bound)."
        )
        for setting in SETTINGS:
            rows = self._throughput_setting(setting)
            self.raw["rows"][setting.name] = [asdict(r) for r in rows]
            self.parts.append(self._throughput_table(setting, rows))

    def _throughput_setting(self, setting: Setting) -> list[Row]:
        rows: list[Row] = []
        big, small = self.profile.prompts, self.profile.peer_prompts
        if setting.cpu_bound:
            big = small = self.profile.capacity_prompts
        with start_simulator_process(latency_ms=setting.latency_ms, mode="derived") as sim:

            def measure(
                client: str,
                prompts: int,
                command: list[str] | None = None,
                *,
                config: Path | None = None,
                env: dict[str, str | None] | None = None,
                probes: bool = False,
                note: str = "",
                log_name: str = "",
            ) -> Row:
                sim.reset()
                load = os.getloadavg()[0]
                log(f"{setting.name}: {client}, {prompts:,} prompts × 3 (load {load:.1f})")
                if config is not None:
                    measured = self.rlhf(config, log_name)
                else:
                    assert command is not None
                    measured = run_measured(command, env=env, log_path=OUT / "logs" / f"{log_name}.log", timeout_s=3600)
                row = self.measure_row(client, prompts, measured, sim.stats(), probes_excluded=probes, note=note)
                row.extra["load1"] = load
                if config is not None and measured.code == 0:
                    summary = summary_of(config)
                    answered = sum(p["answered"] for p in summary["providers"].values())
                    row.extra["answered"] = answered
                    if answered != prompts * len(MODELS):
                        row.note = (row.note + "; " if row.note else "") + f"answered {answered}"
                elif measured.code != 0:
                    log(f"  {client} exited {measured.code}; log: {OUT / 'logs' / (log_name + '.log')}")
                log(
                    f"  → {fmt(row.rate)} req/s, wall {fmt(row.wall_s)} s, start-up {fmt(row.startup_s)} s, "
                    f"CPU {fmt(row.cpu_per_1k, 2)} s/1k, RSS {fmt(row.maxrss_mb, 0)} MB {row.note}"
                )
                return row

            def floor(client: str, prompts: int) -> Row:
                return measure(
                    f"floor: asyncio + {client}",
                    prompts,
                    [
                        str(PROJECT_PYTHON),
                        str(BENCH / "clients" / "floor.py"),
                        "--client",
                        client,
                        "--url",
                        sim.url,
                        "--prompts",
                        str(prompt_file(prompts)),
                        "--concurrency",
                        str(setting.concurrency),
                    ],
                    log_name=f"floor-{client}-{setting.latency_ms}-{prompts}",
                )

            def rlhf(prompts: int, http_client: str = "default") -> Row:
                name = f"tp-{setting.latency_ms}ms-{setting.concurrency}-{prompts}-{http_client}"
                config = write_config(name, prompt_file(prompts), sim.url, setting.concurrency, http_client=http_client)
                label = self.lean_label if http_client == "aiohttp" else self.rlhf_label
                return measure(label, prompts, config=config, log_name=name)

            rows.append(floor("aiohttp", big))
            if not self.rlhf_only and not setting.cpu_bound:
                rows.append(floor("httpx", big))
            rows.append(rlhf(big))
            rows.append(rlhf(big, "aiohttp"))
            if not self.rlhf_only and small != big:
                rows.append(floor("aiohttp", small))
                rows.append(rlhf(small))
                rows.append(rlhf(small, "aiohttp"))
            if not self.skip_peers:
                peers = ("curator",) if setting.cpu_bound else ("curator", "distilabel")
                rows.extend(self._peers(setting, small, sim.url, measure, peers))
        for row in rows:
            floor_row = next((r for r in rows if r.client == AIOHTTP_FLOOR and r.prompts == row.prompts), None)
            row.floor_rate = floor_row.rate if floor_row else None
            httpx_row = next((r for r in rows if r.client == HTTPX_FLOOR and r.prompts == row.prompts), None)
            row.extra["httpx_floor_rate"] = httpx_row.rate if httpx_row else None
        return rows

    def _peers(self, setting: Setting, prompts: int, url: str, measure: Any, peers: tuple[str, ...]) -> list[Row]:
        from peers.setup import ensure

        rows = []
        models = ",".join(m["model"] for m in MODELS)
        work = OUT / "peers"
        for peer in peers:
            python, reason = ensure(peer)
            label = {
                "curator": "bespokelabs-curator (one process per model)",
                "distilabel": "distilabel (one branch per model)",
            }[peer]
            if python is None:
                log(f"{peer} skipped: {reason}")
                rows.append(
                    Row(client=label, prompts=prompts, expected=prompts * len(MODELS), note=f"skipped: {reason}")
                )
                continue
            shutil.rmtree(work / peer, ignore_errors=True)
            (work / peer).mkdir(parents=True, exist_ok=True)
            script = str(BENCH / "peers" / f"{peer}_run.py")
            common_args = [
                "--url",
                url,
                "--prompts",
                str(prompt_file(prompts)),
                "--models",
                models,
                "--concurrency",
                str(setting.concurrency),
            ]
            if peer == "curator":
                env: dict[str, str | None] = {
                    "TELEMETRY_ENABLED": "false",  # curator's PostHog telemetry is on by default
                    "CURATOR_DISABLE_CACHE": "true",
                    "CURATOR_CACHE_DIR": str(work / peer / "cache"),
                    "CURATOR_VIEWER": "0",
                    # tiktoken would download cl100k_base; litellm (a curator dependency) ships it
                    "TIKTOKEN_CACHE_DIR": str(VENVS / peer / TIKTOKEN_BUNDLED),
                }
                command = [str(python), script, *common_args, "--working-dir", str(work / peer / "work")]
                rows.append(
                    measure(
                        label,
                        prompts,
                        command,
                        env=env,
                        probes=True,
                        note="start-up probe requests left out",
                        log_name=f"curator-{setting.latency_ms}-{setting.concurrency}",
                    )
                )
            else:
                env = {"DISTILABEL_LOG_LEVEL": "WARNING", "DISTILABEL_CACHE_DIR": str(work / peer / "cache")}
                command = [str(python), script, *common_args, "--cache-dir", str(work / peer / "cache")]
                rows.append(
                    measure(
                        label,
                        prompts,
                        command,
                        env=env,
                        log_name=f"distilabel-{setting.latency_ms}-{setting.concurrency}",
                    )
                )
        return rows

    def _throughput_table(self, setting: Setting, rows: list[Row]) -> str:
        table = []
        for row in rows:
            httpx_rate = row.extra.get("httpx_floor_rate")
            httpx_ratio = f"{row.rate / httpx_rate:.2f}×" if row.rate and httpx_rate else "–"
            table.append(
                [
                    row.client,
                    f"{row.prompts:,} × 3",
                    fmt(row.rate, 0),
                    row.ratio(),
                    httpx_ratio,
                    fmt(row.wall_s),
                    fmt(row.startup_s),
                    fmt(row.cpu_per_1k, 2),
                    fmt(row.maxrss_mb, 0),
                    fmt(row.extra.get("load1"), 1),
                    row.note or "",
                ]
            )
        return (
            f"### {setting.latency_ms} ms latency, {setting.concurrency} in flight per provider "
            f"(ideal {setting.ideal_rate:,.0f} req/s){': client CPU decides the rate' if setting.cpu_bound else ''}\n\n"
            + markdown_table(
                [
                    "client",
                    "prompts",
                    "req/s",
                    "× aiohttp",
                    "× httpx",
                    "wall s",
                    "start-up s",
                    "CPU s / 1k req",
                    "peak RSS MB",
                    "load",
                    "note",
                ],
                table,
            )
        )

    def ephemeral(self) -> None:
        """Start-up with Prefect's temporary server (no PREFECT_API_URL) vs the running server."""
        prompts = self.profile.ephemeral_prompts
        setting = SETTINGS[0]
        rows = []
        with start_simulator_process(latency_ms=setting.latency_ms, mode="derived") as sim:
            for ephemeral in (True, False):
                sim.reset()
                name = f"startup-{'ephemeral' if ephemeral else 'server'}"
                config = write_config(name, prompt_file(prompts), sim.url, setting.concurrency)
                load = os.getloadavg()[0]
                log(
                    f"start-up: {prompts} prompts, {'ephemeral Prefect server' if ephemeral else 'running Prefect server'}"
                )
                measured = self.rlhf(config, name, ephemeral=ephemeral)
                row = self.measure_row(self.rlhf_label, prompts, measured, sim.stats())
                self.raw.setdefault("ephemeral", {})[name] = asdict(row) | {"load1": load}
                rows.append(
                    [
                        "temporary server (no PREFECT_API_URL, fresh PREFECT_HOME)"
                        if ephemeral
                        else "running `prefect server start`",
                        fmt(row.startup_s),
                        fmt(row.wall_s),
                        fmt(measured.cpu_s),
                        f"{load:.1f}",
                        row.note,
                    ]
                )
        server_note = (
            f" The long-lived server itself took {self.server.startup_s:.1f} s to start." if self.server else ""
        )
        self.parts.append(
            f"## Start-up: Prefect's temporary server vs a running server\n\n`rlhf run` with {prompts} prompts × 3 at "
            f"{setting.name}.{server_note}\n\n"
            + markdown_table(["Prefect API", "start-up s", "wall s", "CPU s", "load", "note"], rows)
        )

    def memory_and_resume(self, sections: set[str]) -> None:
        """Peak RSS at growing sizes (latency 0); then rerun the finished resume-size batch."""
        sizes = self.profile.memory_sizes if "memory" in sections else ()
        resume_n = self.profile.resume_prompts
        rows, curve = [], []
        resume_config: Path | None = None
        with start_simulator_process(latency_ms=0, mode="derived") as sim:
            for prompts in sorted(set(sizes) | ({resume_n} if "resume" in sections else set())):
                sim.reset()
                name = f"mem-{prompts}"
                config = write_config(name, prompt_file(prompts), sim.url, MEMORY_CONCURRENCY)
                load = os.getloadavg()[0]
                log(f"memory: {prompts:,} prompts × 3 at ~0 ms latency (load {load:.1f})")
                measured = self.rlhf(config, name)
                row = self.measure_row(self.rlhf_label, prompts, measured, sim.stats())
                log(
                    f"  → peak RSS {fmt(row.maxrss_mb, 0)} MB, wall {fmt(row.wall_s)} s, {fmt(row.rate)} req/s {row.note}"
                )
                if prompts == resume_n:
                    resume_config = config
                if prompts in sizes:
                    rows.append((prompts, row, load))
                    self.raw.setdefault("memory", {})[prompts] = asdict(row) | {"load1": load}
            if rows:
                base = rows[0][1].maxrss_mb or 1.0
                table = []
                for prompts, row, load in rows:
                    table.append(
                        [
                            f"{prompts:,} × 3",
                            fmt(row.maxrss_mb, 0),
                            f"{(row.maxrss_mb or 0) / base:.2f}×",
                            fmt(row.wall_s),
                            fmt(row.rate, 0),
                            fmt(row.cpu_per_1k, 2),
                            f"{load:.1f}",
                            row.note,
                        ]
                    )
                    width = int(round((row.maxrss_mb or 0) / 10))
                    curve.append(f"{prompts:>8,} × 3 | {'█' * width} {fmt(row.maxrss_mb, 0)} MB")
                self.parts.append(
                    f"## Memory\n\nPeak RSS of `rlhf run`: the larger of its largest process's (`wait4` ru_maxrss) and "
                    f"its whole process tree's summed RSS (sampled every {RSS_SAMPLE_S} s), at "
                    f"simulator latency 0, {MEMORY_CONCURRENCY} in flight per provider.\n\n"
                    + markdown_table(
                        ["prompts", "peak RSS MB", "× the first", "wall s", "req/s", "CPU s / 1k req", "load", "note"],
                        table,
                    )
                    + "\n\n```\n"
                    + "\n".join(curve)
                    + "\n```"
                )
            if "resume" in sections and resume_config is not None:
                self._resume(sim, resume_config, resume_n)

    def _resume(self, sim: Any, config: Path, prompts: int) -> None:
        tasks = config.parent / "out" / config.parent.name / "tasks.jsonl"
        before = hashlib.sha256(tasks.read_bytes()).hexdigest() if tasks.is_file() else None
        sim.reset()
        load = os.getloadavg()[0]
        log(f"resume: rerun the finished {prompts:,} × 3 batch (load {load:.1f})")
        measured = self.rlhf(config, f"resume-{prompts}")
        stats = sim.stats()
        after = hashlib.sha256(tasks.read_bytes()).hexdigest() if tasks.is_file() else None
        summary = summary_of(config) if measured.code == 0 else {}
        calls = stats.get("requests_total", 0)
        identical = before is not None and before == after
        self.raw["resume"] = {
            "calls": calls,
            "wall_s": measured.wall_s,
            "flow_wall_s": summary.get("wall_s"),
            "cpu_s": measured.cpu_s,
            "tasks_identical": identical,
            "code": measured.code,
            "load1": load,
        }
        self.targets.append(("resume: provider calls on rerun", "0", str(calls), calls == 0 and measured.code == 0))
        log(f"  → {calls} calls, wall {measured.wall_s:.1f} s, tasks identical: {identical}")
        self.parts.append(
            f"## Resume cost\n\nRerun of the finished {prompts:,} × 3 batch (same config, same simulator).\n\n"
            + markdown_table(
                [
                    "provider calls",
                    "wall s (process)",
                    "flow s (summary.json)",
                    "CPU s",
                    "tasks.jsonl byte-identical",
                    "load",
                ],
                [
                    [
                        str(calls),
                        fmt(measured.wall_s),
                        fmt(summary.get("wall_s")),
                        fmt(measured.cpu_s),
                        "yes" if identical else "NO",
                        f"{load:.1f}",
                    ]
                ],
            )
        )

    # -- targets -------------------------------------------------------------------------------
    def evaluate_targets(self) -> None:
        """Compare with the issue's targets (benchmarks, not tests)."""
        for setting in SETTINGS:
            rows = [Row(**r) for r in self.raw["rows"].get(setting.name, [])]
            target_n = self.profile.capacity_prompts if setting.cpu_bound else self.profile.prompts
            peer_n = self.profile.capacity_prompts if setting.cpu_bound else self.profile.peer_prompts
            for label in (self.rlhf_label, self.lean_label):
                row = next((r for r in rows if r.client == label and r.prompts == target_n), None)
                if row is None or not row.rate:
                    continue
                for floor_name, floor_rate in (
                    ("httpx floor", row.extra.get("httpx_floor_rate")),
                    ("aiohttp floor", row.floor_rate),
                ):
                    if floor_rate and not setting.cpu_bound:
                        ratio = row.rate / floor_rate
                        self.targets.append(
                            (
                                f"{setting.name}: {label} / {floor_name} at {target_n:,} × 3",
                                "≥ 0.80×",
                                f"{ratio:.2f}×",
                                ratio >= 0.8,
                            )
                        )
            curator = next((r for r in rows if r.client.startswith("bespokelabs-curator")), None)
            for label in (self.rlhf_label, self.lean_label):
                row = next((r for r in rows if r.client == label and r.prompts == peer_n), None)
                if row is None or curator is None:
                    continue
                if curator.rate and row.rate:
                    ratio = row.rate / curator.rate
                    self.targets.append(
                        (f"{setting.name}: {label} / curator at {peer_n:,} × 3", "≥ 2×", f"{ratio:.2f}×", ratio >= 2)
                    )
                else:
                    self.targets.append((f"{setting.name}: {label} / curator", "≥ 2×", "curator skipped", None))
        memory = self.raw.get("memory", {})
        if memory:
            first = memory[min(memory)]["maxrss_mb"]
            last_n = max(memory)
            last = memory[last_n]["maxrss_mb"]
            if first and last:
                if last_n >= 100_000:
                    self.targets.append((f"peak RSS at {last_n:,} × 3", "< 400 MB", f"{last:.0f} MB", last < 400))
                self.targets.append(
                    (f"peak RSS {last_n:,} vs {min(memory):,}", "< 1.5×", f"{last / first:.2f}×", last / first < 1.5)
                )
        if self.targets:
            self.parts.append(
                "## Targets (from issue 6; benchmarks, not tests)\n\n"
                + markdown_table(
                    ["target", "wanted", "measured", "met"],
                    [[t, w, m, "–" if ok is None else ("yes" if ok else "**no**")] for t, w, m, ok in self.targets],
                )
            )


ANALYSIS_BEGIN, ANALYSIS_END = "<!-- bench/ANALYSIS.md -->", "<!-- /bench/ANALYSIS.md -->"


def refresh_analysis(path: Path) -> None:
    """Replace the copy of bench/ANALYSIS.md inside an existing report with the current file."""
    text = path.read_text(encoding="utf-8")
    analysis = (BENCH / "ANALYSIS.md").read_text(encoding="utf-8").strip()
    block = f"{ANALYSIS_BEGIN}\n{analysis}\n{ANALYSIS_END}"
    if ANALYSIS_BEGIN in text:
        head, rest = text.split(ANALYSIS_BEGIN, 1)
        text = head + block + rest.split(ANALYSIS_END, 1)[1]
    else:  # a report written before the markers existed: replace from "## Analysis" (if any) on
        head, tail = text.split("## How to reproduce", 1)
        head = head.split("## Analysis", 1)[0].rstrip() + "\n\n"
        text = head + block + "\n\n## How to reproduce" + tail
    path.write_text(text, encoding="utf-8")


def write_report(bench: Bench, started: float, loads: tuple[float, float], path: Path) -> str:
    """Assemble the markdown report and write it (and the raw numbers next to it)."""
    header = [
        "# Benchmark results",
        "",
        f"Generated by `bench/run.py` ({bench.profile.name} profile) on {time.strftime('%Y-%m-%d %H:%M %Z')}, "
        f"{(time.monotonic() - started) / 60:.0f} min. Load average (1 min) at start {loads[0]:.1f}, at end "
        f"{os.getloadavg()[0]:.1f}: other work shares this 2-core machine, so rates carry noise (each row's `load` "
        "column is the 1-minute load average when it started; above ~2 the client shared the CPUs).",
        "",
        "## Machine",
        "",
        *describe(),
    ]
    analysis = BENCH / "ANALYSIS.md"
    parts = ["\n".join(header), *bench.parts]
    if analysis.is_file():
        parts.append(f"{ANALYSIS_BEGIN}\n{analysis.read_text(encoding='utf-8').strip()}\n{ANALYSIS_END}")
    parts.append(
        "## How to reproduce\n\n"
        "```bash\n"
        "make bench                                  # full run (~45 min): rewrites bench/RESULTS.md\n"
        ".venv/bin/python bench/run.py --quick       # ~10 min, writes bench/out/results-quick.md\n"
        ".venv/bin/python bench/run.py --only memory # one section: capacity | paths | throughput | ephemeral | memory | resume | ratelimits\n"
        "```\n\n"
        "The peers are installed on first use into `bench/.venvs/{curator,distilabel}` from "
        "`bench/peers/requirements-*.txt`; a peer that will not install or run is shown as skipped with the reason. "
        "Logs of every client run are in `bench/out/logs/`, raw numbers in `bench/out/results-*.json`."
    )
    text = "\n\n".join(parts) + "\n"
    path.write_text(text, encoding="utf-8")
    path.with_suffix(".json").write_text(json.dumps(bench.raw, indent=2, default=str), encoding="utf-8")
    return text


def main() -> int:
    """Parse arguments and run the chosen sections."""
    parser = argparse.ArgumentParser(description="rlhf-orchestrator benchmarks (see bench/README.md)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (~10 min)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness, measures nothing")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only this section (repeatable)")
    parser.add_argument("--skip-peers", action="store_true", help="leave curator and distilabel out")
    parser.add_argument("--rlhf-root", type=Path, help="run `rlhf` from another checkout (before/after comparisons)")
    parser.add_argument("--label", default="", help="suffix of the output file names")
    parser.add_argument("--rlhf-only", action="store_true", help="throughput: only the aiohttp floor and rlhf run at N")
    parser.add_argument("--prompts", type=int, help="override N of the throughput rows")
    parser.add_argument("--memory-sizes", help="override the memory sizes, e.g. 1000,10000")
    parser.add_argument(
        "--refresh-analysis", action="store_true", help="only copy the current bench/ANALYSIS.md into bench/RESULTS.md"
    )
    args = parser.parse_args()
    if args.refresh_analysis:
        refresh_analysis(BENCH / "RESULTS.md")
        return 0

    profile = SMOKE if args.smoke else QUICK if args.quick else FULL
    if args.prompts or args.memory_sizes:
        sizes = tuple(int(x) for x in args.memory_sizes.split(",")) if args.memory_sizes else profile.memory_sizes
        profile = replace(
            profile, name=f"{profile.name}-custom", prompts=args.prompts or profile.prompts, memory_sizes=sizes
        )
    sections = set(args.only or SECTIONS)
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.pop("PREFECT_API_URL", None)
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    bench = Bench(profile, args.rlhf_root.resolve() if args.rlhf_root else None, args.skip_peers, args.rlhf_only)
    try:
        if "capacity" in sections:
            bench.capacity()
        if "paths" in sections:
            bench.paths()
        if "throughput" in sections:
            bench.throughput()
        if "ephemeral" in sections:
            bench.ephemeral()
        if sections & {"memory", "resume"}:
            bench.memory_and_resume(sections)
        if "ratelimits" in sections:  # bench/ratelimits.py (also runnable on its own)
            from ratelimits import section as ratelimits_section

            part, bench.raw["ratelimits"] = ratelimits_section(
                bench.prefect(), prompts=60 if profile is SMOKE else 300, skip_peers=bench.skip_peers
            )
            bench.parts.append(part)
        bench.evaluate_targets()
    finally:
        if bench.server is not None:
            bench.server.stop()
    complete = (
        profile is FULL
        and sections == set(SECTIONS)
        and not args.skip_peers
        and not args.rlhf_only
        and args.rlhf_root is None
    )
    name = f"results-{profile.name}{'-' + args.label if args.label else ''}.md"
    text = write_report(bench, started, (load_start, 0.0), OUT / name)
    if complete:
        kept = _kept_sections(BENCH / "RESULTS.md")
        shutil.copyfile(OUT / name, BENCH / "RESULTS.md")
        if kept:  # sections measured by scripts of their own (batch_vs_online.py, workers.py) survive a full run
            with (BENCH / "RESULTS.md").open("a", encoding="utf-8") as handle:
                handle.write("\n" + kept)
        log("wrote bench/RESULTS.md")
    print(text)
    log(f"report: {OUT / name}")
    return 0


def _kept_sections(results: Path) -> str:
    """The parts of RESULTS.md that scripts of their own write, each between its markers, in this order:
    ``<!-- batch-vs-online -->`` (bench/batch_vs_online.py) and ``<!-- workers -->`` (bench/workers.py)."""
    from batch_vs_online import BEGIN, END
    from workers import BEGIN as WORKERS_BEGIN
    from workers import END as WORKERS_END

    text = results.read_text(encoding="utf-8") if results.is_file() else ""
    kept = []
    for begin, end_marker in ((BEGIN, END), (WORKERS_BEGIN, WORKERS_END)):
        start, end = text.find(begin), text.find(end_marker)
        if start != -1 and end > start:
            kept.append(text[start : end + len(end_marker)] + "\n")
    return "\n".join(kept)


if __name__ == "__main__":
    sys.exit(main())
