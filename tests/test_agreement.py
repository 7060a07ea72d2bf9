"""How often humans keep a judge's values (task_builder/agreement.py): kappas against hand-computed
examples, figures of small annotated files worked out by hand, the shown/blind split, bad input."""

from __future__ import annotations

import copy
import json
import random
from fractions import Fraction
from typing import Any

import pytest
from scripted_annotators import shell as scripted_shell

from prompts.reader import PromptRecord
from providers.config import ProviderConfig
from providers.result import CallResult
from providers.slots import answer_slots
from task_builder.agreement import (
    ROW_COLUMNS,
    AgreementReport,
    Figures,
    agreement,
    cohen_kappa,
    figures,
    quadratic_weighted_kappa,
)
from task_builder.assemble import BatchContext, build_task
from task_builder.layout import PlannedTask
from task_builder.template import resolve_template

JUDGE = "judge-gpt"
PAIR = ["claude", "gpt-4o"]


def make_shell(prompt_id: str, order: list[str] = PAIR) -> dict[str, Any]:
    """A real task shell (template pref_ranking) from ``build_task``, answers in ``order``."""
    return scripted_shell(prompt_id, order, layout="n_way", task_id=f"task_{prompt_id}")


def annotated(
    prompt_id: str,
    humans: dict[str, dict[str, Any]],
    judge: dict[str, dict[str, Any]],
    shown: bool | None = None,
    order: list[str] = PAIR,
) -> dict[str, Any]:
    """An annotated task: ``humans`` fills slots (by source id, or ``turn``, then key), ``judge`` is the
    judge's predictions in the same shape; ``shown`` is ``metadata.predictions_shown`` (None: absent)."""
    task = make_shell(prompt_id, order)
    task["status"] = "completed"
    last = task["threads"][0]["turns"][-1]
    for slot in last["annotations"]:
        slot["value"] = humans.get("turn", {}).get(slot["key"], slot["value"])
    for message in last["messages"]:
        for slot in message["annotations"]:
            slot["value"] = humans.get(message.get("source_id"), {}).get(slot["key"], slot["value"])
    task["metadata"]["annotation"] = {"annotator": "ann1", "platform": "test"}
    task["metadata"]["predictions"] = {JUDGE: copy.deepcopy(judge)}
    if shown is not None:
        task["metadata"]["predictions_shown"] = shown
    return task


def one(report: AgreementReport, dimension: str, group: str = "all", judge: str = JUDGE) -> Figures:
    entry = report.find(judge, dimension)
    assert entry is not None, f"no entry for {judge}/{dimension}"
    return entry.groups[group]


# ---------------------------------------------------------------- kappas against textbook examples


def matrix_weighted_kappa(pairs: list[tuple[int, int]], scale: list[int]) -> float:
    """The textbook form, written independently: observed and chance matrices over the full scale,
    weights (i - j)² / (k - 1)²."""
    k, n = len(scale), len(pairs)
    observed = [[Fraction(0)] * k for _ in range(k)]
    for h, j in pairs:
        observed[scale.index(h)][scale.index(j)] += Fraction(1, n)
    rows = [sum(observed[i]) for i in range(k)]
    cols = [sum(observed[i][j] for i in range(k)) for j in range(k)]
    weight = [[Fraction((i - j) ** 2, (k - 1) ** 2) for j in range(k)] for i in range(k)]
    num = sum(weight[i][j] * observed[i][j] for i in range(k) for j in range(k))
    den = sum(weight[i][j] * rows[i] * cols[j] for i in range(k) for j in range(k))
    return float(1 - num / den)


def test_nominal_kappa_textbook_example() -> None:
    # 50 items, two raters: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no.
    # p_o = 35/50 = 0.7; p_e = (25/50)(30/50) + (25/50)(20/50) = 0.3 + 0.2 = 0.5; kappa = 0.2 / 0.5 = 0.4
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4, abs=1e-12)


def test_nominal_kappa_small_cases() -> None:
    assert cohen_kappa([("a", "a"), ("b", "b")]) == 1.0
    # p_o = 0; p_e = (1/2)(1/2) + (1/2)(1/2) = 1/2; kappa = -1/2 / 1/2 = -1
    assert cohen_kappa([("a", "b"), ("b", "a")]) == -1.0
    # human always "a", judge always "b": p_o = 0, p_e = 0 -> kappa 0 (defined: chance agreement is impossible)
    assert cohen_kappa([("a", "b"), ("a", "b")]) == 0.0
    assert cohen_kappa([(True, True), (False, True)]) == 0.0  # p_o = 1/2, p_e = (1/2)(1) = 1/2


def test_weighted_kappa_hand_computed() -> None:
    # human 1 2 3 4, judge 1 2 4 3: D_o = (0 + 0 + 1 + 1) / 4 = 0.5.
    # D_e over all 16 combinations of {1,2,3,4} x {1,2,3,4}: 2 * (1+4+9+1+4+1) / 16 = 40/16 = 2.5.
    # kappa = 1 - 0.5 / 2.5 = 0.8
    pairs = [(1, 1), (2, 2), (3, 4), (4, 3)]
    assert quadratic_weighted_kappa(pairs) == pytest.approx(0.8, abs=1e-12)
    assert matrix_weighted_kappa(pairs, [1, 2, 3, 4]) == pytest.approx(0.8, abs=1e-12)
    # complete reversal on 1..3: D_o = (4 + 0 + 4)/3 = 8/3; D_e = 14/3 + 14/3 - 2*2*2 = 4/3; kappa = 1 - 2 = -1
    assert quadratic_weighted_kappa([(1, 3), (2, 2), (3, 1)]) == -1.0
    assert quadratic_weighted_kappa([(5, 5), (2, 2)]) == 1.0
    # constant but different: D_o = 4, D_e = 9 + 25 - 2*3*5 = 4 -> 0
    assert quadratic_weighted_kappa([(3, 5), (3, 5)]) == 0.0


def test_weighted_kappa_equals_the_matrix_form_on_random_data() -> None:
    rng = random.Random(7)
    scale = [1, 2, 3, 4, 5, 6, 7]
    for _ in range(50):
        pairs = [(rng.choice(scale), rng.choice(scale)) for _ in range(rng.randint(2, 30))]
        ours = quadratic_weighted_kappa(pairs)
        if ours is None:
            continue
        assert ours == pytest.approx(matrix_weighted_kappa(pairs, scale), abs=1e-12)


def test_an_unused_scale_value_does_not_change_the_weighted_kappa() -> None:
    pairs = [(1, 1), (2, 5), (5, 5), (5, 2)]
    assert quadratic_weighted_kappa(pairs) == pytest.approx(matrix_weighted_kappa(pairs, [1, 2, 3, 4, 5]))


@pytest.mark.parametrize("pairs", [[], [(4, 4)], [(4, 4), (4, 4), (4, 4)]])
def test_undefined_kappa_is_none(pairs: list[tuple[int, int]]) -> None:
    assert quadratic_weighted_kappa(pairs) is None
    assert cohen_kappa(pairs) is None


def test_figures_of_no_pairs_are_empty_not_nan() -> None:
    assert figures("ordinal", []) == Figures(0, None, None, None)
    assert figures("nominal", []) == Figures(0, None, None, None)


# ---------------------------------------------------------------- a small annotated file, by hand

# Three tasks of two answers (claude = Response A, gpt-4o = Response B): six answers.
# overall (1..7), human/judge: (7,7) (6,7) | (5,5) (3,5) | (2,2) (4,3)
# verbosity, human/judge: (just_right, just_right) (too_long, just_right) | (just_right, just_right)
#   (too_short, too_short) | (just_right, too_long) (just_right, just_right)
# likert_value human/judge: 2/2 | 6/5 | 4/2; selected_model_id: claude/claude | gpt-4o/gpt-4o | claude/gpt-4o
OVERALL = [((7, 7), (6, 7)), ((5, 5), (3, 5)), ((2, 2), (4, 3))]
VERBOSITY = [
    (("just_right", "just_right"), ("too_long", "just_right")),
    (("just_right", "just_right"), ("too_short", "too_short")),
    (("just_right", "too_long"), ("just_right", "just_right")),
]
LIKERT = [(2, 2), (6, 5), (4, 2)]
SELECTED = [("claude", "claude"), ("gpt-4o", "gpt-4o"), ("claude", "gpt-4o")]


def hand_file() -> list[dict[str, Any]]:
    tasks = []
    for i in range(3):
        humans: dict[str, dict[str, Any]] = {
            "turn": {"likert_value": LIKERT[i][0], "selected_model_id": SELECTED[i][0]}
        }
        judge: dict[str, dict[str, Any]] = {"turn": {"likert_value": LIKERT[i][1], "selected_model_id": SELECTED[i][1]}}
        for a, source in enumerate(PAIR):
            humans[source] = {"overall": OVERALL[i][a][0], "verbosity": VERBOSITY[i][a][0]}
            judge[source] = {
                "overall": OVERALL[i][a][1],
                "verbosity": VERBOSITY[i][a][1],
                "rationale": "Short reason.",
            }
        tasks.append(annotated(f"p{i}", humans, judge))
    return tasks


def test_hand_computed_ordinal_dimension() -> None:
    report = agreement(hand_file())
    overall = one(report, "overall")
    # kept: 3 of 6 equal = 0.5; mean |h - j| = (0+1+0+2+0+1)/6 = 4/6
    # D_o = (0+1+0+4+0+1)/6 = 1. human 7,6,5,3,2,4: mean 4.5, mean square 139/6;
    # judge 7,7,5,5,2,3: mean 29/6, mean square 161/6. D_e = 139/6 + 161/6 - 2 * 4.5 * 29/6 = 39/6 = 6.5
    # kappa = 1 - 1/6.5 = 11/13
    assert (overall.n, overall.kept) == (6, 0.5)
    assert overall.mean_abs_diff == pytest.approx(4 / 6)
    assert overall.kappa == pytest.approx(11 / 13)
    entry = report.find(JUDGE, "overall")
    assert entry is not None and (entry.level, entry.scale, entry.kappa_kind) == (
        "answer",
        "ordinal",
        "quadratic_weighted",
    )


def test_hand_computed_nominal_dimension() -> None:
    verbosity = one(agreement(hand_file()), "verbosity")
    # kept 4/6. human: just_right 4, too_long 1, too_short 1; judge: just_right 4, too_short 1, too_long 1
    # p_e = (4*4 + 1*1 + 1*1)/36 = 1/2; kappa = (2/3 - 1/2) / (1/2) = 1/3
    assert (verbosity.n, verbosity.mean_abs_diff) == (6, None)
    assert verbosity.kept == pytest.approx(2 / 3)
    assert verbosity.kappa == pytest.approx(1 / 3)


def test_hand_computed_preference() -> None:
    report = agreement(hand_file())
    likert = one(report, "likert_value")
    # kept 1/3; mean |h - j| = (0+1+2)/3 = 1; D_o = (0+1+4)/3 = 5/3
    # human 2,6,4: mean 4, mean square 56/3; judge 2,5,2: mean 3, mean square 11
    # D_e = 56/3 + 11 - 2*4*3 = 17/3; kappa = 1 - 5/17 = 12/17
    assert (likert.n, likert.mean_abs_diff) == (3, 1.0)
    assert likert.kept == pytest.approx(1 / 3)
    assert likert.kappa == pytest.approx(12 / 17)
    selected = one(report, "selected_model_id")
    # kept 2/3; human claude 2, gpt-4o 1; judge claude 1, gpt-4o 2: p_e = (2*1 + 1*2)/9 = 4/9
    # kappa = (2/3 - 4/9) / (5/9) = 2/5
    assert selected.kept == pytest.approx(2 / 3)
    assert selected.kappa == pytest.approx(0.4)
    assert [d.dimension for d in report.dimensions] == ["overall", "verbosity", "likert_value", "selected_model_id"]
    assert {d.dimension: d.level for d in report.dimensions}["likert_value"] == "turn"


def test_report_counts_and_unknown_shown_marker() -> None:
    report = agreement(hand_file())
    assert (report.tasks_read, report.tasks_with_predictions, report.tasks_without_predictions) == (3, 3, 0)
    # no task says whether predictions were shown: counted as shown, and said so
    assert report.tasks_by_group == {"shown": 3, "blind": 0} and report.tasks_shown_unknown == 3
    entry = report.find(JUDGE, "overall")
    assert entry is not None
    assert list(entry.groups) == ["all"] and entry.honest is None and entry.anchoring is None
    assert report.invalid_reasons == {}


def test_slots_the_human_or_the_judge_left_empty_give_no_pair() -> None:
    # the shells have seven rating slots per answer; only overall and verbosity were filled and predicted
    report = agreement(hand_file())
    assert report.find(JUDGE, "truthfulness") is None
    task = annotated("x", {"claude": {"overall": 5}}, {"claude": {"overall": None}, "gpt-4o": {"overall": 4}})
    figs = one(agreement([task]), "overall")
    assert (figs.n, figs.invalid_human, figs.invalid_judge) == (0, 0, 0)


# ---------------------------------------------------------------- shown vs blind

# overall pairs (human, judge); two tasks per group, two answers each
SHOWN_PAIRS = [((7, 7), (6, 6)), ((5, 5), (4, 3))]
BLIND_PAIRS = [((7, 5), (6, 6)), ((3, 4), (2, 2))]


def split_file(blind_only: bool = False) -> list[dict[str, Any]]:
    tasks = []
    groups = [(False, BLIND_PAIRS)] if blind_only else [(True, SHOWN_PAIRS), (False, BLIND_PAIRS)]
    for shown, pairs in groups:
        for i, task_pairs in enumerate(pairs):
            humans = {s: {"overall": task_pairs[a][0]} for a, s in enumerate(PAIR)}
            judge = {s: {"overall": task_pairs[a][1]} for a, s in enumerate(PAIR)}
            tasks.append(annotated(f"{shown}{i}", humans, judge, shown=shown))
    return tasks


def test_shown_and_blind_split_with_anchoring() -> None:
    report = agreement(split_file())
    assert report.tasks_by_group == {"shown": 2, "blind": 2} and report.tasks_shown_unknown == 0
    entry = report.find(JUDGE, "overall")
    assert entry is not None and list(entry.groups) == ["all", "shown", "blind"]
    shown, blind, everything = entry.groups["shown"], entry.groups["blind"], entry.groups["all"]
    # shown: human 7 6 5 4, judge 7 6 5 3: kept 3/4, MAE 1/4, D_o 1/4;
    #   D_e = 126/4 + 119/4 - 2 * 5.5 * 5.25 = 3.5; kappa = 1 - 0.25/3.5 = 13/14
    assert (shown.n, shown.kept, shown.mean_abs_diff) == (4, 0.75, 0.25)
    assert shown.kappa == pytest.approx(13 / 14)
    # blind: human 7 6 3 2, judge 5 6 4 2: kept 2/4, MAE 3/4, D_o 5/4;
    #   D_e = 98/4 + 81/4 - 2 * 4.5 * 4.25 = 6.5; kappa = 1 - 1.25/6.5 = 21/26
    assert (blind.n, blind.kept, blind.mean_abs_diff) == (4, 0.5, 0.75)
    assert blind.kappa == pytest.approx(21 / 26)
    assert (everything.n, everything.kept) == (8, 5 / 8)
    assert entry.honest == blind
    assert entry.anchoring is not None
    assert entry.anchoring["kept"] == pytest.approx(0.25)
    assert entry.anchoring["mean_abs_diff"] == pytest.approx(-0.5)
    assert entry.anchoring["kappa"] == pytest.approx(13 / 14 - 21 / 26)  # = 11/91


def test_only_blind_tasks_the_honest_measure_is_all_of_them() -> None:
    report = agreement(split_file(blind_only=True))
    assert report.tasks_by_group == {"shown": 0, "blind": 2}
    entry = report.find(JUDGE, "overall")
    assert entry is not None and list(entry.groups) == ["all"]
    assert entry.honest == entry.groups["all"] and entry.anchoring is None
    assert entry.honest.kappa == pytest.approx(21 / 26)


def test_an_undefined_kappa_in_one_group_gives_no_anchoring_kappa() -> None:
    # every value 5 on both sides in the shown task: kappa undefined there
    shown = annotated("s", {s: {"overall": 5} for s in PAIR}, {s: {"overall": 5} for s in PAIR}, shown=True)
    blind = annotated(
        "b", {"claude": {"overall": 5}, "gpt-4o": {"overall": 2}}, {s: {"overall": 5} for s in PAIR}, shown=False
    )
    entry = agreement([shown, blind]).find(JUDGE, "overall")
    assert entry is not None
    assert entry.groups["shown"].kappa is None and entry.groups["shown"].kept == 1.0
    # blind: human 5 2, judge 5 5: D_o = 9/2, D_e = 29/2 + 25 - 2 * 3.5 * 5 = 9/2 -> kappa 0
    assert entry.groups["blind"].kappa == 0.0
    assert entry.anchoring == {"kept": 0.5, "mean_abs_diff": -1.5, "kappa": None}


# ---------------------------------------------------------------- bad input


def test_tasks_without_predictions_and_malformed_tasks_are_counted_and_skipped() -> None:
    plain = make_shell("plain")
    empty = make_shell("empty")
    empty["metadata"]["predictions"] = {}
    broken = {"metadata": {"predictions": {JUDGE: {}}}, "threads": "nope"}
    report = agreement([plain, empty, broken, "not a task", *hand_file()])
    assert report.tasks_read == 7
    assert (report.tasks_without_predictions, report.tasks_malformed, report.tasks_with_predictions) == (2, 2, 3)
    assert one(report, "overall").n == 6


def test_values_outside_the_scale_are_invalid_and_left_out() -> None:
    task = annotated(
        "bad",
        {"claude": {"overall": 6, "verbosity": "just_right"}, "gpt-4o": {"overall": 3}, "turn": {"likert_value": 4}},
        {
            "claude": {"overall": 9, "verbosity": "medium"},  # both off the scale
            "gpt-4o": {"overall": "3"},  # a string is not an integer
            "turn": {"likert_value": 4, "selected_model_id": "llama"},  # names no answer
        },
    )
    good = annotated("good", {"claude": {"overall": 6}}, {"claude": {"overall": 6}})
    report = agreement([task, good])
    overall = one(report, "overall")
    # bad task: claude's judge 9 and gpt-4o's judge "3" are invalid and left out; the good task's pair counts
    assert (overall.n, overall.kept, overall.invalid_judge, overall.invalid_human) == (1, 1.0, 2, 0)
    assert one(report, "verbosity").invalid_judge == 1 and one(report, "verbosity").n == 0
    assert one(report, "selected_model_id").invalid_judge == 1
    assert one(report, "likert_value").n == 1


def test_an_invalid_human_value_is_counted_and_left_out() -> None:
    task = annotated("h", {"claude": {"overall": 6}, "gpt-4o": {"overall": 5}}, {s: {"overall": 6} for s in PAIR})
    for slot in task["threads"][0]["turns"][-1]["messages"][1]["annotations"]:
        if slot["key"] == "overall":
            slot["value"] = 8
    overall = one(agreement([task]), "overall")
    assert (overall.n, overall.invalid_human, overall.invalid_judge) == (1, 1, 0)


def test_predictions_that_fit_no_slot_are_counted_by_reason() -> None:
    judge: dict[str, Any] = {
        "claude": {"overall": 5, "sparkle": 3},  # no such slot
        "llama": {"overall": 5},  # no such answer
        "gpt-4o": "five",  # not an object
        # pref_ranking asks for no ranking (no slot: counted); justification is free text (not compared)
        "turn": {"ranking": ["claude", "gpt-4o"], "justification": "x"},
    }
    task = annotated("r", {"claude": {"overall": 5}, "turn": {"justification": "y"}}, judge)
    task["metadata"]["predictions"]["other-judge"] = "oops"
    report = agreement([task])
    assert report.invalid_reasons == {
        "prediction for a key the answer has no slot for": 1,
        "prediction for a key the turn has no slot for": 1,
        "prediction for an answer the task does not have": 1,
        "answer predictions are not an object": 1,
        "predictions of a judge are not an object": 1,
    }
    assert one(report, "overall").n == 1
    assert report.find(JUDGE, "ranking") is None and report.find(JUDGE, "justification") is None


def test_several_judges_are_reported_apart() -> None:
    task = annotated("j", {"claude": {"overall": 5}}, {"claude": {"overall": 5}})
    task["metadata"]["predictions"]["another"] = {"claude": {"overall": 2}}
    report = agreement([task])
    assert [d.judge for d in report.dimensions] == ["another", JUDGE]
    assert one(report, "overall", judge="another").kept == 0.0
    assert one(report, "overall").kept == 1.0


def test_a_boolean_dimension_uses_nominal_kappa() -> None:
    # the sft template's needs_rewrite: booleans compared as categories
    ctx_template = resolve_template("sft")
    providers = [ProviderConfig(source_id="claude", kind="openai", model="m")]
    slots = {slot.answer_id: slot for slot in answer_slots(providers, 1)}
    tasks = []
    for i, (human, judged) in enumerate([(True, True), (False, True), (False, False), (True, True)]):
        shell = build_task(
            BatchContext(
                "p", "b", "r", "h", "2026-01-01T00:00:00Z", "single", ctx_template, {"name": "t", "version": "0"}
            ),
            PromptRecord(id=f"s{i}", messages=[{"role": "user", "content": "q"}]),
            PlannedTask(task_id=f"task_s{i}", variant="", order=["claude"]),
            slots,
            {"claude": CallResult(ok=True, text="a", model="m", finish_reason="stop")},
            {},
        ).to_json_dict()
        message = shell["threads"][0]["turns"][-1]["messages"][-1]
        next(s for s in message["annotations"] if s["key"] == "needs_rewrite")["value"] = human
        shell["metadata"]["predictions"] = {JUDGE: {"claude": {"needs_rewrite": judged}}}
        tasks.append(shell)
    figs = one(agreement(tasks), "needs_rewrite")
    # kept 3/4; human True 2, False 2; judge True 3, False 1: p_e = (2*3 + 2*1)/16 = 1/2
    # kappa = (3/4 - 1/2) / (1/2) = 1/2
    assert (figs.n, figs.kept, figs.mean_abs_diff) == (4, 0.75, None)
    assert figs.kappa == pytest.approx(0.5)


# ---------------------------------------------------------------- output


def test_to_dict_is_plain_json_without_nan() -> None:
    tasks = [*split_file(), annotated("u", {s: {"overall": 4} for s in PAIR}, {s: {"overall": 4} for s in PAIR})]
    data = agreement(tasks).to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text) == data
    assert data["dimensions"][0]["kappa_kind"] == "quadratic_weighted"
    assert set(data["dimensions"][0]["groups"]) == {"all", "shown", "blind"}


def test_to_rows_one_per_judge_dimension_and_group() -> None:
    rows = agreement(split_file()).to_rows()
    assert [tuple(r) for r in rows] == [ROW_COLUMNS] * 3
    assert [(r["dimension"], r["group"], r["n"], r["kept"]) for r in rows] == [
        ("overall", "all", 8, 0.625),
        ("overall", "shown", 4, 0.75),
        ("overall", "blind", 4, 0.5),
    ]
    assert rows[1]["kappa"] == 0.929 and rows[2]["kappa"] == 0.808  # 13/14, 21/26 to three digits


def test_order_of_tasks_does_not_change_the_figures() -> None:
    tasks = hand_file() + split_file()
    shuffled = tasks[:]
    random.Random(3).shuffle(shuffled)

    def figures_by_dimension(report: AgreementReport) -> dict[str, Any]:
        return {d["dimension"]: d for d in report.to_dict()["dimensions"]}

    assert figures_by_dimension(agreement(shuffled)) == figures_by_dimension(agreement(tasks))
