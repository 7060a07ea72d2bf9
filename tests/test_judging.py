"""Judge requests from annotation templates, their structured-output schemas, parsing a judge's answer,
and combining a preference asked in both orders (task_builder/judging.py)."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import jsonschema
import pytest

from task_builder.judging import (
    SCHEMA_NAME_PATTERN,
    JudgeProblem,
    JudgeRequest,
    anthropic_tool,
    combine_swapped,
    judgeable_dimensions,
    openai_response_format,
    parse_judgement,
    preference_request,
    rating_request,
    rubric_line,
    swap_combination,
)
from task_builder.template import AnnotationTemplate, load_annotation_template, resolve_template, shipped_templates

TEMPLATES = shipped_templates()
LIKERT_TEMPLATES = [n for n in TEMPLATES if resolve_template(n).turn.likert.enabled]
# Keywords OpenAI strict structured outputs accept in the schemas made here.
STRICT_KEYWORDS = {"type", "properties", "required", "additionalProperties", "enum", "description"}


def template(name: str) -> AnnotationTemplate:
    """A shipped template as a run uses it (``extends`` applied)."""
    return resolve_template(name)


def custom(**turn: Any) -> AnnotationTemplate:
    return AnnotationTemplate.model_validate(
        {
            "name": "custom",
            "dimensions": [
                {"key": "notes", "title": "Notes", "type": "text"},
                {"key": "score", "title": "Score", "values": [1, 3, 5], "labels": ["1 - bad", "3", "5 - good"]},
            ],
            "turn": turn,
        }
    )


def requests() -> list[tuple[str, JudgeRequest]]:
    out = [(name, rating_request(template(name), "What is jazz?", "Jazz is music.")) for name in TEMPLATES]
    for name in LIKERT_TEMPLATES:
        req = preference_request(template(name), "What is jazz?", "Jazz is music.", "A genre.")
        assert req is not None
        out.append((f"{name}-preference", req))
    return out


REQUESTS = requests()
IDS = [name for name, _ in REQUESTS]


def valid_judgement(req: JudgeRequest) -> dict[str, Any]:
    """The first value of every scale (True for a yes/no) and a rationale."""
    out: dict[str, Any] = {}
    for key, prop in req.schema["properties"].items():
        out[key] = prop["enum"][0] if "enum" in prop else (True if prop["type"] == "boolean" else "Because.")
    return out


def a_scaled_key(req: JudgeRequest) -> str:
    return next(k for k, p in req.schema["properties"].items() if "enum" in p)


# ---------------------------------------------------------------- schemas


def test_every_shipped_template_gives_a_rating_request_and_the_likert_ones_a_preference() -> None:
    assert set(TEMPLATES) == {"helpsteer_0_4", "pref_ranking", "pref_ranking_rewrites", "sft"}
    assert set(LIKERT_TEMPLATES) == {"helpsteer_0_4", "pref_ranking", "pref_ranking_rewrites"}
    assert preference_request(template("sft"), "q", "a", "b") is None


@pytest.mark.parametrize(("name", "req"), REQUESTS, ids=IDS)
def test_schema_is_valid_json_schema_in_the_strict_subset(name: str, req: JudgeRequest) -> None:
    schema = req.schema
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["required"] == list(schema["properties"])
    assert list(schema["properties"])[0] == "rationale"
    assert set(schema) <= STRICT_KEYWORDS
    for prop in schema["properties"].values():
        assert set(prop) <= STRICT_KEYWORDS
        assert prop["type"] in ("integer", "string", "boolean")
        if prop["type"] == "integer":
            assert prop["enum"] and all(isinstance(v, int) for v in prop["enum"])
    assert re.fullmatch(SCHEMA_NAME_PATTERN, req.schema_name)


@pytest.mark.parametrize(("name", "req"), REQUESTS, ids=IDS)
def test_a_valid_judgement_round_trips_and_jsonschema_agrees(name: str, req: JudgeRequest) -> None:
    judgement = valid_judgement(req)
    jsonschema.validate(judgement, req.schema)
    assert parse_judgement(req, json.dumps(judgement)) == judgement
    assert parse_judgement(req.schema, json.dumps(judgement)) == judgement


@pytest.mark.parametrize(("name", "req"), REQUESTS, ids=IDS)
def test_an_out_of_scale_value_is_rejected_by_both(name: str, req: JudgeRequest) -> None:
    key = a_scaled_key(req)
    bad = {**valid_judgement(req), key: 99 if req.schema["properties"][key]["type"] == "integer" else "nope"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, req.schema)
    problem = parse_judgement(req, json.dumps(bad))
    assert isinstance(problem, JudgeProblem) and problem.field == key
    assert "outside the allowed values" in problem.reason


@pytest.mark.parametrize(("name", "req"), REQUESTS, ids=IDS)
def test_a_missing_key_is_rejected_by_both(name: str, req: JudgeRequest) -> None:
    key = a_scaled_key(req)
    bad = {k: v for k, v in valid_judgement(req).items() if k != key}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, req.schema)
    assert parse_judgement(req, json.dumps(bad)) == JudgeProblem(key, "missing")


@pytest.mark.parametrize(("name", "req"), REQUESTS, ids=IDS)
@pytest.mark.parametrize("text", ["", "not json", "The scores are: {}", "{'rationale': 'x'}", "[1, 2]", "42"])
def test_non_json_or_not_an_object_is_rejected(name: str, req: JudgeRequest, text: str) -> None:
    problem = parse_judgement(req, text)
    assert isinstance(problem, JudgeProblem) and problem.field is None


# ---------------------------------------------------------------- rubric and messages


def test_rubric_uses_the_templates_titles_scales_labels_and_descriptions() -> None:
    helpsteer = {d.key: d for d in template("helpsteer_0_4").dimensions}
    assert rubric_line(helpsteer["helpfulness"]) == (
        "- helpfulness — Helpfulness (0–4; 0 = Not helpful at all, 1 = Slightly helpful, 2 = Partly helpful, "
        "3 = Mostly helpful, 4 = Perfectly helpful): How useful is the response in answering the prompt?"
    )
    pref = {d.key: d for d in template("pref_ranking").dimensions}
    # labels that only repeat the number ("2", "3") add nothing and are left out
    assert rubric_line(pref["instruction_following"]) == (
        "- instruction_following — Instruction following (1–7; 1 = Ignores the request, 4 = Partly follows, "
        "7 = Follows it fully): Does the response do what the prompt asked, respecting every constraint it set?"
    )
    assert rubric_line(pref["verbosity"]) == (
        "- verbosity — Verbosity (one of too_short = Too short, just_right = Just right, too_long = Too long): "
        "Is the length right for the request?"
    )
    sft = {d.key: d for d in template("sft").dimensions}
    assert rubric_line(sft["needs_rewrite"]) == "- needs_rewrite — Does the response need changes? (true or false)"
    assert rubric_line(custom().dimensions[1]) == "- score — Score (one of 1, 3, 5; 1 = bad, 5 = good)"


def test_rating_request_asks_about_one_answer_on_every_judgeable_dimension() -> None:
    pref = template("pref_ranking")
    req = rating_request(pref, "What is jazz?", "Jazz is music.")
    assert req.kind == "rating" and req.schema_name == "rating_pref_ranking"
    assert [m["role"] for m in req.chat_messages()] == ["system", "user"]
    assert req.chat_messages()[0]["content"] == req.system
    (user,) = req.messages
    assert "<prompt>\nWhat is jazz?\n</prompt>" in user["content"]
    assert user["content"].count("<response>") == 1 and "Jazz is music." in user["content"]
    for dimension in pref.dimensions:
        assert rubric_line(dimension) in req.system
    assert list(req.schema["properties"]) == ["rationale", *(d.key for d in pref.dimensions)]
    assert "rationale" in req.system


def test_text_dimensions_are_left_to_humans_and_a_template_of_only_text_cannot_be_judged() -> None:
    template_ = custom()
    assert [d.key for d in judgeable_dimensions(template_)] == ["score"]
    req = rating_request(template_, "q", "a")
    assert list(req.schema["properties"]) == ["rationale", "score"] and "notes" not in req.system
    text_only = AnnotationTemplate.model_validate(
        {"name": "t", "dimensions": [{"key": "notes", "title": "Notes", "type": "text"}]}
    )
    with pytest.raises(ValueError, match="no dimension a judge can fill"):
        rating_request(text_only, "q", "a")


def test_a_template_not_yet_resolved_is_refused() -> None:
    unresolved = load_annotation_template("pref_ranking_rewrites")
    with pytest.raises(ValueError, match="extends 'pref_ranking': resolve it first"):
        rating_request(unresolved, "q", "a")
    with pytest.raises(ValueError, match="resolve it first"):
        preference_request(unresolved, "q", "a", "b")


def test_rewrites_template_rates_like_its_base() -> None:
    base = rating_request(template("pref_ranking"), "q", "a")
    rewrites = rating_request(template("pref_ranking_rewrites"), "q", "a")
    assert rewrites.schema == base.schema and rewrites.system == base.system
    assert rewrites.schema_name == "rating_pref_ranking_rewrites"


def test_preference_request_uses_the_likert_scale_and_its_labels() -> None:
    req = preference_request(template("pref_ranking"), "What is jazz?", "First answer.", "Second answer.")
    assert req is not None and req.kind == "preference"
    assert req.schema["properties"]["likert_value"]["enum"] == [1, 2, 3, 4, 5, 6, 7]
    assert list(req.schema["properties"]) == ["rationale", "likert_value"]
    for line in ("- 1 = A much better", "- 2 = A better", "- 4 = About the same", "- 7 = B much better"):
        assert line in req.system
    content = req.messages[0]["content"]
    assert content.index("<response_a>\nFirst answer.") < content.index("<response_b>\nSecond answer.")


def test_preference_request_with_custom_labels_and_scale() -> None:
    template_ = custom(likert={"values": [1, 2, 3], "labels": ["A wins", "Tie", "B wins"]})
    req = preference_request(template_, "q", "a", "b")
    assert req is not None
    assert "- 1 = A wins\n- 2 = Tie\n- 3 = B wins" in req.system
    assert req.schema["properties"]["likert_value"]["enum"] == [1, 2, 3]


def test_schema_name_is_reduced_to_the_allowed_characters() -> None:
    template_ = AnnotationTemplate.model_validate(
        {"name": "my template/v2 " + "x" * 80, "dimensions": [{"key": "s", "title": "S", "values": [1, 2]}]}
    )
    name = rating_request(template_, "q", "a").schema_name
    assert re.fullmatch(SCHEMA_NAME_PATTERN, name) and name.startswith("rating_my_template_v2_")


# ---------------------------------------------------------------- parsing


@pytest.fixture
def sft_request() -> JudgeRequest:
    return rating_request(template("sft"), "q", "a")


GOOD = {"rationale": "Fine.", "needs_rewrite": False, "overall": 5}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(GOOD),
        f"  \n{json.dumps(GOOD)}\n\t",
        f"```json\n{json.dumps(GOOD)}\n```",
        f"\n```\n{json.dumps(GOOD, indent=2)}\n```\n",
        f"```json {json.dumps(GOOD)}```",
    ],
)
def test_whitespace_and_a_code_fence_are_tolerated(sft_request: JudgeRequest, text: str) -> None:
    assert parse_judgement(sft_request, text) == GOOD


@pytest.mark.parametrize(
    "text",
    [
        f"Here is my rating: {json.dumps(GOOD)}",
        f"{json.dumps(GOOD)} I hope this helps.",
        f"```python\n{json.dumps(GOOD)}\n```",
        f"```json\n{json.dumps(GOOD)}\n```\nDone.",
    ],
)
def test_nothing_else_around_the_json_is_tolerated(sft_request: JudgeRequest, text: str) -> None:
    assert isinstance(parse_judgement(sft_request, text), JudgeProblem)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"overall": "5"}, "overall", "'5' is not a valid integer value"),
        ({"overall": 5.0}, "overall", "5.0 is not a valid integer value"),
        ({"overall": True}, "overall", "True is not a valid integer value"),
        ({"overall": 8}, "overall", "8 is outside the allowed values [1, 2, 3, 4, 5, 6, 7]"),
        ({"overall": None}, "overall", "None is not a valid integer value"),
        ({"needs_rewrite": "false"}, "needs_rewrite", "'false' is not a valid boolean value"),
        ({"needs_rewrite": 0}, "needs_rewrite", "0 is not a valid boolean value"),
        ({"rationale": 3}, "rationale", "3 is not a valid text value"),
        ({"extra": 1}, "extra", "not a field of the schema"),
    ],
)
def test_values_are_never_coerced_or_guessed(
    sft_request: JudgeRequest, change: dict[str, Any], field: str, reason: str
) -> None:
    assert parse_judgement(sft_request, json.dumps({**GOOD, **change})) == JudgeProblem(field, reason)


def test_a_category_outside_its_values_names_the_field() -> None:
    req = rating_request(template("pref_ranking"), "q", "a")
    answer = {**valid_judgement(req), "verbosity": "Too long"}  # the label, not the value
    problem = parse_judgement(req, json.dumps(answer))
    assert isinstance(problem, JudgeProblem) and problem.field == "verbosity"
    assert str(problem).startswith("verbosity: 'Too long' is outside the allowed values")


def test_duplicate_keys_and_nan_are_not_json_we_accept(sft_request: JudgeRequest) -> None:
    duplicated = '{"rationale": "x", "needs_rewrite": false, "overall": 5, "overall": 6}'
    problem = parse_judgement(sft_request, duplicated)
    assert isinstance(problem, JudgeProblem) and "duplicate key(s) overall" in problem.reason
    problem = parse_judgement(sft_request, '{"rationale": "x", "needs_rewrite": false, "overall": NaN}')
    assert isinstance(problem, JudgeProblem) and problem.field is None


def test_an_already_decoded_tool_input_is_checked_the_same_way(sft_request: JudgeRequest) -> None:
    assert parse_judgement(sft_request, GOOD) == GOOD
    assert parse_judgement(sft_request, {**GOOD, "overall": 0}) == JudgeProblem(
        "overall", "0 is outside the allowed values [1, 2, 3, 4, 5, 6, 7]"
    )


# ---------------------------------------------------------------- wire pieces


def test_openai_response_format(sft_request: JudgeRequest) -> None:
    assert openai_response_format(sft_request) == {
        "type": "json_schema",
        "json_schema": {"name": "rating_sft", "schema": sft_request.schema, "strict": True},
    }


def test_anthropic_forced_tool(sft_request: JudgeRequest) -> None:
    tool, choice = anthropic_tool(sft_request)
    assert set(tool) == {"name", "description", "input_schema"}
    assert tool["name"] == "rating_sft" and tool["input_schema"] == sft_request.schema
    assert choice == {"type": "tool", "name": "rating_sft"}
    preference = preference_request(template("pref_ranking"), "q", "a", "b")
    assert preference is not None
    assert anthropic_tool(preference)[1] == {"type": "tool", "name": "preference_pref_ranking"}


# ---------------------------------------------------------------- combining both orders


SEVEN = template("pref_ranking")  # 1..7, middle 4
SIX = custom(likert={"values": [1, 2, 3, 4, 5, 6]})  # no middle value (between 3 and 4)
ZERO_TO_FOUR = custom(likert={"values": [0, 1, 2, 3, 4]})  # middle 2


@pytest.mark.parametrize(
    ("first", "swapped", "mirrored", "expected", "rule"),
    [
        (2, 6, 2, 2, "same"),  # A better both times
        (4, 4, 4, 4, "same"),
        (1, 6, 2, 2, "mean"),  # mean 1.5, rounded towards the middle: 2
        (1, 5, 3, 2, "mean"),  # mean 2
        (2, 4, 4, 3, "mean"),  # one on the middle: not a disagreement, mean 3
        (3, 4, 4, 4, "mean"),  # mean 3.5 → 4
        (6, 4, 4, 5, "mean"),
        (7, 2, 6, 6, "mean"),  # mean 6.5 → 6
        (2, 2, 6, 4, "middle"),  # A, then (mirrored) B: the order decided, so "about the same"
        (1, 1, 7, 4, "middle"),
        (5, 5, 3, 4, "middle"),
    ],
)
def test_combine_on_a_seven_point_scale(first: int, swapped: int, mirrored: int, expected: int, rule: str) -> None:
    combined = swap_combination(SEVEN, first, swapped)
    assert (combined.value, combined.rule, combined.swapped_mirrored) == (expected, rule, mirrored)
    assert combined.first == first
    assert combine_swapped(SEVEN, first, swapped) == expected
    assert mirrored == 1 + 7 - swapped


@pytest.mark.parametrize(
    ("first", "swapped", "expected", "rule"),
    [
        (2, 2, None, "none"),  # 2 (A) against mirrored 5 (B), and no middle value: no prediction
        (3, 3, None, "none"),  # 3 against 4: the two values nearest the middle still disagree
        (1, 5, 2, "mean"),  # mirrored 2, mean 1.5 → 2 (towards the middle 3.5)
        (6, 2, 5, "mean"),  # mirrored 5, mean 5.5 → 5 (towards the middle)
        (3, 4, 3, "same"),
    ],
)
def test_combine_on_an_even_scale(first: int, swapped: int, expected: int | None, rule: str) -> None:
    combined = swap_combination(SIX, first, swapped)
    assert (combined.value, combined.rule) == (expected, rule)
    assert combine_swapped(SIX, first, swapped) == expected


def test_combine_on_a_scale_not_starting_at_one() -> None:
    assert swap_combination(ZERO_TO_FOUR, 0, 3).swapped_mirrored == 1  # 0 + 4 - 3
    assert combine_swapped(ZERO_TO_FOUR, 0, 3) == 1  # mean 0.5 → 1
    assert combine_swapped(ZERO_TO_FOUR, 0, 0) == 2  # 0 against mirrored 4: the middle
    assert combine_swapped(ZERO_TO_FOUR, 3, 1) == 3


@pytest.mark.parametrize("scale", [SEVEN, SIX, ZERO_TO_FOUR], ids=["seven", "six", "zero_to_four"])
def test_combining_is_symmetric_and_stays_on_the_scale(scale: AnnotationTemplate) -> None:
    """The same two judgements with the roles of the orders exchanged give the mirrored result, and a
    result never leaves the range of the two values when they agree in direction."""
    values = scale.turn.likert.values
    lo, hi = values[0], values[-1]
    for first, swapped in itertools.product(values, repeat=2):
        combined = combine_swapped(scale, first, swapped)
        reverse = combine_swapped(scale, swapped, first)
        assert (combined is None) == (reverse is None)
        if combined is None or reverse is None:
            continue
        assert reverse == lo + hi - combined
        assert combined in values
        mirrored = lo + hi - swapped
        middle = (lo + hi) / 2
        if (first - middle) * (mirrored - middle) >= 0:
            assert min(first, mirrored) <= combined <= max(first, mirrored)
            assert abs(combined - middle) <= max(abs(first - middle), abs(mirrored - middle))


def test_combining_rejects_values_off_the_scale_and_templates_without_likert() -> None:
    with pytest.raises(ValueError, match="first value 8 is not on the Likert scale"):
        combine_swapped(SEVEN, 8, 4)
    with pytest.raises(ValueError, match="swapped value 0 is not on the Likert scale"):
        combine_swapped(SEVEN, 4, 0)
    with pytest.raises(ValueError, match="not on the Likert scale"):
        combine_swapped(SEVEN, True, 4)
    with pytest.raises(ValueError, match="no Likert preference slot"):
        combine_swapped(template("sft"), 4, 4)
