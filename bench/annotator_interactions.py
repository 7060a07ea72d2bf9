"""Interactions (clicks + keys) an annotator needs per task, before and after issue 28's form.

Reads the forms themselves: *before* is ``platforms/label_studio/labeling_config.py`` as a git revision
has it (default ``main``, ``--before REV``), *after* is this checkout's. For the demo's template
(``pref_ranking``) and tasks of 2 and 3 answers it counts the questions (single-choice groups, each
needing one interaction), how many of them have a hotkey for every option (answerable by one key
press), and so the fastest path: one key per keyed question, one click per other question, and the
submission (Ctrl+Enter in both). It prints a table and, with ``--write``, replaces the section between
``<!-- annotator-interactions -->`` markers in bench/RESULTS.md (appended at the end the first time).

The browser test ``test_an_annotator_completes_a_two_answer_task_with_the_keyboard_alone`` checks the
*after* column's keyboard path in a real Label Studio and chromium: it presses exactly these keys.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from platforms.label_studio import labeling_config as current  # noqa: E402
from task_builder.template import resolve_template  # noqa: E402

MODULE = "platforms/label_studio/labeling_config.py"
RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- annotator-interactions -->", "<!-- /annotator-interactions -->"


def _module_at(revision: str) -> types.ModuleType:
    """The labeling-config module as ``revision`` has it, loaded under a private name."""
    source = subprocess.run(
        ["git", "show", f"{revision}:{MODULE}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType(f"labeling_config_{revision.replace('/', '_')}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:{MODULE}", "exec"), module.__dict__)  # noqa: S102 - our own file
    return module


def count(xml: str, inert: str) -> dict[str, int]:
    """Questions, keyed questions, clicks, keys and interactions of the fastest path through one task."""
    groups = list(ET.fromstring(xml).iter("Choices"))
    keyed = 0
    for group in groups:
        keys = [choice.get("hotkey") for choice in group]
        if all(key and key != inert for key in keys) and len(set(keys)) == len(keys):
            keyed += 1
    clicks = len(groups) - keyed
    keys_pressed = keyed + 1  # and Ctrl+Enter to submit
    return {
        "questions": len(groups),
        "keyed": keyed,
        "clicks": clicks,
        "keys": keys_pressed,
        "interactions": clicks + keys_pressed,
    }


def measure(before: str) -> list[dict[str, object]]:
    """One row per (form, layout, answer count)."""
    template = resolve_template("pref_ranking")
    old = _module_at(before)
    rows: list[dict[str, object]] = []
    for answers in (2, 3):
        for name, module in ((f"before ({before})", old), ("after", current)):
            xml = module.build_labeling_config(template, answers).xml
            rows.append({"form": name, "layout": "n_way", "answers": answers, **count(xml, module.INERT_HOTKEY)})
    rows += [pairwise(old, f"before ({before})", template, 3), pairwise(current, "after", template, 3)]
    return rows


def pairwise(module: types.ModuleType, name: str, template: object, answers: int) -> dict[str, object]:
    """The pairwise layout, all pairs of ``answers`` answers: the interactions of a prompt's pair tasks
    together. Before, every pair asks both answers' ratings; after, an answer's ratings are asked in one
    pair only (``task_builder.layout.rate_once``) and the other pairs ask the comparison alone."""
    pairs = answers * (answers - 1) // 2
    form = count(module.build_labeling_config(template, 2).xml, module.INERT_HOTKEY)
    per_answer = (form["questions"] - 1) // 2  # the questions of one answer (the rest is the comparison)
    if module is current:
        questions = pairs + answers * per_answer  # a comparison per pair, each answer's ratings once
        keyed = questions if form["clicks"] == 0 else 1
    else:
        questions, keyed = pairs * form["questions"], pairs * form["keyed"]
    clicks = questions - keyed
    return {
        "form": name,
        "layout": f"pairwise ({pairs} pairs)",
        "answers": answers,
        "questions": questions,
        "keyed": keyed,
        "clicks": clicks,
        "keys": keyed + pairs,
        "interactions": clicks + keyed + pairs,
    }


def table(rows: list[dict[str, object]]) -> str:
    """The rows as a markdown table."""
    lines = [
        "| answers | layout | form | questions | with a key for every option | clicks | keys | interactions | keyboard alone |",
        "|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        alone = "yes" if row["clicks"] == 0 else "no"
        lines.append(
            f"| {row['answers']} | {row['layout']} | {row['form']} | {row['questions']} | {row['keyed']} | {row['clicks']} | "
            f"{row['keys']} | {row['interactions']} | {alone} |"
        )
    return "\n".join(lines)


def section(rows: list[dict[str, object]]) -> str:
    """The RESULTS.md section."""
    return f"""{BEGIN}

## Annotator interactions per task (issue 28)

Generated by `bench/annotator_interactions.py` from the forms themselves (the demo's template,
`pref_ranking`; *before* is the labeling config of the revision named, *after* this one). Each question
(a single-choice group: a rating, the preference) takes one interaction; the fastest path presses a key
where every option of the question has one, clicks elsewhere, and submits with Ctrl+Enter.

{table(rows)}

In one task (`n_way`) the count stays one interaction per question plus the submission: what changed is
what they are made of, key presses along one keyboard row per question (written after its title) instead
of clicks, so a task is done without the mouse and without looking away from the answers for a radio
button; the browser test completes a two-answer task that way. The pairwise layout asks fewer questions:
an answer's ratings once per prompt instead of in each of its pairs (for the prompt's pairs together;
the browser test presses 16 + 9 + 2 keys for a prompt's three pairs). *Before*'s pairwise clicks
assume each pair is done as the n_way row above.

Reproduce: `.venv/bin/python bench/annotator_interactions.py --write` (`--before REV`).

{END}"""


def main() -> None:
    """Print the table; with ``--write``, also put it into bench/RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="git revision of the form to compare with (default main)")
    parser.add_argument("--write", action="store_true", help="replace (or append) the section in bench/RESULTS.md")
    args = parser.parse_args()
    rows = measure(args.before)
    print(table(rows))
    if args.write:
        text = RESULTS.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            text = head + section(rows) + rest.split(END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + section(rows) + "\n"
        RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
