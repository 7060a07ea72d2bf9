"""What an annotator sees and does, in a real Label Studio driven by a real headless browser.

Debian's ``chromium`` through Playwright's Python client (``executable_path``: Playwright downloads no
browser). A run on the simulator is delivered with ``rlhf deliver``; the test logs in, opens a task,
checks that nothing on the page names a model or a source, rates both answers and states the
preference by clicking, and submits; ``rlhf harvest`` and ``rlhf export-dataset --format dpo`` must
then give the pair the clicks chose. A second task is submitted with one rating left out: the form
refuses it, naming the question, and no annotation reaches the server.

``RLHF_SCREENSHOTS=<dir>`` also saves the labeling view (pairwise and three answers) there:
``make screenshots`` refreshes the ones in docs/.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import provider_entry, write_config

from flows.generation.generate import generate_tasks
from platforms.label_studio.local_server import PASSWORD, USERNAME, LabelStudioServer
from simulator import RunningSimulator
from task_builder.template import resolve_template

pytestmark = pytest.mark.slow

RLHF = str(Path(sys.executable).with_name("rlhf"))
ALPACA = Path(__file__).resolve().parent.parent / "prompts" / "examples" / "alpaca_sample.jsonl"
# Source ids and model names that must never reach an annotator's screen.
SOURCES = {
    "vendor-north": "gpt-4o-2024-05-13",
    "vendor-south": "claude-3-5-sonnet-20240620",
    "vendor-east": "Meta-Llama-3-8B-Instruct",
}
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 90_000


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "Debian's chromium is not installed (make browser installs it: apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _run(sim: RunningSimulator, tmp_path: Path, sources: list[str], name: str) -> Path:
    """A finished run of three AlpacaEval prompts over ``sources``; returns its run directory."""
    sim.configure(mode="auto")  # replayed answers, no marker naming the model
    prompts = tmp_path / f"{name}.jsonl"
    prompts.write_text("".join(ALPACA.read_text(encoding="utf-8").splitlines(keepends=True)[:3]), encoding="utf-8")
    providers = [
        provider_entry(sim, source, "anthropic" if "claude" in SOURCES[source] else "openai", SOURCES[source])
        for source in sources
    ]
    (tmp_path / name).mkdir()
    config = write_config(
        tmp_path / name, providers, prompts, batch=name, annotation={"template": "pref_ranking", "seed": 3}
    )
    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API keeps an event loop on this thread
        summary = thread.submit(asyncio.run, generate_tasks(str(config))).result()
    return Path(summary["files"]["tasks"]).parent


def _rlhf(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RLHF, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def _deliver(run_dir: Path, label_studio: LabelStudioServer, title: str) -> dict[str, Any]:
    done = _rlhf(
        "deliver",
        str(run_dir),
        "--to",
        "label-studio",
        "--url",
        label_studio.url,
        "--project-title",
        title,
        "--json",
        env={"LABEL_STUDIO_TOKEN": label_studio.token},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _task_ids(label_studio: LabelStudioServer, project_id: int) -> list[int]:
    response = httpx.get(
        f"{label_studio.url}/api/tasks",
        params={"project": project_id},
        headers={"Authorization": f"Token {label_studio.token}"},
        timeout=30,
    )
    return sorted(task["id"] for task in response.json()["tasks"])


def _annotations(label_studio: LabelStudioServer, task_id: int) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{label_studio.url}/api/tasks/{task_id}/annotations",
        headers={"Authorization": f"Token {label_studio.token}"},
        timeout=30,
    )
    return list(response.json())


def _logged_in_page(browser: Any, label_studio: LabelStudioServer) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{label_studio.url}/user/login")
    page.fill("input[name=email]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(lambda url: "/user/login" not in url)
    return page


def _open_task(page: Any, label_studio: LabelStudioServer, project_id: int, task_id: int, groups: int) -> Any:
    page.goto(f"{label_studio.url}/projects/{project_id}/data?task={task_id}")
    # The labeling view renders after the Data Manager settles (and may render twice): wait for the form.
    page.wait_for_function("n => document.querySelectorAll('.lsf-choices').length === n", arg=groups, polling=250)
    page.wait_for_timeout(1000)
    choices = page.locator(".lsf-choices")
    assert choices.count() == groups
    return choices


def _pick(choices: Any, group: int, option: int) -> None:
    choices.nth(group).locator("label.lsf-choice__checkbox").nth(option).click()


def _screenshot(page: Any, name: str) -> None:
    target = os.environ.get("RLHF_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / name))


def _assert_blind(page: Any) -> None:
    text = page.inner_text("body")
    for source, model in SOURCES.items():
        assert source not in text and model not in text, f"the annotator's page names {source} / {model}"


@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_an_annotator_rates_compares_and_submits_and_the_dataset_holds_that_choice(
    label_studio: LabelStudioServer, sim: RunningSimulator, browser: Any, tmp_path: Path
) -> None:
    run_dir = _run(sim, tmp_path, ["vendor-north", "vendor-south"], "browser-pair")
    delivered = _deliver(run_dir, label_studio, "browser pairwise")
    project_id = delivered["project_id"]
    ls_task, blank_task = _task_ids(label_studio, project_id)[:2]
    dimensions = resolve_template("pref_ranking").dimensions
    likert_group = 2 * len(dimensions)

    page = _logged_in_page(browser, label_studio)
    choices = _open_task(page, label_studio, project_id, ls_task, likert_group + 1)
    _assert_blind(page)
    _screenshot(page, "labeling-pairwise.png")
    for group in range(likert_group):
        _pick(choices, group, 0 if group < len(dimensions) else 1)  # A: first option, B: second of each scale
    _pick(choices, likert_group, 1)  # "Response A better" (likert 2)
    choices.nth(likert_group).scroll_into_view_if_needed()
    _screenshot(page, "labeling-pairwise-preference.png")
    page.locator("textarea").last.fill("A names more of the actors asked for.")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_function(
        f"fetch('/api/tasks/{ls_task}/annotations').then(r => r.json()).then(a => a.length > 0)", polling=500
    )
    assert len(_annotations(label_studio, ls_task)) == 1

    # A submission with a required rating left out is refused by the form, naming the question.
    choices = _open_task(page, label_studio, project_id, blank_task, likert_group + 1)
    for group in range(likert_group):
        if group != len(dimensions) + 1:  # Response B's second dimension stays blank
            _pick(choices, group, 2)
    _pick(choices, likert_group, 5)
    page.get_by_role("button", name="Submit").click()
    missing = f"Response B: {dimensions[1].title}: choose an option."
    page.get_by_text(missing).wait_for()
    page.wait_for_timeout(1500)
    assert _annotations(label_studio, blank_task) == []
    page.close()

    out = tmp_path / "annotated.jsonl"
    harvested = _rlhf(
        "harvest",
        "--from",
        "label-studio",
        "--url",
        label_studio.url,
        "--run-dir",
        str(run_dir),
        "--out",
        str(out),
        "--json",
        env={"LABEL_STUDIO_TOKEN": label_studio.token},
    )
    assert harvested.returncode == 0, harvested.stdout + harvested.stderr
    assert json.loads(harvested.stdout)["annotated"] == 1
    exported = _rlhf("export-dataset", str(out), "--format", "dpo", "--out", str(tmp_path / "datasets"), "--no-parquet")
    assert exported.returncode == 0, exported.stderr
    (pair,) = [json.loads(line) for line in (tmp_path / "datasets" / "dpo.jsonl").read_text().splitlines()]

    (annotated,) = [json.loads(line) for line in out.read_text().splitlines()]
    turn = annotated["threads"][0]["turns"][-1]
    order = [m["source_id"] for m in turn["messages"] if m["role"] == "assistant"]
    assert (pair["chosen_source_id"], pair["rejected_source_id"]) == (order[0], order[1])  # the click: A better
    assert pair["margin"] == 2.0
    values = {slot["key"]: slot["value"] for slot in turn["annotations"]}
    assert (
        values["selected_model_id"] == order[0] and values["justification"] == "A names more of the actors asked for."
    )
    first = {s["key"]: s["value"] for s in turn["messages"][1]["annotations"]}
    second = {s["key"]: s["value"] for s in turn["messages"][2]["annotations"]}
    for dim in dimensions:
        assert (first[dim.key], second[dim.key]) == (dim.values[0], dim.values[1])


@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_three_answers_side_by_side_are_blind(
    label_studio: LabelStudioServer, sim: RunningSimulator, browser: Any, tmp_path: Path
) -> None:
    run_dir = _run(sim, tmp_path, list(SOURCES), "browser-nway")
    delivered = _deliver(run_dir, label_studio, "browser three answers")
    dimensions = resolve_template("pref_ranking").dimensions
    page = _logged_in_page(browser, label_studio)
    task = _task_ids(label_studio, delivered["project_id"])[0]
    _open_task(page, label_studio, delivered["project_id"], task, 3 * len(dimensions) + 1)
    _assert_blind(page)
    boxes = [page.locator(".rlhf-answer").nth(i).bounding_box() for i in range(3)]
    assert boxes[0]["y"] == boxes[1]["y"] == boxes[2]["y"] and boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"]
    _screenshot(page, "labeling-three-answers.png")
    page.close()
