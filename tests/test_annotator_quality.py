"""Agreement between annotators (task_builder/reliability.py, rlhf quality): Krippendorff's alpha against
the worked examples of Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the bootstrap
interval, each annotator against the others, gold accuracy, flags, and the files the command writes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import flow_run_artifacts
from scripted_annotators import Annotator, annotate_all, pairwise_batch, shell
from typer.testing import CliRunner

from flows.cli.app import app
from task_builder.reliability import Thresholds, alpha, bootstrap_alpha, quality, resampled_alphas

STRENGTHS = {"m1": 1.0, "m2": 0.0, "m3": -1.0}


def counts(coders: list[list[Any]], domain: list[Any]) -> np.ndarray:
    """Reliability data (one row per observer, None: not coded) as a units × values count matrix."""
    matrix = np.zeros((len(coders[0]), len(domain)))
    for row in coders:
        for unit, value in enumerate(row):
            if value is not None:
                matrix[unit, domain.index(value)] += 1
    return matrix


# Krippendorff (2011), section A: binary data, two observers, no missing data. Published alpha = 0.095.
EXAMPLE_A = [[0, 1, 0, 0, 0, 0, 0, 0, 1, 0], [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]]
# Section B: nominal data, two observers (Ben, Gerry), twelve units. Published alpha = 0.692.
EXAMPLE_B = [
    ["a", "a", "b", "b", "d", "c", "c", "c", "e", "d", "d", "a"],
    ["b", "a", "b", "b", "b", "c", "c", "c", "e", "d", "d", "d"],
]
# Section C: four observers, twelve units, missing data. Published nominal 0.743, interval 0.849.
N = None
EXAMPLE_C = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
    [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
]


def test_alpha_of_krippendorffs_binary_example() -> None:
    assert alpha(counts(EXAMPLE_A, [0, 1]), [0, 1], "nominal") == pytest.approx(0.095, abs=5e-4)


def test_alpha_of_krippendorffs_nominal_two_observer_example() -> None:
    domain = list("abcde")
    assert alpha(counts(EXAMPLE_B, domain), domain, "nominal") == pytest.approx(0.692, abs=5e-4)


def test_alpha_of_krippendorffs_missing_data_example_nominal_and_interval() -> None:
    domain = [1, 2, 3, 4, 5]
    data = counts(EXAMPLE_C, domain)
    assert alpha(data, domain, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert alpha(data, domain, "interval") == pytest.approx(0.849, abs=5e-4)


def test_a_value_nobody_used_changes_no_nominal_alpha_and_the_domain_order_none() -> None:
    domain = list("abcde")
    wider = ["z", *reversed(domain), "y"]
    assert alpha(counts(EXAMPLE_B, wider), wider, "nominal") == pytest.approx(
        alpha(counts(EXAMPLE_B, domain), domain, "nominal")
    )


@pytest.mark.parametrize(
    "coders",
    [
        [[1, 1, 1], [1, 1, 1]],  # one value throughout: no disagreement expected
        [[1, None, None], [None, 2, None]],  # nothing pairable
    ],
)
def test_undefined_alpha_is_none(coders: list[list[Any]]) -> None:
    assert alpha(counts(coders, [1, 2]), [1, 2], "interval") is None
    assert bootstrap_alpha(counts(coders, [1, 2]), [1, 2], "interval", 50) is None


def test_bootstrap_interval_is_seeded_and_surrounds_the_estimate() -> None:
    domain = [1, 2, 3, 4, 5]
    data = counts(EXAMPLE_C, domain)
    first = bootstrap_alpha(data, domain, "interval", 400, seed=3)
    assert first == bootstrap_alpha(data, domain, "interval", 400, seed=3)
    assert first is not None and first[0] < 0.849 < first[1] <= 1.0
    perfect = counts([[1, 2, 3, 4], [1, 2, 3, 4]], domain)
    assert bootstrap_alpha(perfect, domain, "interval", 100) == (1.0, 1.0)


@pytest.mark.parametrize("scale", ["nominal", "interval"])
def test_all_draws_at_once_equal_the_package_draw_by_draw(scale: str) -> None:
    """The bootstrap computes every draw's alpha in one pass; each must be the krippendorff package's."""
    domain = [1, 2, 3, 4, 5]
    data = counts(EXAMPLE_C, domain)
    pairable = data[data.sum(axis=1) >= 2]
    picks = np.random.default_rng(5).integers(0, len(pairable), size=(40, len(pairable)))
    fast = resampled_alphas(data, domain, scale, picks)
    for draw, value in zip(picks, fast):
        expected = alpha(pairable[draw], domain, scale)
        assert (np.isnan(value) and expected is None) or value == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- reports from annotated tasks


def scripted(per_pair: int = 20, gold: int = 0, seed: int = 0) -> list[dict[str, Any]]:
    """Two careful annotators and a random one on every pairwise task of three models; ``gold`` extra
    gold tasks per pair whose known preference is the truth."""
    people = [Annotator("alice", seed=seed), Annotator("bob", seed=seed), Annotator("rand", kind="random", seed=seed)]
    copies = annotate_all(pairwise_batch(list(STRENGTHS), per_pair, STRENGTHS, seed=seed), people)
    for task, truth in pairwise_batch(list(STRENGTHS), gold, STRENGTHS, seed=seed + 100):
        task["task_id"] += "_gold"
        task["metadata"]["gold"] = {"turn": {"likert_value": 2 if truth.winner == 0 else 6}}
        copies += [who.annotate(task, truth) for who in people]
    return copies


def annotator(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in report["annotators"] if a["annotator"] == name)


def dimension(report: dict[str, Any], key: str) -> dict[str, Any]:
    return next(d for d in report["dimensions"] if d["dimension"] == key)


def test_the_random_annotator_is_flagged_and_the_careful_ones_are_not() -> None:
    report = quality(scripted(), draws=200)
    assert report["flagged"] == ["rand"]
    assert annotator(report, "rand")["alpha_with_others"] < 0.1
    assert annotator(report, "alice")["alpha_with_others"] > 0.25
    assert annotator(report, "rand")["median_lead_time_s"] < 5 < annotator(report, "bob")["median_lead_time_s"]
    pairs = {(p["a"], p["b"]): p["agreement"] for p in report["pairwise"]}
    assert pairs[("alice", "bob")] > pairs[("alice", "rand")]
    likert = dimension(report, "likert_value")
    assert likert["scale"] == "interval" and likert["units"] == 60 and likert["values"] == 180
    assert dimension(report, "selected_model_id")["scale"] == "nominal"
    assert likert["ci"][0] <= likert["alpha"] <= likert["ci"][1]


def test_alpha_rises_without_the_random_annotator() -> None:
    everyone = quality(scripted(), draws=50)
    careful = quality([c for c in scripted() if c["metadata"]["annotation"]["annotator"] != "rand"], draws=50)
    assert dimension(careful, "likert_value")["alpha"] > dimension(everyone, "likert_value")["alpha"] + 0.2


def test_with_two_annotators_each_ones_alpha_with_the_other_is_the_alpha() -> None:
    """D_o of one annotator against the only other one is the data's D_o: the figures must coincide."""
    two = [c for c in scripted(per_pair=8) if c["metadata"]["annotation"]["annotator"] != "bob"]
    report = quality(two, draws=10)
    for key in ("likert_value", "overall", "selected_model_id"):
        expected = dimension(report, key)["alpha"]
        for name in ("alice", "rand"):
            assert annotator(report, name)["by_dimension"][key]["alpha_with_others"] == pytest.approx(
                expected, abs=2e-4
            )


def test_hand_computed_pairwise_agreement_and_alpha() -> None:
    """Three tasks, two annotators, Likert 1..7: values (1, 1), (7, 6), (4, 1)."""
    copies = []
    for n, (x, y) in enumerate([(1, 1), (7, 6), (4, 1)]):
        task = shell(f"h{n}", ["m1", "m2"])
        for name, value in (("x", x), ("y", y)):
            done = json.loads(json.dumps(task))
            done["status"] = "completed"
            for slot in done["threads"][0]["turns"][-1]["annotations"]:
                if slot["key"] == "likert_value":
                    slot["value"] = value
            done["metadata"]["annotation"] = {"annotator": name, "lead_time_s": 10.0 * (n + 1)}
            copies.append(done)
    report = quality(copies, draws=0)
    likert = dimension(report, "likert_value")
    # pairable values 1,1,7,6,4,1 (n = 6): D_o = 2·(0 + 1 + 9) / 6 = 10/3;
    # D_e = Σ_{c≠k} n_c n_k (c-k)² / (n(n-1)) = 2·(3·1·36 + 3·1·25 + 3·1·9 + 1·1·1 + 1·1·9 + 1·1·4) / 30 = 448/30
    assert likert["alpha"] == pytest.approx(1 - (10 / 3) / (448 / 30), abs=1e-4)
    assert likert["agreement"] == pytest.approx(1 / 3, abs=1e-4) and likert["ci"] is None
    assert report["pairwise"] == [{"a": "x", "b": "y", "pairs": 3, "agreement": pytest.approx(1 / 3, abs=1e-4)}]
    assert annotator(report, "x")["median_lead_time_s"] == 20.0 and report["median_lead_time_s"] == 20.0
    assert report["flagged"] == []  # 3 values compared: fewer than min_pairs, nobody is judged


def test_gold_accuracy_scores_the_random_annotator_low_and_gold_stays_out_of_alpha() -> None:
    report = quality(scripted(per_pair=10, gold=10), Thresholds(min_alpha=-1.0), draws=20)
    assert report["gold_tasks"] == 30 and report["tasks"] == 30
    assert dimension(report, "likert_value")["units"] == 30
    assert annotator(report, "alice")["gold"]["n"] == 30 and annotator(report, "alice")["gold"]["accuracy"] >= 0.75
    assert annotator(report, "rand")["gold"]["accuracy"] < 0.6
    assert annotator(report, "rand")["flags"] == [
        f"gold accuracy {annotator(report, 'rand')['gold']['accuracy']:.2f} < 0.6"
    ]


def test_a_fast_annotator_is_flagged_when_a_minimum_time_is_set() -> None:
    report = quality(scripted(per_pair=5), Thresholds(min_alpha=-1.0, min_seconds=10), draws=10)
    assert report["flagged"] == ["rand"] and "median time" in annotator(report, "rand")["flags"][0]


def test_tasks_not_completed_or_malformed_are_skipped_and_counted() -> None:
    copies = scripted(per_pair=2)
    pending = json.loads(json.dumps(copies[0]))
    pending["status"] = "pending"
    report = quality([*copies, pending, {"task_id": "x", "status": "completed"}, [1]], draws=10)
    assert report["skipped"] == {"not an annotated task": 1, "not completed": 1, "not shaped like a task shell": 1}
    assert report["copies"] == len(copies)


def test_quality_command_writes_json_and_png_and_names_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "annotated.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in scripted(per_pair=10)), encoding="utf-8")
    result = CliRunner().invoke(app, ["quality", str(path), "--draws", "50"])
    assert result.exit_code == 0, result.output
    assert "rand" in result.output and "alpha with the others" in result.output
    data = json.loads((tmp_path / "annotated.quality.json").read_text())
    assert data["flagged"] == ["rand"] and data["draws"] == 50
    png = (tmp_path / "annotated.quality.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    as_json = CliRunner().invoke(app, ["quality", str(path), "--draws", "50", "--json"])
    assert json.loads(as_json.stdout)["dimensions"] == data["dimensions"]

    path.write_text(path.read_text() + "{not json\n", encoding="utf-8")
    bad = CliRunner().invoke(app, ["quality", str(path)])
    assert bad.exit_code == 2 and f"{path}:91" in bad.output


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_quality_flow_publishes_a_markdown_artifact(tmp_path: Path) -> None:
    from flows.reporting.quality import quality_report

    path = tmp_path / "annotated.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in scripted(per_pair=5)), encoding="utf-8")
    state = asyncio.run(quality_report(str(path), draws=20, return_state=True))
    data = state.result()

    (artifact,) = flow_run_artifacts(state.state_details.flow_run_id)
    assert artifact.type == "markdown" and artifact.key == "annotator-quality"
    assert "| rand |" in str(artifact.data) and data["flagged"] == ["rand"]
