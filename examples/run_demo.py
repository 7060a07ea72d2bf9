"""`make demo`: start the provider simulator, run examples/demo.yaml through `rlhf run`, show the result.

The simulator replays real AlpacaEval answers (gpt-4o, Llama 3 8B, Claude 3.5 Sonnet) over real HTTP,
so the run below is exactly what a run against real providers does, minus the bill.

The output is kept (``out/demo/``: answers, tasks, deliveries): a second ``make demo`` resumes the batch,
takes every answer from the response store and calls nobody, as a rerun against real providers would,
and says so. ``--fresh`` (``make demo-clean``) deletes ``out/demo/`` first and starts afresh.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from simulator import start_simulator_process

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "demo.yaml"
RUN_DIR = ROOT / "out" / "demo"


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the exit code of `rlhf run`."""
    parser = argparse.ArgumentParser(description="Run examples/demo.yaml against the provider simulator.")
    parser.add_argument(
        "--fresh", action="store_true", help="delete out/demo/ first (its answers, tasks and deliveries)"
    )
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    shown = RUN_DIR.relative_to(ROOT)
    if args.fresh and RUN_DIR.exists():
        shutil.rmtree(RUN_DIR)
        print(f"removed {shown}/ (its answers, tasks and deliveries): starting afresh", flush=True)
    elif (RUN_DIR / "summary.json").is_file():
        print(f"{shown}/ is kept from the last demo: this run resumes it (make demo-clean starts afresh)", flush=True)
    with start_simulator_process(latency_ms=40, latency_jitter_ms=60, mode="auto") as sim:
        print(f"provider simulator on {sim.url} (OpenAI /v1/chat/completions, Anthropic /v1/messages)", flush=True)
        env = {
            **os.environ,
            "SIM_URL": sim.url,
            "SIM_OPENAI_KEY": "sk-demo-not-a-real-key",
            "SIM_ANTHROPIC_KEY": "sk-ant-demo-not-a-real-key",
        }
        rlhf = str(Path(sys.executable).with_name("rlhf"))
        code = subprocess.call([rlhf, "run", str(CONFIG.relative_to(ROOT))], env=env)
        stats = sim.stats()
    print(f"\nsimulator served {stats['requests_total']} request(s)")
    tasks = RUN_DIR / "tasks.jsonl"
    if code == 0 and tasks.is_file():
        with tasks.open(encoding="utf-8") as handle:
            first = json.loads(handle.readline())
        turn = first["threads"][0]["turns"][-1]
        print(f"\nfirst task {first['task_id']} (prompt {first['metadata']['prompt_id']}):")
        for message in turn["messages"]:
            text = message["content"]["text"].replace("\n", " ")
            slots = ", ".join(a["key"] for a in message["annotations"]) or "-"
            print(f"  {message['role']:9} {message['source_id']:14} {text[:70]!r}…  slots: {slots}")
        print(f"  turn slots: {', '.join(a['key'] for a in turn['annotations'])}")
        print(f"\ntasks: {tasks}\nsummary: {RUN_DIR / 'summary.json'}")
    if code == 0:
        print(f"\n{reuse_line(json.loads((RUN_DIR / 'summary.json').read_text(encoding='utf-8')))}")
    return code


def reuse_line(summary: dict[str, Any]) -> str:
    """What the run asked the providers and what it took from the store, from its summary."""
    providers = summary["providers"].values()
    called = sum(p["called_this_run"] for p in providers)
    reused = sum(p["reused_from_store"] for p in providers)
    store = RUN_DIR.relative_to(ROOT) / "responses.sqlite"
    if called == 0 and reused:
        return (
            f"all {reused} answers reused from the response store ({store}), nothing called: a rerun never pays "
            "for an answer twice (make demo-clean starts afresh)"
        )
    line = f"{called} answer(s) called, {reused} reused from the response store ({store})"
    if reused == 0:
        line += "; run make demo again: every answer then comes from the store and nothing is called"
    return line


if __name__ == "__main__":
    sys.exit(main())
