"""Same input, same bytes, across processes: every output is written by a separate ``rlhf`` process, with
a different ``PYTHONHASHSEED`` each time (set and dict-of-set iteration order differs between them).

The in-process checks (two runs in one test process, ``test_generate_flow``; layout plans,
``test_layouts``) cannot see anything that depends on the interpreter's hash seed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, three_providers, write_config, write_prompts
from test_datasets import annotate, make_shell

from simulator import RunningSimulator

pytestmark = pytest.mark.slow  # rlhf subprocesses, and Prefect for the run

RLHF = str(Path(sys.executable).with_name("rlhf"))
HASH_SEEDS = ("1", "2")


def rlhf(*args: str, hash_seed: str, env: dict[str, str] | None = None) -> None:
    """``rlhf ARGS`` in a process of its own with ``PYTHONHASHSEED=hash_seed``; it must succeed."""
    result = subprocess.run(
        [RLHF, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**(env or os.environ), "PYTHONHASHSEED": hash_seed},
    )
    assert result.returncode == 0, result.stderr[-3000:]


def in_one_process(commands: list[list[str]], hash_seed: str) -> None:
    """Several ``rlhf`` commands, one after the other, in one process with ``PYTHONHASHSEED=hash_seed``
    (one interpreter start instead of one per command)."""
    script = (
        "import json, sys\n"
        "from flows.cli.app import app\n"
        "for args in json.loads(sys.argv[1]):\n"
        "    code = app(args, standalone_mode=False)\n"
        "    assert code in (None, 0, 3), (args, code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )
    assert result.returncode == 0, result.stderr[-3000:]


def contents(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (relative name -> bytes)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_rebuild_in_another_process_writes_the_same_task_files(
    sim: RunningSimulator, tmp_path: Path, fake_keys: dict[str, str], prefect_api: str
) -> None:
    """Process 1 runs the batch; its task files are removed; process 2 rebuilds them from the store
    (calling nobody): byte for byte the same, and so is an Argilla delivery made by each."""
    config = write_config(
        tmp_path,
        three_providers(sim),
        write_prompts(tmp_path / "p.jsonl", 12),
        annotation={"template": "helpsteer_0_4", "layout": "pairwise", "seed": 5},
    )
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    run_dir = tmp_path / "out" / "b1"
    outputs = ("tasks.jsonl", "incomplete.jsonl", "filtered.jsonl")
    written: list[dict[str, bytes]] = []
    delivered: list[dict[str, bytes]] = []
    for seed in HASH_SEEDS:
        for name in outputs:
            (run_dir / name).unlink(missing_ok=True)
        rlhf("run", str(config), hash_seed=seed, env=env)
        written.append({name: (run_dir / name).read_bytes() for name in outputs})
        rlhf("deliver", str(run_dir), "--to", "argilla", "--out", str(tmp_path / f"argilla-{seed}"), hash_seed=seed)
        delivered.append(contents(tmp_path / f"argilla-{seed}"))

    assert sim.stats()["requests_total"] == 36  # the second process paid for nothing
    assert written[0]["tasks.jsonl"].count(b"\n") == 36  # every pair of the three answers, per prompt
    assert written[0] == written[1]
    assert set(delivered[0]) == {"settings.json", "records.jsonl"} and delivered[0] == delivered[1]


def test_harvest_and_every_export_write_the_same_bytes_in_another_process(tmp_path: Path) -> None:
    two = make_shell(["gpt-4o", "claude"], template="helpsteer_0_4")
    three = make_shell(["llama-3", "gpt-4o", "claude"], template="helpsteer_0_4", prompt_id="p2")
    tasks = [
        annotate(two, turn={"likert_value": 2, "justification": "clearer"}, answers={"claude": {"helpfulness": 3}}),
        annotate(two, annotator="ann2", turn={"likert_value": 6}),
        annotate(three, turn={"ranking": ["claude", "llama-3", "gpt-4o"], "selected_model_id": "claude"}),
        annotate(three, annotator="ann2", answers={"claude": {"helpfulness": 9}}),  # outside 0-4: rejected
    ]
    source = tmp_path / "annotated-in.jsonl"
    source.write_text("".join(json.dumps(task) + "\n" for task in tasks), encoding="utf-8")

    outputs: list[dict[str, bytes]] = []
    for seed in HASH_SEEDS:
        out = tmp_path / f"seed-{seed}"
        commands = [["harvest", "--from", "file", "--in", str(source), "--out", str(out / "annotated.jsonl")]]
        commands += [
            ["export-dataset", str(out / "annotated.jsonl"), "--format", kind, "--out", str(out / "datasets")]
            for kind in ("dpo", "sft", "ratings")
        ]
        in_one_process(commands, hash_seed=seed)
        outputs.append(contents(out))

    assert sorted(outputs[0]) == [
        "annotated.jsonl",
        "annotated.rejects.jsonl",
        "datasets/dpo.jsonl",
        "datasets/dpo.parquet",
        "datasets/ratings.jsonl",
        "datasets/ratings.parquet",
        "datasets/sft.jsonl",
        "datasets/sft.parquet",
    ]
    assert outputs[0]["annotated.jsonl"].count(b"\n") == 3 and outputs[0]["annotated.rejects.jsonl"].count(b"\n") == 1
    assert outputs[0]["datasets/dpo.jsonl"].count(b"\n") == 5
    assert outputs[0] == outputs[1]
