"""Quality flags and template filters, answer by answer (no HTTP: pure functions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.generation.task_writer import filter_reason
from task_builder.quality import answer_flags, task_flags
from task_builder.template import TaskFilters

LONG = " ".join(f"word{i}" for i in range(120))


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that request.",
        "I’m sorry, but I can’t assist with this.",  # typographic apostrophes
        "Lo siento, pero no puedo ayudar con eso.",
        "Je suis désolé, mais je ne peux pas répondre.",
        "Es tut mir leid, aber ich kann das nicht tun.",
        "Извините, но я не могу помочь с этим.",
        "抱歉，我无法提供这方面的帮助。",
        "申し訳ありませんが、その質問にはお答えできません。",
    ],
)
def test_refusals_in_several_languages(text: str) -> None:
    assert "refusal" in answer_flags(text, "stop")


@pytest.mark.parametrize(
    "text",
    [
        "Sure! Here is how you can help your team with the migration.",
        "I can help with that. First, preheat the oven.",
        "The novel 'I cannot tell a lie' was written in 1920.",
    ],
)
def test_ordinary_answers_are_not_refusals(text: str) -> None:
    assert answer_flags(text, "stop") == []


def test_a_refusal_late_in_a_long_answer_is_not_a_refusal() -> None:
    assert "refusal" not in answer_flags(LONG + " I cannot help with that last part.", "stop")


def test_empty_and_truncated() -> None:
    assert answer_flags(" \n\t ", "stop") == ["empty"]
    assert answer_flags("Some text", "length") == ["truncated"]
    assert answer_flags("Some text", "max_tokens") == ["truncated"]
    assert answer_flags("Some text", "end_turn") == []


def test_comparative_flags_only_where_they_apply() -> None:
    flags = task_flags(
        {
            "a": (LONG, "stop"),
            "b": ("  " + LONG.upper() + "\n", "stop"),  # identical after folding
            "c": (LONG.replace("word7 ", "wordX "), "stop"),  # near-identical
            "d": ("Too brief here, sorry.", "stop"),  # short next to 120 words
            "e": ("An entirely different answer " * 5, "stop"),
        }
    )
    assert flags == {
        "a": ["duplicate"],
        "b": ["duplicate"],
        "c": ["near_duplicate"],
        "d": ["short"],
        "e": [],
    }


def test_very_short_answer_is_short_even_alone() -> None:
    assert task_flags({"a": ("Yes.", "stop")}) == {"a": ["short"]}


def test_filters() -> None:
    same = {"a": ("Same answer here", "stop"), "b": ("same   answer here", "stop")}
    assert filter_reason(TaskFilters(drop_all_identical=True), same, task_flags(same)) == "all answers are identical"
    assert filter_reason(TaskFilters(), same, task_flags(same)) is None
    flagged = {"a": ("", "stop"), "b": ("I can't help with that.", "stop")}
    assert filter_reason(TaskFilters(drop_all_flagged=True), flagged, task_flags(flagged)) == "every answer is flagged"
    mixed = {"a": ("", "stop"), "b": (LONG, "stop")}
    assert filter_reason(TaskFilters(drop_all_flagged=True), mixed, task_flags(mixed)) is None


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_flags_on_crafted_simulator_answers_and_only_there(tmp_path) -> None:
    import asyncio
    import json

    from conftest import three_providers, write_config, write_prompts

    from flows.generation.generate import generate_tasks
    from simulator import RunningSimulator, ScriptedAnswer

    long_answer = " ".join(f"Step {i} explains part {i} of the method in detail." for i in range(1, 16))
    scripted = [
        ScriptedAnswer(prompt_contains="number 0:", model="gpt-4o", text="   \n  "),
        ScriptedAnswer(prompt_contains="number 1:", model="gpt-4o", text=long_answer, truncated=True),
        ScriptedAnswer(
            prompt_contains="number 2:",
            model="llama-3-8b",
            text="Lo siento, pero no puedo ayudar con eso. " + "Esta solicitud va en contra de las normas de uso. " * 8,
        ),
        ScriptedAnswer(prompt_contains="number 3:", model="gpt-4o", text=long_answer),
        ScriptedAnswer(prompt_contains="number 3:", model="claude-sonnet-4-5", text=long_answer.upper()),
        ScriptedAnswer(prompt_contains="number 4:", model="gpt-4o", text=long_answer + " One more closing remark."),
        ScriptedAnswer(prompt_contains="number 4:", model="llama-3-8b", text=long_answer),
        ScriptedAnswer(prompt_contains="number 5:", model="claude-sonnet-4-5", text="Yes."),
    ]
    expected = {
        ("p-000", "gpt-4o"): ["empty"],
        ("p-001", "gpt-4o"): ["truncated"],
        ("p-002", "llama-3"): ["refusal"],
        ("p-003", "gpt-4o"): ["duplicate"],
        ("p-003", "claude"): ["duplicate"],
        ("p-004", "gpt-4o"): ["near_duplicate"],
        ("p-004", "llama-3"): ["near_duplicate"],
        ("p-005", "claude"): ["short"],
    }
    with RunningSimulator(mode="derived", scripted=scripted) as sim:
        providers = three_providers(sim)
        for provider in providers:  # room for every derived answer: only the crafted one is truncated
            provider["params"]["max_tokens"] = 4096
        config = write_config(
            tmp_path,
            providers,
            write_prompts(tmp_path / "p.jsonl", 8),
            annotation={"template": {"name": "drop", "extends": "default", "filters": {"drop_all_flagged": True}}},
        )
        summary = asyncio.run(generate_tasks(str(config)))
    tasks = [json.loads(line) for line in Path(summary["files"]["tasks"]).read_text(encoding="utf-8").splitlines()]
    assert len(tasks) == 8 and summary["tasks_filtered"] == 0
    for task in tasks:
        for source_id, response in task["metadata"]["responses"].items():
            assert response["flags"] == expected.get((task["metadata"]["prompt_id"], source_id), []), (
                task["metadata"]["prompt_id"],
                source_id,
            )
