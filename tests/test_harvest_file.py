"""``rlhf harvest --from file``: every bad line is one reject with its true line number; the rest is kept.

Run through the real command (typer's ``CliRunner`` on ``flows.cli.app.app``, in this process: nothing here
starts Prefect or a subprocess). The shells are real ones from ``build_task`` (``test_datasets``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from test_datasets import annotate, make_shell
from typer.testing import CliRunner

from flows.cli.app import app


def harvest(source: Path, out: Path) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    """Exit code, printed report and rejects of ``rlhf harvest --from file --in SOURCE --out OUT``."""
    result = CliRunner().invoke(app, ["harvest", "--from", "file", "--in", str(source), "--out", str(out), "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    report = json.loads(result.stdout)
    rejects = [json.loads(line) for line in Path(report["rejects"]).read_text(encoding="utf-8").splitlines()]
    return result.exit_code, report, rejects


def test_each_bad_line_is_a_reject_with_its_line_number_and_the_good_lines_are_kept(tmp_path: Path) -> None:
    shell = make_shell(["gpt-4o", "claude"])
    good = annotate(shell, turn={"likert_value": 2, "justification": "A is clearer"})
    other_annotator = annotate(shell, annotator="ann2", turn={"likert_value": 6})
    renamed = copy.deepcopy(good)
    renamed["threads"][0]["turns"][-1]["annotations"][0]["key"] = "preferred_model"  # a slot the task never had
    untouched = annotate(shell)  # completed, but every slot still null
    out_of_scale = annotate(shell, turn={"likert_value": 9})
    lines = [
        json.dumps(good),  # 1
        "",  # 2 blank: skipped, still counted as a line
        '{"task_id": "t-cut", "threads": [',  # 3 truncated JSON
        "[1, 2, 3]",  # 4 JSON, but not an object
        json.dumps(renamed),  # 5
        "   ",  # 6 blank
        json.dumps(untouched),  # 7
        json.dumps(out_of_scale),  # 8
        json.dumps(other_annotator),  # 9
    ]
    source = tmp_path / "from-platform.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")

    code, report, rejects = harvest(source, tmp_path / "annotated.jsonl")

    assert code == 3
    assert (report["read"], report["annotated"], report["rejected"]) == (7, 2, 5)
    assert report["rejected_by_reason"] == {
        "invalid_json": 1,
        "not_an_object": 1,
        "unknown_slot_key": 1,
        "no_annotation": 1,
        "invalid_value": 1,
    }
    assert [(r["file"], r["line"], r["reason"]) for r in rejects] == [
        (str(source), 3, "invalid_json"),
        (str(source), 4, "not_an_object"),
        (str(source), 5, "unknown_slot_key"),
        (str(source), 7, "no_annotation"),
        (str(source), 8, "invalid_value"),
    ]
    by_line = {r["line"]: r for r in rejects}
    assert by_line[3]["task_id"] is None and "Expecting value" in by_line[3]["reasons"][0]
    assert by_line[5]["task_id"] == shell["task_id"] and "'preferred_model'" in by_line[5]["reasons"][0]
    assert "outside the allowed values" in by_line[8]["reasons"][0]
    kept = [json.loads(line) for line in (tmp_path / "annotated.jsonl").read_text(encoding="utf-8").splitlines()]
    assert kept == [good, other_annotator]


def test_a_clean_file_exits_0_and_blank_lines_are_not_read(tmp_path: Path) -> None:
    shell = make_shell(["gpt-4o", "claude", "llama-3"], template="helpsteer_0_4")
    task = annotate(shell, turn={"ranking": ["claude", "llama-3", "gpt-4o"]}, answers={"claude": {"helpfulness": 4}})
    source = tmp_path / "in.jsonl"
    source.write_text("\n" + json.dumps(task) + "\n\n", encoding="utf-8")

    code, report, rejects = harvest(source, tmp_path / "annotated.jsonl")

    assert code == 0 and rejects == []
    assert (report["read"], report["annotated"], report["rejected"], report["rejected_by_reason"]) == (1, 1, 0, {})


def test_a_slot_moved_to_another_answer_is_an_unknown_slot(tmp_path: Path) -> None:
    """The key exists in the template, but not on that answer: a slot the task was not built with."""
    shell = make_shell(["gpt-4o", "claude"], template="helpsteer_0_4")
    task = annotate(shell, turn={"selected_model_id": "claude"})
    first, second = (m for m in task["threads"][0]["turns"][-1]["messages"] if m["role"] == "assistant")
    second["annotations"].append(copy.deepcopy(first["annotations"][0]) | {"value": 3})
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(task) + "\n", encoding="utf-8")

    code, report, rejects = harvest(source, tmp_path / "annotated.jsonl")

    assert code == 3 and report["rejected_by_reason"] == {"unknown_slot_key": 1}
    assert [(r["line"], r["reason"]) for r in rejects] == [(1, "unknown_slot_key")]
