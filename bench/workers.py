"""A sharded batch on one worker against the same batch on two workers: what a second worker buys.

    .venv/bin/python bench/workers.py                # 2,000 prompts × 2 providers (~2-3 min), updates bench/RESULTS.md
    .venv/bin/python bench/workers.py --prompts 200  # writes bench/out/workers-200.md only
    .venv/bin/python bench/workers.py --no-write     # leaves bench/RESULTS.md alone

The parent flow ``generate_sharded`` (``flows/sharding/shard.py``; a subprocess, as
``tests/test_sharding.py`` drives it) splits N prompts × two providers (one OpenAI-kind, one
Anthropic-kind) into 2 shards, runs each as a run of the deployment ``generate_tasks/rlhf-shard`` on the
process work pool ``rlhf-process`` and merges them. Everything runs on this machine, each in its own
process: a Prefect server of the script's own (own ``PREFECT_HOME``, ``prefect.yaml`` deployed as
``tests/prefect_stack.py`` does), the provider simulator (``--latency-ms``, default 200 ms, with no rate
limits and no rate-limit headers, so nothing but a shard's ``max_concurrency`` bounds its rate) and a
throwaway PostgreSQL (``tests/pg_server.py``) holding ``output.store``, the store every shard writes to.

Two settings, each on a fresh database, a fresh output directory and freshly started workers
(``prefect worker start --limit 1``: a worker runs one shard at a time), both with ``shards_in_flight`` 2:

- **1 worker**: both shards go to the one worker, which runs them one after the other;
- **2 workers**: each worker takes one shard, and they run at the same time.

*Wall s* is the parent flow's own (``summary.json``'s ``wall_s``: prepare, seed, both shards, merge),
*answers/s* the answers made this run over it; *shards per worker* comes from the ``prefect.worker.name``
label of the shards' flow runs; *answers stored* counts the ``ok`` rows in the PostgreSQL store; *peak in
flight* is the simulator's highest count of concurrent requests of one model. A second table says where
the time went, from the flow runs' timestamps in the Prefect API (when each shard run was created, its
start-up until Running, its run until Completed, the parent's merge after the last shard), and the CPU
(user + system) of each process tree while the parent ran (``/proc``: the workers' trees hold the shards'
flow-run processes, then the parent, the simulator, PostgreSQL, the Prefect server), with the cores busy:
the benchmark's processes, and the whole machine (``/proc/stat``, anything else running included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.append(str(BENCH_DIR.parent / "tests"))  # prefect_stack, pg_server: the tests' helpers

import httpx  # noqa: E402
from benchlib import (  # noqa: E402
    ANTHROPIC_KEY,
    MODELS,
    OPENAI_KEY,
    OUT,
    QUIET_ENV,
    ROOT,
    fmt,
    log,
    markdown_table,
    prompt_file,
    write_section,
)
from pg_server import PASSWORD, PgServer, find_bin_dir  # noqa: E402
from prefect_stack import POOL, PREFECT, _wait_healthy, free_port, stop  # noqa: E402

from simulator import start_simulator_process  # noqa: E402

PROMPTS = 2_000
SHARDS = 2
LATENCY_MS = 200
CONCURRENCY = 16
POLL_S = 1.0
SHARD_DEPLOYMENT = "generate_tasks/rlhf-shard"
BEGIN, END = "<!-- workers -->", "<!-- /workers -->"
# One OpenAI-kind and one Anthropic-kind model of the other benchmarks (benchlib.MODELS).
PROVIDERS = [MODELS[0], MODELS[2]]
WORK = OUT / "workers"
CORES = os.cpu_count() or 1

PARENT_SCRIPT = (
    "import asyncio, json, sys\n"
    "from flows.sharding.shard import generate_sharded\n"
    "s = asyncio.run(generate_sharded(sys.argv[1], shards=int(sys.argv[2]), shards_in_flight=int(sys.argv[2]),"
    " shard_deployment=sys.argv[3], poll_interval_s=float(sys.argv[4])))\n"
    "print(json.dumps(s))\n"
)


@dataclass
class Setting:
    """One setting: how many workers, and what its run measured."""

    key: str
    workers: int
    label: str
    code: int = 0
    wall_s: float = 0.0  # the parent flow's (summary.json)
    process_s: float = 0.0  # the parent subprocess, start-up included
    answers: int = 0  # answers made this run (summary: called_this_run)
    answers_stored: int = 0
    requests: int = 0
    peak_in_flight: int = 0
    shard_workers: list[str] = field(default_factory=list)
    shard_run_s: list[float] = field(default_factory=list)
    # per shard, seconds after the parent flow run started: created, Running, Completed
    shard_timeline: list[list[float | None]] = field(default_factory=list)
    parent_run_s: float | None = None  # the parent flow run, Running to Completed
    cores_busy: float = 0.0  # the whole machine's, anything else running included
    cpu_s: dict[str, float] = field(default_factory=dict)  # per component, while the parent ran
    cpu_window_s: float = 0.0  # the span the CPU samples cover
    load1: float = 0.0
    note: str = ""

    @property
    def rate(self) -> float | None:
        return self.answers / self.wall_s if self.wall_s > 0 and self.answers else None

    @property
    def per_worker(self) -> str:
        counts = sorted(Counter(self.shard_workers).values(), reverse=True)
        return " + ".join(str(n) for n in counts) or "–"


_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root_pid: int) -> float:
    """CPU seconds (user + system) of ``root_pid`` and every live descendant, each with its reaped children.

    A process's ``cutime``/``cstime`` hold the children it has waited for, which are gone from ``/proc``, so
    the sum over the live tree counts every process that ran in it once.
    """
    parents: dict[int, list[int]] = {}
    times: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2 :].split()
        parents.setdefault(int(rest[1]), []).append(int(entry.name))
        times[int(entry.name)] = sum(int(v) for v in rest[11:15])  # utime, stime, cutime, cstime
    total, pending = 0, [root_pid]
    while pending:
        pid = pending.pop()
        pending.extend(parents.get(pid, ()))
        total += times.get(pid, 0)
    return total / _TICKS


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


class Stack:
    """A Prefect server with the pool and ``prefect.yaml`` deployed; workers started per setting."""

    def __init__(self, extra_env: dict[str, str]) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="bench-workers-prefect-"))
        self.logs = WORK / "logs"
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(QUIET_ENV)
        env.update(
            PREFECT_HOME=str(self.home / "home"),
            PREFECT_API_URL=self.api,
            PREFECT_UI_ENABLED="false",
            PREFECT_WORKER_QUERY_SECONDS="1",
            PREFECT_RUNNER_POLL_FREQUENCY="1",
            TMPDIR=str(self.home),
        )
        env.update(extra_env)
        self.env = env
        self.server: subprocess.Popen[bytes] | None = None

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("wb") as sink:
            return subprocess.Popen(
                args, env=self.env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )

    def cli(self, *args: str) -> None:
        done = subprocess.run(
            [PREFECT, "--no-prompt", *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=180
        )
        if done.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed: {(done.stdout + done.stderr)[-2000:]}")

    def __enter__(self) -> Stack:
        self.server = self.start("server", PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port))
        try:
            _wait_healthy(self.api, self.server, self.logs / "server.log")
            self.cli("work-pool", "create", POOL, "--type", "process")
            self.cli("deploy", "--all")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        if self.server is not None:
            stop(self.server)
        shutil.rmtree(self.home, ignore_errors=True)

    @contextmanager
    def workers(self, names: list[str]) -> Iterator[list[subprocess.Popen[bytes]]]:
        """``prefect worker start --limit 1`` for each name; yields once the server lists them all online."""
        started = [
            self.start(name, PREFECT, "worker", "start", "--pool", POOL, "--name", name, "--limit", "1")
            for name in names
        ]
        try:
            deadline = time.monotonic() + 120
            while True:
                listed = httpx.post(f"{self.api}/work_pools/{POOL}/workers/filter", json={}, trust_env=False).json()
                online = {w["name"] for w in listed if w.get("status") == "ONLINE"}
                if set(names) <= online:
                    break
                dead = [n for n, p in zip(names, started) if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"worker(s) {dead or names} did not come online; see {self.logs}")
                time.sleep(0.5)
            yield started
        finally:
            for process in reversed(started):
                stop(process)

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return httpx.get(f"{self.api}/flow_runs/{run_id}", trust_env=False).json()

    def latest_parent(self) -> dict[str, Any]:
        """The newest ``generate_sharded`` flow run."""
        body = {"flows": {"name": {"any_": ["generate_sharded"]}}, "sort": "START_TIME_DESC", "limit": 1}
        return httpx.post(f"{self.api}/flow_runs/filter", json=body, trust_env=False).json()[0]


def _seconds_between(start: str, end: str | None) -> float | None:
    """Seconds from one API timestamp (ISO 8601) to another."""
    if not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def write_config(name: str, prompts: Path, sim: Any, store_url: str, concurrency: int) -> Path:
    """The run config (JSON is YAML) under a fresh ``bench/out/workers/NAME/``; the store is ``store_url``."""
    run_root = WORK / name
    shutil.rmtree(run_root, ignore_errors=True)
    run_root.mkdir(parents=True)
    providers = [
        {
            "source_id": m["source_id"],
            "kind": m["kind"],
            "model": m["model"],
            "base_url": sim.openai_base_url if m["kind"] == "openai" else sim.anthropic_base_url,
            "api_key_env": "BENCH_OPENAI_KEY" if m["kind"] == "openai" else "BENCH_ANTHROPIC_KEY",
            "params": m["params"],
            "max_concurrency": concurrency,
            "timeout_s": 120,
        }
        for m in PROVIDERS
    ]
    config = {
        "project": "bench",
        "batch": "workers",
        "prompts": {"path": str(prompts)},
        "providers": providers,
        "annotation": {"template": "default", "seed": 7},
        "output": {"dir": str(run_root / "out"), "store": store_url},
    }
    path = run_root / "config.yaml"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def count_answers(pg: PgServer, url: str) -> int:
    with pg.admin(url.rsplit("/", 1)[1]) as db:
        return int(db.execute("SELECT count(*) FROM responses WHERE ok = 1").fetchone()[0])


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_setting(stack: Stack, pg: PgServer, sim: Any, setting: Setting, prompts: int, concurrency: int) -> Setting:
    """One sharded batch: fresh database, output directory and workers; the parent as a subprocess."""
    url = pg.new_database()
    config = write_config(setting.key, prompt_file(prompts), sim, url, concurrency)
    sim.reset()
    names = [f"{setting.key}-w{i + 1}" for i in range(setting.workers)]
    with stack.workers(names) as workers:
        assert stack.server is not None and pg.process is not None
        trees = {
            "shards and workers": [w.pid for w in workers],
            "simulator": [sim.pid],
            "PostgreSQL": [pg.process.pid],
            "Prefect server": [stack.server.pid],
        }

        def sample() -> dict[str, float]:
            return {name: sum(tree_cpu_s(pid) for pid in pids) for name, pids in trees.items()}

        setting.load1 = os.getloadavg()[0]
        log(f"{setting.label}: {prompts:,} prompts × {len(PROVIDERS)} in {SHARDS} shards (load {setting.load1:.1f})")
        before, parent_before, sampled = sample(), _children_cpu_s(), time.monotonic()
        busy0, total0 = _cpu_times()
        started = time.monotonic()
        command = [sys.executable, "-c", PARENT_SCRIPT, str(config), str(SHARDS), SHARD_DEPLOYMENT, str(POLL_S)]
        with (stack.logs / f"parent-{setting.key}.log").open("w") as errors:
            done = subprocess.run(
                command, env=stack.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True, timeout=1800
            )
        setting.process_s = time.monotonic() - started
        busy1, total1 = _cpu_times()
        parent_cpu = _children_cpu_s() - parent_before
        time.sleep(1.0)  # the workers reap their finished flow-run processes
        after = sample()
        setting.cpu_window_s = time.monotonic() - sampled
        setting.cpu_s = {"parent flow": parent_cpu} | {name: after[name] - before[name] for name in trees}
        setting.cores_busy = (busy1 - busy0) / max(1, total1 - total0) * CORES
    setting.code = done.returncode
    stats = sim.stats()
    setting.requests = int(stats.get("requests_total", 0))
    setting.peak_in_flight = max(
        (int(m.get("max_in_flight", 0)) for m in stats.get("by_model", {}).values()), default=0
    )
    setting.answers_stored = count_answers(pg, url)
    if done.returncode != 0:
        setting.note = f"exit {done.returncode}; see {stack.logs}/parent-{setting.key}.log"
        log(setting.note)
        return setting
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    setting.wall_s = float(summary["wall_s"])
    setting.answers = sum(int(p.get("called_this_run", 0)) for p in summary["providers"].values())
    parent = stack.latest_parent()
    setting.parent_run_s = _seconds_between(parent["start_time"], parent.get("end_time"))
    for shard in sorted(summary["shards"], key=lambda s: s["index"]):
        setting.shard_workers.append(shard.get("worker") or "?")
        run = stack.flow_run(shard["flow_run_id"])
        setting.shard_run_s.append(float(run.get("total_run_time") or 0.0))
        setting.shard_timeline.append(
            [_seconds_between(parent["start_time"], run.get(key)) for key in ("created", "start_time", "end_time")]
        )
    expected = prompts * len(PROVIDERS)
    if setting.answers != expected or setting.answers_stored != expected:
        setting.note = f"{setting.answers:,} answered, {setting.answers_stored:,} stored of {expected:,}"
    elif len(set(setting.shard_workers)) != setting.workers:
        setting.note = f"shards ran on {sorted(set(setting.shard_workers))}"
    log(
        f"  → wall {setting.wall_s:.1f} s (process {setting.process_s:.1f} s), {fmt(setting.rate)} answers/s, "
        f"shards on {setting.shard_workers} ({' + '.join(f'{s:.1f}' for s in setting.shard_run_s)} s), "
        f"{setting.answers_stored:,} stored, {setting.cores_busy:.2f} cores busy; parent run {setting.parent_run_s} s, "
        f"shards (created, running, done) {setting.shard_timeline}"
    )
    return setting


CPU_PARTS = ("shards and workers", "parent flow", "simulator", "PostgreSQL", "Prefect server")


def startups(setting: Setting) -> list[float]:
    """Per shard, seconds from when it could start (created, and its worker free) to Running."""
    out = []
    for index, (created, running, _) in enumerate(setting.shard_timeline):
        if created is None or running is None:
            continue
        ready = created
        for other, (_, other_running, other_done) in enumerate(setting.shard_timeline):
            same_worker = other != index and setting.shard_workers[other] == setting.shard_workers[index]
            if same_worker and other_done is not None and other_running is not None and other_running < running:
                ready = max(ready, other_done)  # it ran first on this worker: this shard waited for it
        out.append(running - ready)
    return out


def merge_s(setting: Setting) -> float | None:
    """Seconds from the last shard's end to the parent flow run's end (noticing it, merging, the summary)."""
    done = [t[2] for t in setting.shard_timeline if t[2] is not None]
    return setting.parent_run_s - max(done) if done and setting.parent_run_s is not None else None


def created_s(setting: Setting) -> list[float]:
    """Per shard, seconds from the parent flow run's start to the shard run's creation."""
    return [t[0] for t in setting.shard_timeline if t[0] is not None]


def our_cores(setting: Setting) -> float | None:
    return sum(setting.cpu_s.values()) / setting.cpu_window_s if setting.cpu_s and setting.cpu_window_s else None


def _spans(values: list[float]) -> str:
    return " + ".join(f"{v:.1f}" for v in values) or "–"


def table(settings: list[Setting]) -> str:
    rows = [
        [
            s.label,
            fmt(s.wall_s) if s.wall_s else "–",
            fmt(s.rate),
            s.per_worker,
            f"{s.answers_stored:,}",
            str(s.peak_in_flight),
            f"{s.load1:.1f}",
            s.note,
        ]
        for s in settings
    ]
    headers = [
        "setting",
        "wall s",
        "answers/s",
        "shards per worker",
        "answers stored",
        "peak in flight",
        "load",
        "note",
    ]
    return markdown_table(headers, rows)


def detail_table(settings: list[Setting]) -> str:
    rows = [
        [
            s.label,
            ", ".join(f"{v:.1f}" for v in created_s(s)) or "–",
            _spans(startups(s)),
            _spans(s.shard_run_s),
            fmt(merge_s(s)),
            *(fmt(s.cpu_s.get(part)) for part in CPU_PARTS),
            fmt(our_cores(s), 2),
            fmt(s.cores_busy, 2),
        ]
        for s in settings
    ]
    headers = [
        "setting",
        "shard runs created at s",
        "shard start-up s",
        "shard run s",
        "merge s",
        *(f"CPU s: {part}" for part in CPU_PARTS),
        "cores: the benchmark's",
        "cores: machine",
    ]
    return markdown_table(headers, rows)


def speed_up(settings: list[Setting]) -> float | None:
    one, two = settings[0], settings[1]
    return one.wall_s / two.wall_s if one.wall_s and two.wall_s and not one.note and not two.note else None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def meaning(settings: list[Setting], prompts: int, latency_ms: int, concurrency: int) -> str:
    """One paragraph on the numbers of this run."""
    one, two = settings
    gain = speed_up(settings)
    if gain is None or not one.shard_run_s or not two.shard_run_s:
        return ""
    per_shard = prompts * len(PROVIDERS) / SHARDS
    floor = per_shard / (len(PROVIDERS) * concurrency / (latency_ms / 1000))
    created = created_s(one) + created_s(two)
    merges = [v for v in (merge_s(one), merge_s(two)) if v is not None]
    starts = startups(one) + startups(two)
    shard_cpu = one.cpu_s.get("shards and workers", 0.0)
    shard_ms = shard_cpu / one.answers * 1000 if one.answers else 0.0
    if gain >= 1.05:
        lead = f"A second worker made the batch {gain:.2f}× as fast"
    elif gain > 0.95:
        lead = f"A second worker made no difference to speak of ({gain:.2f}×)"
    else:
        lead = f"A second worker made the batch slower ({gain:.2f}×)"
    return (
        f"{lead}: {one.wall_s:.1f} s → {two.wall_s:.1f} s, {fmt(one.rate, 0)} → {fmt(two.rate, 0)} answers/s, "
        "where two shards side by side could at best halve the time. The second table shows where the rest went. "
        "There is a fixed cost around the shards that a second worker does not remove: the parent creates the "
        f"shard runs {min(created):.1f}-{max(created):.1f} s after it starts and ends "
        f"{min(merges):.1f}-{max(merges):.1f} s after the last shard (noticing it at its 1 s poll, merging, the "
        f"summary), and a shard's flow-run process needs {min(starts):.1f}-{max(starts):.1f} s from when it could "
        "start to Running (the worker's poll, a new Python process importing Prefect and the project, the flow "
        "engine starting): one worker pays that twice in a row, two workers at the same time, competing for the "
        f"same cores. The shards themselves are latency-bound only in part here: {per_shard:,.0f} answers at "
        f"{concurrency} in flight per provider and {latency_ms} ms each need {floor:.1f} s, yet a shard alone ran "
        f"{_mean(one.shard_run_s):.1f} s and two side by side {_mean(two.shard_run_s):.1f} s each, and the shards' "
        f"processes spent {shard_cpu:.1f} CPU s on {one.answers:,} answers ({shard_ms:.1f} ms an answer, their "
        "start-up included). The waiting overlaps (the simulator saw "
        f"{two.peak_in_flight} requests of a model in flight at once with two workers, {one.peak_in_flight} with "
        "one); the CPU work does not shrink: the benchmark's processes (shards, parent, simulator, PostgreSQL, "
        f"Prefect server) used {sum(one.cpu_s.values()):.1f} and {sum(two.cpu_s.values()):.1f} CPU s, "
        f"{our_cores(one) or 0:.2f} of the {CORES} cores on average with one worker and {our_cores(two) or 0:.2f} with "
        f"two, and the machine as a whole was at {one.cores_busy:.2f} and {two.cores_busy:.2f} (whatever else ran "
        f"included; load {one.load1:.1f} and {two.load1:.1f} at the start). Two workers on one {CORES}-core machine "
        "split the same cores: latency-bound shards gain from a second worker as far as idle CPU is left for it "
        f"(here {max(0.0, CORES - two.cores_busy):.1f} of a core was, with two workers), CPU-bound shards would not, "
        "and need workers on other machines." + _foreign_load(one, two)
    )


def _foreign_load(one: Setting, two: Setting) -> str:
    """A sentence on the CPU that processes outside the benchmark took during the runs, if it was noticeable."""
    foreign = [max(0.0, s.cores_busy - (our_cores(s) or 0.0)) for s in (one, two)]
    if max(foreign) < 0.2:
        return ""
    return (
        f" Processes outside the benchmark took about {foreign[0]:.1f} and {foreign[1]:.1f} of a core during the "
        "two runs: CPU the shards could not have, so these are the times of a shared machine and vary from one "
        "run to the next with what else runs on it."
    )


def section_markdown(settings: list[Setting], args: argparse.Namespace, started: float) -> str:
    gain = speed_up(settings)
    parts = [
        BEGIN,
        "## Sharded batch: 1 worker vs 2 workers",
        f"Generated by `bench/workers.py` on {time.strftime('%Y-%m-%d %H:%M %Z')}, "
        f"{(time.monotonic() - started) / 60:.1f} min. The parent flow `generate_sharded` (a subprocess) splits "
        f"{args.prompts:,} prompts × 2 providers (one OpenAI-kind, one Anthropic-kind, `max_concurrency: "
        f"{args.concurrency}` each) into {SHARDS} shards, each a run of `{SHARD_DEPLOYMENT}` on the `rlhf-process` "
        "pool, then merges them. The answers go to `output.store` on a throwaway PostgreSQL, which every shard "
        f"shares. The simulator (its own process) answers after {args.latency_ms} ms with no rate limits and no "
        "rate-limit headers, so a shard's concurrency, not the simulator, bounds its rate. Each setting runs on a "
        "fresh database, a fresh output directory and freshly started workers (`prefect worker start --limit 1`, "
        "one shard at a time each; the script's own Prefect server with `prefect.yaml` deployed): **1 worker** "
        "runs the two shards one after the other, **2 workers** run one each, at the same time. *Wall s* is the "
        "parent flow's own (`summary.json`: preparation, both shards, merge); *answers/s* divides the answers "
        "made by it; *shards per worker* comes from the shard runs' `prefect.worker.name` label; *answers "
        "stored* counts the answers in PostgreSQL; *peak in flight* is the simulator's highest count of one "
        "model's concurrent requests; *load* is the 1-minute load average at the start.",
        table(settings),
    ]
    if gain is not None:
        parts.append(f"Speed-up of 2 workers over 1: **{gain:.2f}×** (the parent flow's wall time).")
    parts += [
        "Where the time and the CPU went, from the flow runs' timestamps in the Prefect API and from `/proc`. "
        "*Shard start-up* is each shard's wait from when it could start (created, and its worker free) to Running; "
        "*shard run* is Running to Completed (`total_run_time`); *merge* is the last shard's end to the parent's. "
        "*CPU s* (user + system) is each part's process tree while the parent ran (the workers' trees hold the "
        "shards' flow-run processes); *cores* is CPU time over wall time: the benchmark's processes, and the "
        "whole machine (`/proc/stat`, anything else running included).",
        detail_table(settings),
    ]
    paragraph = meaning(settings, args.prompts, args.latency_ms, args.concurrency)
    if paragraph:
        parts.append(paragraph)
    parts += [
        f"Reproduce: `.venv/bin/python bench/workers.py` (`--prompts N`; only a run at {PROMPTS:,} or more rewrites "
        "this section); logs in `bench/out/workers/logs/`, raw numbers in `bench/out/workers-N.json`.",
        END,
    ]
    return "\n\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="a sharded batch on 1 worker vs 2 workers, store in PostgreSQL (bench/README.md)"
    )
    parser.add_argument("--prompts", type=int, default=PROMPTS, help=f"prompts (default {PROMPTS:,}), × 2 providers")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="max_concurrency of each provider")
    parser.add_argument("--latency-ms", type=int, default=LATENCY_MS, help="simulator latency of a request")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()

    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL binaries (apt-get install postgresql, or initdb and postgres on PATH)")
    started = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    settings = [Setting("one", 1, "2 shards on 1 worker"), Setting("two", 2, "2 shards on 2 workers")]
    env = {"BENCH_OPENAI_KEY": OPENAI_KEY, "BENCH_ANTHROPIC_KEY": ANTHROPIC_KEY, "PGPASSWORD": PASSWORD}
    log("starting PostgreSQL, the simulator and a Prefect server (pool, prefect.yaml deployed)")
    pg = PgServer(bin_dir).start()
    try:
        with (
            start_simulator_process(
                latency_ms=args.latency_ms,
                mode="derived",
                rate_limit_headers=False,
                rate_limit_requests=10**9,
                rate_limit_tokens=10**12,
            ) as sim,
            Stack(env) as stack,
        ):
            log(f"ready in {time.monotonic() - started:.1f} s")
            for setting in settings:
                run_setting(stack, pg, sim, setting, args.prompts, args.concurrency)
    finally:
        pg.stop()
    markdown = section_markdown(settings, args, started)
    report = OUT / f"workers-{args.prompts}.md"
    report.write_text(markdown + "\n", encoding="utf-8")
    raw = {
        "prompts": args.prompts,
        "providers": len(PROVIDERS),
        "shards": SHARDS,
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "speed_up": speed_up(settings),
        "settings": [asdict(s) | {"answers_per_s": s.rate} for s in settings],
    }
    report.with_suffix(".json").write_text(json.dumps(raw, indent=2), encoding="utf-8")
    print(markdown)
    log(f"total {(time.monotonic() - started) / 60:.1f} min")
    failed = [s for s in settings if s.code != 0 or s.note]
    if args.prompts >= PROMPTS and not args.no_write and not failed:
        write_section(markdown, BEGIN, END)
        log("wrote the workers section of bench/RESULTS.md")
    else:
        log(f"report: {report} (bench/RESULTS.md is updated only by a clean run at {PROMPTS:,} prompts or more)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
