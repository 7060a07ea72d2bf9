"""How long `rlhf quality` and `rlhf leaderboard` take, and how often the leaderboard's 95% intervals hold
known strengths (issue 31). Prints markdown tables (paste into bench/RESULTS.md).

Annotations are scripted (tests/scripted_annotators.py): pairwise tasks of three models, two careful
annotators and one random. Coverage: four models with known Bradley–Terry strengths, every pair compared
N times per draw, intervals from 200 bootstrap draws, over R repeated draws.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from scripted_annotators import Annotator, annotate_all, pairwise_batch  # noqa: E402

from task_builder.leaderboard import Comparison, board, leaderboard  # noqa: E402
from task_builder.reliability import quality  # noqa: E402

STRENGTHS = {"m1": 1.0, "m2": 0.0, "m3": -1.0}
TRUTH = {"a": 0.8, "b": 0.3, "c": -0.2, "d": -0.9}


def timings(sizes: list[int], draws: int) -> None:
    print(f"| tasks | annotations | quality ({draws} draws) | leaderboard ({draws} draws) | flagged |")
    print("|---:|---:|---:|---:|---|")
    people = [Annotator("alice"), Annotator("bob"), Annotator("rand", kind="random")]
    for per_pair in sizes:
        copies = annotate_all(pairwise_batch(list(STRENGTHS), per_pair, STRENGTHS), people)
        start = time.perf_counter()
        report = quality(copies, draws=draws)
        middle = time.perf_counter()
        leaderboard(copies, draws=draws)
        end = time.perf_counter()
        print(
            f"| {3 * per_pair} | {len(copies)} | {middle - start:.2f} s | {end - middle:.2f} s "
            f"| {', '.join(report['flagged'])} |"
        )


def coverage(per_pair_counts: list[int], repetitions: int) -> None:
    print("\n| comparisons per pair | intervals | coverage of 95% intervals | mean width |")
    print("|---:|---:|---:|---:|")
    for per_pair in per_pair_counts:
        rng = random.Random(per_pair)
        covered = checked = 0
        widths = []
        for repetition in range(repetitions):
            games = []
            names = list(TRUTH)
            for i, x in enumerate(names):
                for y in names[i + 1 :]:
                    p = 1 / (1 + math.exp(TRUTH[y] - TRUTH[x]))
                    games += [(x, y, 1.0 if rng.random() < p else 0.0) for _ in range(per_pair)]
            comparisons = [Comparison(f"t{n}", a, b, s) for n, (a, b, s) in enumerate(games)]
            for entry in board(comparisons, draws=200, seed=repetition)["models"]:
                low, high = entry["ci"]
                covered += int(low <= TRUTH[entry["source_id"]] <= high)
                widths.append(high - low)
                checked += 1
        print(f"| {per_pair} | {checked} | {covered / checked:.3f} | {sum(widths) / len(widths):.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="tasks per pair of models (3 pairs), comma-separated")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--per-pair", default="10,40,160", help="comparisons per pair for the coverage runs")
    parser.add_argument("--repetitions", type=int, default=200)
    args = parser.parse_args()
    timings([int(n) for n in args.sizes.split(",")], args.draws)
    coverage([int(n) for n in args.per_pair.split(",")], args.repetitions)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
