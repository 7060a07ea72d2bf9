"""Drive distilabel (1.5.x) against the simulator: one TextGeneration branch per model.

Runs in its own venv (``bench/.venvs/distilabel``). The three models are three parallel branches of
one pipeline (``load >> [gen_0, gen_1, gen_2]``); distilabel runs each step in its own process and
sends a step's input batch concurrently, so ``input_batch_size`` is the per-model concurrency. Every
model goes through the simulator's OpenAI-compatible endpoint (``/v1/chat/completions``).

Prints one JSON line: ``{"answered": N, "failed": M}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    """Build the pipeline, run it, count the answers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="simulator root URL")
    parser.add_argument("--prompts", required=True, type=Path)
    parser.add_argument("--models", required=True, help="comma-separated model names")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cache-dir", required=True, type=Path)
    args = parser.parse_args()

    from distilabel.models.llms import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    with args.prompts.open(encoding="utf-8") as handle:
        data = [{"instruction": json.loads(line)["prompt"]} for line in handle if line.strip()]
    models = args.models.split(",")
    with Pipeline(name="rlhf-bench", cache_dir=args.cache_dir) as pipeline:
        load = LoadDataFromDicts(data=data, batch_size=max(50, args.concurrency))
        branches = []
        for index, model in enumerate(models):
            llm = OpenAILLM(
                model=model,
                base_url=f"{args.url}/v1",
                api_key="sk-bench-not-a-real-key",
                max_retries=0,
                timeout=120,
                generation_kwargs={"max_new_tokens": 1024, "temperature": 0.7, "top_p": 1.0},
            )
            branches.append(
                TextGeneration(
                    name=f"gen_{index}",
                    llm=llm,
                    input_batch_size=args.concurrency,
                    add_raw_output=False,
                    add_raw_input=False,
                )
            )
        load >> branches
    distiset = pipeline.run(use_cache=False)
    answered = failed = 0
    for name in distiset:
        for row in distiset[name]["train"]:
            if row.get("generation"):
                answered += 1
            else:
                failed += 1
    print(json.dumps({"answered": answered, "failed": failed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
