"""From labels to decisions, end to end against the simulator and a real Label Studio on 127.0.0.1.

Three models answer pairwise tasks; ``rlhf deliver --annotators-per-task 3 --gold gold.jsonl --gold-rate
0.1`` sets the project's overlap and mixes in gold tasks (an expert's annotated tasks);
three annotators with their own Label Studio accounts work through the project's queue (``/next``, as the
labeling UI does): two careful ones who see the same hidden truth per task (scripted win rates: m-strong
beats m-mid beats m-weak) and one who clicks at random, fast. Then harvest keeps every annotation with its
annotator and lead time, ``rlhf quality`` flags the random annotator, the consensus export leaves them
out, and ``rlhf leaderboard`` ranks the models in the order of their scripted win rates.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import provider_entry, write_config, write_prompts
from pydantic import SecretStr
from typer.testing import CliRunner

from flows.cli.app import app
from flows.delivery.deliver import deliver_label_studio, harvest_label_studio
from flows.delivery.reports import delivery_summary
from flows.generation.generate import generate_tasks
from platforms.label_studio.client import LabelStudioClient
from platforms.label_studio.local_server import LabelStudioServer
from simulator import RunningSimulator
from task_builder.ids import stable_id

pytestmark = pytest.mark.slow

STRENGTHS = {"m-strong": 1.5, "m-mid": 0.0, "m-weak": -1.5}  # the models, and their answers' latent ratings
# The scripted win rates: in each pair the first model is truly better in this share of its tasks.
WIN_RATES = {("m-mid", "m-strong"): 0.8, ("m-mid", "m-weak"): 0.8, ("m-strong", "m-weak"): 0.9}
STRONGER = {("m-mid", "m-strong"): "m-strong", ("m-mid", "m-weak"): "m-mid", ("m-strong", "m-weak"): "m-strong"}
KEYS = ("instruction_following", "truthfulness", "factuality", "tone", "harmlessness", "overall")


def sign_up(url: str, admin: str, email: str) -> str:
    """A new Label Studio user through the organisation's invite link (as a person signs up); their token."""
    invite = httpx.get(f"{url}/api/invite", headers={"Authorization": f"Token {admin}"}, timeout=30).json()["token"]
    with httpx.Client(base_url=url, follow_redirects=True, timeout=60) as session:
        session.get(f"/user/signup/?token={invite}")
        form = {"csrfmiddlewaretoken": session.cookies["csrftoken"], "email": email, "password": "annotate-123"}
        session.post(f"/user/signup/?token={invite}", data=form, headers={"Referer": f"{url}/user/signup/"})
        return str(session.get("/api/current-user/token").json()["token"])


def _choice(name: str, to_name: str, value: str) -> dict[str, Any]:
    return {"from_name": name, "to_name": to_name, "type": "choices", "value": {"choices": [value]}}


def scripted_winners(orders: dict[str, list[str]]) -> dict[str, str]:
    """The truly better answer of each task: per pair of models, exactly its scripted win rate."""
    by_pair: dict[tuple[str, str], list[str]] = {}
    for task_id, order in sorted(orders.items()):
        by_pair.setdefault((min(order), max(order)), []).append(task_id)
    winners = {}
    for pair, task_ids in by_pair.items():
        stronger = STRONGER[pair]
        weaker = pair[0] if stronger == pair[1] else pair[1]
        wins = round(WIN_RATES[pair] * len(task_ids))
        winners.update({task_id: stronger if n < wins else weaker for n, task_id in enumerate(task_ids)})
    return winners


def form(order: list[str], careful: bool, rng: random.Random, task_id: str, winner: str) -> list[dict[str, Any]]:
    """What an annotator submits for a task whose answers are ``order`` (A, B) and whose better one is
    ``winner``."""
    truth = random.Random(task_id)  # the same hidden ratings for every careful annotator of this task
    a_wins = winner == order[0]
    if careful:
        wins_a = a_wins if rng.random() < 0.9 else not a_wins
        likert = rng.choice([1, 2, 3]) if wins_a else rng.choice([5, 6, 7])
    else:
        likert = rng.randint(1, 7)
    result = []
    for letter, source in zip("ab", order, strict=True):
        latent = round(4 + STRENGTHS[source] + truth.gauss(0, 0.7))
        for key in KEYS:
            value = max(1, min(7, latent + rng.choice([-1, 0, 0, 1]))) if careful else rng.randint(1, 7)
            result.append(_choice(f"{letter}__{key}", f"response_{letter}", str(value)))
        verbosity = "just_right" if careful else rng.choice(["too_short", "just_right", "too_long"])
        result.append(_choice(f"{letter}__verbosity", f"response_{letter}", verbosity))
    result.append(_choice("likert", "prompt", str(likert)))
    return result


def categorised(path: Path) -> Path:
    """The prompt file with a category on each prompt (a field of its own: it lands in the metadata)."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    lines = [json.dumps({**r, "category": "science" if n % 2 else "chat"}) for n, r in enumerate(records)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def expert_gold(count: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Annotated tasks of other prompts, and the better answer of each by the id it is delivered under
    (what the careful annotators see)."""
    from scripted_annotators import shell

    gold, winners = [], {}
    for n in range(count):
        task = shell(f"gold-{n}", ["m-strong", "m-weak"] if n % 2 else ["m-weak", "m-strong"])
        task["status"] = "completed"
        order = [m["source_id"] for m in task["threads"][0]["turns"][-1]["messages"] if m["role"] == "assistant"]
        winner = "m-weak" if n % 4 == 3 else "m-strong"
        for slot in task["threads"][0]["turns"][-1]["annotations"]:
            if slot["key"] == "likert_value":
                slot["value"] = 2 if winner == order[0] else 6
        task["metadata"]["annotation"] = {"annotator": "expert"}
        gold.append(task)
        winners[stable_id("task", "b1", "gold", task["task_id"])] = winner
    return gold, winners


def work_through_queue(
    url: str,
    token: str,
    project_id: int,
    orders: dict[str, list[str]],
    winners: dict[str, str],
    careful: bool,
    seed: str,
) -> int:
    """Take tasks from the project's queue until it has none for this annotator; how many were annotated."""
    done = 0
    with LabelStudioClient(url, SecretStr(token)) as client:
        while True:
            try:
                task = client.request("GET", f"/api/projects/{project_id}/next")
            except Exception as exc:  # Label Studio answers 404 when the queue is empty for this user
                assert "404" in str(exc), exc
                return done
            if not task or not task.get("id"):
                return done
            task_id = task["data"]["task_id"]
            rng = random.Random(f"{seed}:{task_id}")  # the same values whatever order the queue serves tasks in
            lead = rng.uniform(25, 90) if careful else rng.uniform(1, 4)
            filled = form(orders[task_id], careful, rng, task_id, winners[task_id])
            client.create_annotation(task["id"], filled, lead_time=lead)
            done += 1
            assert done <= len(orders), "the queue served a task twice to one annotator"


@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_overlap_quality_consensus_and_leaderboard(
    label_studio: LabelStudioServer, sim: RunningSimulator, tmp_path: Path
) -> None:
    sim.configure(mode="auto")
    providers = [provider_entry(sim, source, "openai", f"{source}-model") for source in STRENGTHS]
    config = write_config(
        tmp_path,
        providers,
        categorised(write_prompts(tmp_path / "p.jsonl", 14)),
        annotation={"template": "pref_ranking", "layout": "pairwise", "seed": 3},
    )
    summary = asyncio.run(generate_tasks(str(config)))
    tasks_path = Path(summary["files"]["tasks"])
    run_dir = tasks_path.parent
    orders = {}
    for line in tasks_path.read_text().splitlines():
        shell = json.loads(line)
        answers = [m for m in shell["threads"][0]["turns"][-1]["messages"] if m["role"] == "assistant"]
        orders[shell["task_id"]] = [m["source_id"] for m in answers]
    assert len(orders) == 42 and all(len(o) == 2 for o in orders.values())

    winners = scripted_winners(orders)
    gold, gold_winners = expert_gold(8)
    winners.update(gold_winners)
    admin = SecretStr(label_studio.token)
    delivered = deliver_label_studio(
        run_dir,
        label_studio.url,
        admin,
        "labels to decisions",
        annotators_per_task=3,
        gold=gold,
        gold_rate=0.1,
    )
    project_id = delivered["project_id"]
    # 10% of the delivery is gold: 5 gold tasks beside the 42 (5 / 47 = 0.106)
    assert delivered["imported"] == 47 and delivered["projects"][0]["gold_imported"] == 5
    assert delivered["projects"][0]["annotators_per_task"] == 3 and delivered["tasks_in_run"] == 42
    said = delivery_summary(delivered)
    assert "each task goes to 3 annotators" in said and "5 gold task(s) mixed in" in said
    kept = [json.loads(line) for line in (run_dir / "delivered" / "tasks.jsonl").read_text().splitlines()]
    gold_ids = {t["task_id"] for t in kept if "gold" in t["metadata"]}
    assert len(gold_ids) == 5
    for shell in kept:
        answers = [m for m in shell["threads"][0]["turns"][-1]["messages"] if m["role"] == "assistant"]
        orders[shell["task_id"]] = [m["source_id"] for m in answers]
    with LabelStudioClient(label_studio.url, admin) as client:
        project = client.request("GET", f"/api/projects/{project_id}")
        assert (project["maximum_annotations"], project["overlap_cohort_percentage"]) == (3, 100)
        listed = client.request("GET", "/api/tasks", params={"project": project_id, "fields": "all", "page_size": 100})
        # what annotators can see of a gold task is shaped like every other task
        assert {frozenset(t["data"]) for t in listed["tasks"]} == {
            frozenset({"task_id", "prompt", "response_a", "response_b", "text_sha256"})
        }
        assert all(
            t["data"]["task_id"].startswith("task_") and len(t["data"]["task_id"]) == 29 for t in listed["tasks"]
        )

    people = {
        name: sign_up(label_studio.url, label_studio.token, f"{name}@example.com") for name in ("ann", "bea", "rnd")
    }
    for name, token in people.items():
        assert work_through_queue(label_studio.url, token, project_id, orders, winners, name != "rnd", name) == 47
    with LabelStudioClient(label_studio.url, admin) as client:
        listed = client.request("GET", "/api/tasks", params={"project": project_id, "fields": "all", "page_size": 100})
        assert all(t["is_labeled"] and t["total_annotations"] == 3 for t in listed["tasks"])

    out = tmp_path / "annotated.jsonl"
    harvested = harvest_label_studio(label_studio.url, admin, run_dir, out)
    assert (harvested["annotated"], harvested["rejected"]) == (141, 0)
    copies = [json.loads(line) for line in out.read_text().splitlines()]
    by_annotator = {c["metadata"]["annotation"]["annotator"] for c in copies}
    assert by_annotator == {f"{name}@example.com" for name in people}
    assert all(c["metadata"]["annotation"]["lead_time_s"] > 0 for c in copies)

    quality = CliRunner().invoke(app, ["quality", str(out), "--draws", "200", "--json"])
    assert quality.exit_code == 0, quality.output
    report = json.loads(quality.stdout)
    assert report["flagged"] == ["rnd@example.com"], report["annotators"]
    assert report["gold_tasks"] == 5 and report["tasks"] == 42
    gold_scores = {p["annotator"]: p["gold"] for p in report["annotators"]}
    assert all(score["n"] == 5 for score in gold_scores.values()), gold_scores
    assert gold_scores["ann@example.com"]["accuracy"] >= 0.6, gold_scores
    assert gold_scores["bea@example.com"]["accuracy"] >= 0.6, gold_scores

    exported = CliRunner().invoke(
        app,
        [
            "export-dataset",
            str(out),
            "--out",
            str(tmp_path / "datasets"),
            "--no-parquet",
            "--consensus",
            "majority",
            "--quality",
            str(tmp_path / "annotated.quality.json"),
            "--drop-flagged",
        ],
    )
    assert exported.exit_code == 0, exported.output
    resolved = json.loads(exported.stdout)["consensus"]
    assert resolved["excluded_annotators"] == ["rnd@example.com"] and resolved["dropped_gold"] == 15
    rows = [json.loads(line) for line in (tmp_path / "datasets" / "dpo.jsonl").read_text().splitlines()]
    assert rows and all(r["annotators"] == 2 and r["task_id"] not in gold_ids for r in rows)

    board = CliRunner().invoke(app, ["leaderboard", str(out), "--draws", "300", "--json"])
    assert board.exit_code == 0, board.output
    ranked = json.loads(board.stdout)
    assert set(ranked["categories"]) == {"chat", "science"}
    assert sum(b["comparisons"] for b in ranked["categories"].values()) == ranked["humans"]["comparisons"] == 126
    models = ranked["humans"]["models"]
    assert [m["source_id"] for m in models] == ["m-strong", "m-mid", "m-weak"], models
    assert models[0]["ci"][0] > models[-1]["ci"][1], models
