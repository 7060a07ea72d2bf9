"""Time from a run's start to the first task annotators can open in Label Studio (issue 28, part 4).

    .venv/bin/python bench/first_task.py                  # 10,000 prompts; writes its section of bench/RESULTS.md
    .venv/bin/python bench/first_task.py --prompts 2000   # smaller: bench/out/first_task-2000.json only

Three providers on the simulator (its own process: 200 ms a call, 16 in flight per provider, as
bench/workers.py), a real Label Studio (``platforms/label_studio/local_server.py``) and a long-lived
Prefect server. Each setting is ``rlhf run`` as a subprocess on a fresh batch:

- **today**: ``rlhf run``, then ``rlhf deliver`` once it has ended (the flow before issue 28);
- **streamed, chunk_size N**: ``rlhf run --deliver label-studio`` (each chunk's tasks delivered as written).

A thread polls Label Studio's API every 0.25 s for the project's task count (``task_number``), so *first
task* is when a task of the batch could first be opened in Label Studio, from the run's start; *all tasks*
when the last one could; *run ends* when ``rlhf run`` exited (today: before ``rlhf deliver`` starts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import ANTHROPIC_KEY, OPENAI_KEY, OUT, fmt, log, markdown_table, prompt_file, run_measured, write_section  # noqa: E402
from rlhf_runner import RLHF, PrefectServer, run_rlhf, summary_of, write_config  # noqa: E402

from platforms.label_studio.client import LabelStudioClient  # noqa: E402
from platforms.label_studio.local_server import LabelStudioServer  # noqa: E402
from simulator import start_simulator_process  # noqa: E402

LATENCY_MS = 200
CONCURRENCY = 16
POLL_S = 0.25
FULL = 10_000
BEGIN, END = "<!-- first-task -->", "<!-- /first-task -->"


@dataclass
class Outcome:
    """One setting's times, in seconds from the start of ``rlhf run``."""

    setting: str
    chunk_size: int
    tasks: int
    first_task_s: float | None
    all_tasks_s: float | None
    run_ends_s: float
    deliver_s: float | None  # today: the rlhf deliver command's own wall time
    exit_code: int


class Watcher:
    """Polls a Label Studio project's task count from a thread, noting when the first and the last
    (``expected``) task appeared."""

    def __init__(self, ls: LabelStudioServer, title: str, expected: int) -> None:
        from pydantic import SecretStr

        self._client = LabelStudioClient(ls.url, SecretStr(ls.token))
        self._title, self._expected = title, expected
        self.first: float | None = None
        self.all: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self, wait_s: float = 0.0) -> None:
        deadline = time.monotonic() + wait_s
        while self.all is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
        self._stop.set()
        self._thread.join()
        self._client.close()

    def _poll(self) -> None:
        project_id = None
        while not self._stop.is_set():
            try:
                if project_id is None:
                    project = self._client.find_project(self._title)
                    project_id = project["id"] if project else None
                if project_id is not None:
                    count = int(self._client.request("GET", f"/api/projects/{project_id}").get("task_number") or 0)
                    now = time.monotonic()
                    if count and self.first is None:
                        self.first = now
                    if count >= self._expected:
                        self.all = now
                        return
            except Exception as exc:  # noqa: BLE001 - a poll that fails is tried again
                log(f"poll: {exc}")
            time.sleep(POLL_S)


def one(ls: LabelStudioServer, prefect: PrefectServer, prompts: Path, n: int, setting: str, chunk_size: int) -> Outcome:
    """Run one setting on a fresh batch and time it."""
    name = f"first-task-{setting}-{n}"
    config = write_config(name, prompts, SIM_URL, CONCURRENCY)
    data = json.loads(config.read_text())
    data["chunk_size"] = chunk_size
    config.write_text(json.dumps(data, indent=2))
    title = f"{name} {int(time.time())}"
    env = {**prefect.env(), "BENCH_LS_TOKEN": ls.token}
    os.environ["BENCH_LS_TOKEN"] = ls.token
    watcher = Watcher(ls, title, n).start()
    started = time.monotonic()
    deliver_s = None
    if setting == "today":
        measured = run_rlhf(config, prefect.env(), name)
        run_ends = measured.started + measured.wall_s
        delivered = run_measured(
            [
                str(RLHF),
                "deliver",
                str(config.parent / "out" / name),
                "--url",
                ls.url,
                "--token-env",
                "BENCH_LS_TOKEN",
                "--project-title",
                title,
            ],
            env=env,
            log_path=OUT / "logs" / f"{name}-deliver.log",
        )
        deliver_s = delivered.wall_s
        code = measured.code or delivered.code
    else:
        measured = run_measured(
            [
                str(RLHF),
                "run",
                str(config),
                "-q",
                "--deliver",
                "label-studio",
                "--url",
                ls.url,
                "--token-env",
                "BENCH_LS_TOKEN",
                "--project-title",
                title,
            ],
            env={**env, "BENCH_OPENAI_KEY": OPENAI_KEY, "BENCH_ANTHROPIC_KEY": ANTHROPIC_KEY},
            log_path=OUT / "logs" / f"{name}.log",
        )
        run_ends = measured.started + measured.wall_s
        code = measured.code
    watcher.stop(wait_s=120)
    start = measured.started if measured.started else started
    tasks = summary_of(config)["tasks_written"]
    outcome = Outcome(
        setting="today: run, then rlhf deliver"
        if setting == "today"
        else f"streamed (--deliver), chunk_size {chunk_size}",
        chunk_size=chunk_size,
        tasks=tasks,
        first_task_s=None if watcher.first is None else watcher.first - start,
        all_tasks_s=None if watcher.all is None else watcher.all - start,
        run_ends_s=run_ends - start,
        deliver_s=deliver_s,
        exit_code=code,
    )
    log(f"{outcome}")
    return outcome


SIM_URL = ""


def section(outcomes: list[Outcome], n: int, minutes: float) -> str:
    rows = [
        [
            o.setting,
            fmt(o.first_task_s),
            fmt(o.all_tasks_s),
            fmt(o.run_ends_s),
            fmt(o.deliver_s),
            f"{o.tasks:,}",
            str(o.exit_code),
        ]
        for o in outcomes
    ]
    table = markdown_table(
        [
            "setting",
            "first task in LS, s",
            "all tasks in LS, s",
            "rlhf run ends, s",
            "rlhf deliver, s",
            "tasks",
            "exit",
        ],
        rows,
    )
    today = next(o for o in outcomes if o.setting.startswith("today"))
    streamed = [o for o in outcomes if not o.setting.startswith("today")]
    lines = [
        "## First task annotatable in Label Studio: streamed delivery vs today",
        "",
        f"Generated by `bench/first_task.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {minutes:.1f} min. "
        f"{n:,} prompts × 3 providers (2 OpenAI-kind, 1 Anthropic-kind, `max_concurrency: {CONCURRENCY}` each) on the "
        f"simulator (its own process, {LATENCY_MS} ms a call, no rate limits), a real Label Studio on the same machine "
        "and a long-lived Prefect server; each setting a fresh batch. Times are from the start of `rlhf run`; a "
        f"thread polls the project's task count every {POLL_S} s, so every time is late by up to that much.",
        "",
        table,
        "",
    ]
    if today.first_task_s and streamed and streamed[0].first_task_s:
        best = min(streamed, key=lambda o: o.first_task_s or 1e9)
        lines.append(
            f"Annotators can start **{today.first_task_s / (best.first_task_s or 1):.0f}× sooner**: "
            f"{fmt(best.first_task_s)} s after the run starts ({best.setting}) instead of {fmt(today.first_task_s)} s "
            "(the whole batch, then `rlhf deliver`)."
        )
    return "\n".join(lines)


def main() -> int:
    global SIM_URL
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=FULL)
    parser.add_argument("--chunk-sizes", default="1000,100", help="streamed settings (comma-separated chunk sizes)")
    args = parser.parse_args()
    began = time.monotonic()
    prompts = prompt_file(args.prompts)
    chunk_sizes = [int(size) for size in args.chunk_sizes.split(",") if size]
    (OUT / "logs").mkdir(parents=True, exist_ok=True)
    ls_dir = OUT / "first-task-ls"
    import shutil

    shutil.rmtree(ls_dir, ignore_errors=True)
    ls_dir.mkdir(parents=True)
    outcomes: list[Outcome] = []
    with start_simulator_process(latency_ms=LATENCY_MS, mode="derived") as sim:
        SIM_URL = sim.url
        ls = LabelStudioServer(ls_dir / "data", ls_dir / "label-studio.log", say=log).start()
        try:
            with PrefectServer() as prefect:
                for size in chunk_sizes:
                    outcomes.append(one(ls, prefect, prompts, args.prompts, "streamed", size))
                outcomes.append(one(ls, prefect, prompts, args.prompts, "today", 1000))
        finally:
            ls.stop()
    minutes = (time.monotonic() - began) / 60
    markdown = BEGIN + "\n\n" + section(outcomes, args.prompts, minutes) + "\n\n" + END
    print(markdown)
    (OUT / f"first_task-{args.prompts}.json").write_text(json.dumps([asdict(o) for o in outcomes], indent=2))
    if args.prompts >= FULL:
        write_section(markdown, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
