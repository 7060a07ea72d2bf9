"""``annotation.pairs: adaptive`` in the run config: a run's pairwise tasks go to the pairs a previous
leaderboard left undecided, in the proportion task_builder/adaptive.py's weights say; the config hash of a
config without the new keys is what it was."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import three_providers, write_config, write_prompts

from common.errors import InputError
from flows.config import RunConfig, load_config
from flows.generation.generate import generate_tasks
from simulator import RunningSimulator
from task_builder.adaptive import FLOOR

# gpt-4o and llama-3 overlap by half of the narrower interval; claude is far from both.
BOARD = {
    "humans": {
        "models": [
            {"source_id": "gpt-4o", "strength": 0.5, "ci": [0.0, 1.0]},
            {"source_id": "llama-3", "strength": 1.0, "ci": [0.5, 1.5]},
            {"source_id": "claude", "strength": 5.5, "ci": [5.0, 6.0]},
        ]
    }
}
ADAPTIVE = {"template": "default", "layout": "pairwise", "pairs_per_prompt": 1, "seed": 3, "pairs": "adaptive"}


def _board(tmp_path: Path, data: Any = BOARD) -> Path:
    path = tmp_path / "prev.leaderboard.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def _pairs(summary: dict[str, Any]) -> Counter[tuple[str, ...]]:
    counts: Counter[tuple[str, ...]] = Counter()
    for line in Path(summary["files"]["tasks"]).read_text().splitlines():
        task = json.loads(line)
        messages = task["threads"][0]["turns"][-1]["messages"]
        counts[tuple(sorted(m["source_id"] for m in messages if m["role"] == "assistant"))] += 1
    return counts


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_adaptive_pairs_favour_the_undecided_pair_in_proportion(sim: RunningSimulator, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "p.jsonl", 60)
    _board(tmp_path)
    runs = {}
    for name, annotation in (
        ("adaptive", {**ADAPTIVE, "leaderboard": "prev.leaderboard.json"}),  # relative to the config's directory
        ("balanced", {**ADAPTIVE, "pairs": "balanced"}),
    ):
        workdir = tmp_path if name == "adaptive" else tmp_path / name
        workdir.mkdir(exist_ok=True)
        config = write_config(workdir, three_providers(sim), prompts, annotation=annotation)
        runs[name] = _pairs(asyncio.run(generate_tasks(str(config))))
    adaptive, balanced = runs["adaptive"], runs["balanced"]
    undecided, settled = ("gpt-4o", "llama-3"), [("claude", "gpt-4o"), ("claude", "llama-3")]
    # Weights 0.5 : 0.05 : 0.05 over 60 one-pair prompts: 50 : 5 : 5 (the selector keeps each pair's count
    # within one of its share as the batch goes).
    assert sum(adaptive.values()) == 60
    assert adaptive[undecided] == 50 and all(adaptive[pair] == 5 for pair in settled), adaptive
    assert balanced[undecided] == 20 and all(balanced[pair] == 20 for pair in settled), balanced
    # Seeded: the same config gives the same tasks again.
    again = tmp_path / "again"
    again.mkdir()
    _board(again)
    config = write_config(
        again,
        three_providers(sim),
        prompts,
        annotation={**ADAPTIVE, "leaderboard": str(tmp_path / "prev.leaderboard.json")},
    )
    assert _pairs(asyncio.run(generate_tasks(str(config)))) == adaptive
    assert FLOOR == 0.05


# A config written before ``pairs``/``leaderboard`` existed; its hash computed by the code of that time.
OLD_CONFIG = {
    "project": "p",
    "batch": "b1",
    "prompts": {"path": "prompts.jsonl"},
    "providers": [{"source_id": "a", "kind": "openai", "model": "m"}],
    "annotation": {"template": "default", "layout": "pairwise", "pairs_per_prompt": 1, "seed": 3},
}
OLD_HASH = "872d05576a1f4228"  # by the code of commit 2190d35, before the adaptive and image keys


def test_a_config_without_the_adaptive_keys_keeps_its_hash() -> None:
    config = RunConfig.model_validate(OLD_CONFIG)
    assert config.config_hash() == OLD_HASH
    explicit = RunConfig.model_validate({**OLD_CONFIG, "annotation": {**OLD_CONFIG["annotation"], "pairs": "balanced"}})
    assert explicit.config_hash() == OLD_HASH
    adaptive = RunConfig.model_validate(
        {**OLD_CONFIG, "annotation": {**OLD_CONFIG["annotation"], "pairs": "adaptive", "leaderboard": "lb.json"}}
    )
    assert adaptive.config_hash() != OLD_HASH


def _problem(tmp_path: Path, annotation: dict[str, Any], needle: str) -> tuple[Path, int, str]:
    config = write_config(
        tmp_path, [{"source_id": "gpt-4o", "kind": "openai", "model": "m"}], tmp_path / "p.jsonl", annotation=annotation
    )
    line = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if needle in text)
    with pytest.raises(InputError) as caught:
        load_config(config)
    return config, line, str(caught.value)


@pytest.mark.parametrize(
    ("board", "annotation", "needle", "field", "message"),
    [
        (
            None,
            {**ADAPTIVE, "leaderboard": "missing.json"},
            "leaderboard:",
            "annotation.leaderboard",
            "leaderboard file not found: ",
        ),
        (
            "{not json",
            {**ADAPTIVE, "leaderboard": "prev.leaderboard.json"},
            "leaderboard:",
            "annotation.leaderboard",
            "is not JSON (line 1: ",
        ),
        (
            {"humans": {"models": []}},
            {**ADAPTIVE, "leaderboard": "prev.leaderboard.json"},
            "leaderboard:",
            "annotation.leaderboard",
            "holds no human leaderboard with intervals",
        ),
        (
            {"humans": {"models": [{"source_id": "x", "ci": [0, 1]}]}},
            {**ADAPTIVE, "leaderboard": "prev.leaderboard.json"},
            "leaderboard:",
            "annotation.leaderboard",
            "the leaderboard ranks none of the run's models (gpt-4o; it ranks x)",
        ),
        (BOARD, ADAPTIVE, "pairs:", "annotation.pairs", "'adaptive' needs 'leaderboard'"),
        (
            BOARD,
            {**ADAPTIVE, "layout": "n_way", "leaderboard": "prev.leaderboard.json"},
            "pairs:",
            "annotation.pairs",
            "'adaptive' needs 'layout: pairwise' (the layout is 'n_way')",
        ),
        (
            BOARD,
            {**ADAPTIVE, "pairs_per_prompt": None, "leaderboard": "prev.leaderboard.json"},
            "pairs:",
            "annotation.pairs",
            "'adaptive' needs 'pairs_per_prompt'",
        ),
        (
            BOARD,
            {**ADAPTIVE, "pairs": "balanced", "leaderboard": "prev.leaderboard.json"},
            "leaderboard:",
            "annotation.leaderboard",
            "a leaderboard is only read with 'pairs: adaptive'",
        ),
        (
            BOARD,
            {**ADAPTIVE, "pairs": "adaptiv"},
            "pairs:",
            "annotation.pairs",
            "Input should be 'balanced' or 'adaptive'",
        ),
    ],
)
def test_adaptive_config_errors_name_file_line_and_field(
    tmp_path: Path,
    fake_keys: dict[str, str],
    board: Any,
    annotation: dict[str, Any],
    needle: str,
    field: str,
    message: str,
) -> None:
    if board is not None:
        _board(tmp_path, board)
    config, line, text = _problem(tmp_path, {k: v for k, v in annotation.items() if v is not None}, needle)
    assert text.startswith(f"{config}:{line}: {field}: ") and message in text, text
