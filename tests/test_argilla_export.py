"""The Argilla 2.x file export: dataset settings per template, records, files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_datasets import TEXTS, make_shell

from task_builder.argilla_export import (
    argilla_dataset,
    argilla_records,
    write_argilla,
)
from task_builder.ids import position_field
from task_builder.template import (
    AnnotationTemplate,
    resolve_template,
    shipped_templates,
)

NAME = re.compile(r"^(?=.*[a-z0-9])[a-z0-9_-]+$")  # the Argilla server's rule for field/question names


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def check_server_rules(settings: dict[str, Any]) -> None:
    """The limits the Argilla 2.x server applies when it creates a dataset from these settings."""
    names = [x["name"] for part in ("fields", "questions", "metadata") for x in settings[part]]
    assert len(names) == len(set(names)), "names must be unique across fields, questions and metadata"
    assert all(NAME.match(n) and len(n) <= 200 for n in names)
    assert any(f["required"] for f in settings["fields"]) and any(q["required"] for q in settings["questions"])
    for q in settings["questions"]:
        s = q["settings"]
        assert q["type"] == s["type"] and q["title"] and len(q["title"]) <= 500
        assert q["description"] is None or 1 <= len(q["description"]) <= 1000
        if s["type"] == "rating":
            values = [o["value"] for o in s["options"]]
            assert 2 <= len(values) <= 11 and all(isinstance(v, int) and 0 <= v <= 10 for v in values)
        if s["type"] in ("label_selection", "ranking"):
            values = [o["value"] for o in s["options"]]
            assert len(values) >= 2 and len(set(values)) == len(values)
            assert all(isinstance(o["value"], str) and 1 <= len(o["text"]) <= 500 for o in s["options"])
        if s["type"] == "label_selection" and s["visible_options"] is not None:
            assert 3 <= s["visible_options"] <= len(s["options"])


@pytest.mark.parametrize("name", shipped_templates())
@pytest.mark.parametrize("max_answers", [1, 2, 3])
def test_settings_for_every_shipped_template(name: str, max_answers: int) -> None:
    template = resolve_template(name)
    settings = argilla_dataset(template, max_answers)
    check_server_rules(settings)
    fields = by_name(settings["fields"])
    assert list(fields) == ["prompt", *(position_field(i) for i in range(max_answers))]
    assert fields["prompt"]["required"] and fields["response_a"]["required"]
    assert all(not fields[position_field(i)]["required"] for i in range(1, max_answers))
    questions = by_name(settings["questions"])
    for i in range(max_answers):
        for dim in template.dimensions:
            question = questions[f"{dim.key}_{position_field(i)}"]
            expected = {
                "integer": "rating",
                "category": "label_selection",
                "boolean": "label_selection",
                "text": "text",
            }[dim.type]
            assert question["type"] == expected
            assert question["title"].startswith(f"Response {'ABC'[i]}: ")
            assert question["required"] == (i == 0 and expected != "text")
        assert (f"rewrite_{position_field(i)}" in questions) == template.rewrite
    turn = template.turn
    assert ("selected_model_id" in questions) == (turn.selected_model_id and max_answers >= 2)
    assert ("likert_value" in questions) == (turn.likert.enabled and max_answers == 2)
    assert ("ranking" in questions) == (turn.ranking and max_answers >= 2)
    assert ("justification" in questions) == turn.justification
    metadata = by_name(settings["metadata"])
    assert metadata["prompt_id"]["visible_for_annotators"] is True
    assert set(metadata) == {"prompt_id"}  # no source map: Argilla's API returns even hidden metadata
    expected_count = max_answers * (len(template.dimensions) + template.rewrite) + sum(
        [
            turn.selected_model_id and max_answers >= 2,
            turn.likert.enabled and max_answers == 2,
            turn.ranking and max_answers >= 2,
            turn.justification,
        ]
    )
    assert len(questions) == expected_count


def test_pref_ranking_question_details() -> None:
    settings = argilla_dataset("default", 2)
    questions = by_name(settings["questions"])
    follow = questions["instruction_following_response_a"]
    assert [o["value"] for o in follow["settings"]["options"]] == [1, 2, 3, 4, 5, 6, 7]
    assert (
        "1 = 1 - Ignores the request" in follow["description"] and "7 = 7 - Follows it fully" in follow["description"]
    )
    assert "1 = 1 - Many false claims" in questions["truthfulness_response_a"]["description"]  # labelled ends
    verbosity = questions["verbosity_response_b"]["settings"]
    assert verbosity["options"] == [
        {"value": "too_short", "text": "Too short"},
        {"value": "just_right", "text": "Just right"},
        {"value": "too_long", "text": "Too long"},
    ]
    likert = questions["likert_value"]["settings"]
    assert likert["type"] == "label_selection"
    assert likert["options"][0] == {"value": "1", "text": "Response A much better"}
    assert likert["options"][3] == {"value": "4", "text": "About the same"}
    assert likert["options"][-1] == {"value": "7", "text": "Response B much better"}
    selected = questions["selected_model_id"]["settings"]
    assert selected["options"] == [
        {"value": "response_a", "text": "Response A"},
        {"value": "response_b", "text": "Response B"},
    ]
    assert selected["visible_options"] is None  # two options: the server wants >= 3 or nothing


def test_wide_and_out_of_range_scales_fall_back_to_labels() -> None:
    template = AnnotationTemplate(
        name="wide",
        dimensions=[
            {"key": "score", "title": "Score", "values": list(range(1, 13))},
            {"key": "shifted", "title": "Shifted", "values": [5, 8, 11]},
            {"key": "ok", "title": "Ok", "values": [0, 10]},
            {"key": "flag", "title": "Flag", "type": "boolean"},
            {"key": "note", "title": "Note", "type": "text"},
        ],
    )
    questions = by_name(argilla_dataset(template, 2)["questions"])
    assert questions["score_response_a"]["type"] == "label_selection"
    assert [o["value"] for o in questions["score_response_a"]["settings"]["options"]] == [str(v) for v in range(1, 13)]
    assert questions["shifted_response_a"]["type"] == "label_selection"
    assert questions["ok_response_a"]["type"] == "rating"
    assert questions["flag_response_a"]["settings"]["options"] == [
        {"value": "true", "text": "Yes"},
        {"value": "false", "text": "No"},
    ]
    assert questions["note_response_a"]["type"] == "text" and not questions["note_response_a"]["required"]
    check_server_rules(argilla_dataset(template, 2))


def test_ranking_question_of_helpsteer() -> None:
    questions = by_name(argilla_dataset("helpsteer_0_4", 3)["questions"])
    assert questions["ranking"]["settings"]["options"] == [
        {"value": "response_a", "text": "Response A"},
        {"value": "response_b", "text": "Response B"},
        {"value": "response_c", "text": "Response C"},
    ]
    assert questions["helpfulness_response_c"]["settings"]["options"][0] == {"value": 0}


def test_template_with_only_text_questions_still_has_a_required_one() -> None:
    template = AnnotationTemplate(
        name="notes",
        dimensions=[{"key": "note", "title": "Note", "type": "text"}],
        turn={"selected_model_id": False, "likert": {"enabled": False}, "justification": False},
    )
    questions = argilla_dataset(template, 2)["questions"]
    assert [q["required"] for q in questions] == [True, False]


def test_records_fields_in_presentation_order_without_sources() -> None:
    shells = [
        make_shell(["claude", "gpt-4o", "llama-3"]),
        make_shell(["llama-3", "gpt-4o"], prompt_id="p2", prompt="Q2"),
    ]
    records = list(argilla_records(shells))
    assert len(records) == 2
    first, second = records
    assert first["id"] == shells[0]["task_id"]
    assert first["fields"] == {
        "prompt": "What is jazz?",
        "response_a": TEXTS["claude"],
        "response_b": TEXTS["gpt-4o"],
        "response_c": TEXTS["llama-3"],
    }
    assert first["metadata"] == {"prompt_id": "p1"}
    assert second["fields"] == {"prompt": "Q2", "response_a": TEXTS["llama-3"], "response_b": TEXTS["gpt-4o"]}
    assert set(first) == {"id", "fields", "metadata", "suggestions", "responses", "vectors", "status"}
    assert first["status"] == "pending" and first["responses"] == {} and first["suggestions"] == {}


def test_records_keep_system_prompt_and_history_as_chat_context() -> None:
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    shell = make_shell(["gpt-4o", "claude"], prompt="Name one.", history=history, system="Terse.")
    (record,) = argilla_records([shell])
    assert record["fields"]["context"] == [
        {"role": "system", "content": "Terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    assert record["fields"]["prompt"] == "Name one."


def test_write_argilla_files(tmp_path: Path) -> None:
    shells = [
        make_shell(["claude", "gpt-4o"]),
        make_shell(
            ["gpt-4o", "llama-3"],
            prompt_id="p2",
            history=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        ),
    ]
    paths = write_argilla(tmp_path / "argilla", "default", iter(shells))
    assert paths == {
        "settings": tmp_path / "argilla" / "settings.json",
        "records": tmp_path / "argilla" / "records.jsonl",
    }
    settings = json.loads(paths["settings"].read_text())
    assert settings == argilla_dataset("default", 2, context=True)
    assert [f["name"] for f in settings["fields"]] == ["context", "prompt", "response_a", "response_b"]
    assert settings["fields"][0]["type"] == "chat" and not settings["fields"][0]["required"]
    lines = [json.loads(line) for line in paths["records"].read_text().splitlines()]
    assert [r["id"] for r in lines] == [s["task_id"] for s in shells]
    assert sorted(p.name for p in (tmp_path / "argilla").iterdir()) == ["records.jsonl", "settings.json"]


def test_write_argilla_sizes_settings_from_the_widest_task(tmp_path: Path) -> None:
    shells = [make_shell(["claude", "gpt-4o"]), make_shell(["gpt-4o", "llama-3", "claude"], prompt_id="p2")]
    settings = json.loads(write_argilla(tmp_path, "default", shells)["settings"].read_text())
    assert [f["name"] for f in settings["fields"]] == ["prompt", "response_a", "response_b", "response_c"]
    assert "likert_value" not in by_name(settings["questions"])


def test_write_argilla_refuses_too_small_max_answers_and_leaves_nothing(tmp_path: Path) -> None:
    shells = [make_shell(["claude", "gpt-4o", "llama-3"])]
    with pytest.raises(ValueError, match="max_answers=2, but a task has 3 answers"):
        write_argilla(tmp_path, "default", shells, max_answers=2)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no tasks"):
        write_argilla(tmp_path, "default", [])
    assert list(tmp_path.iterdir()) == []
