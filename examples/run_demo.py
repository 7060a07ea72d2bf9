"""`make demo`: start the provider simulator, run examples/demo.yaml through `rlhf run`, show the result.

The simulator replays real AlpacaEval answers (gpt-4o, Llama 3 8B, Claude 3.5 Sonnet) over real HTTP,
so the run below is exactly what a run against real providers does, minus the bill.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from simulator import start_simulator_process

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "demo.yaml"
RUN_DIR = ROOT / "out" / "demo"


def main() -> int:
    """Run the demo; return the exit code of `rlhf run`."""
    os.chdir(ROOT)
    # A fresh demo each time: the response store would otherwise (correctly) reuse every answer.
    shutil.rmtree(RUN_DIR, ignore_errors=True)
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
    return code


if __name__ == "__main__":
    sys.exit(main())
