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
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import provider_entry, write_config

from flows.generation.generate import generate_tasks
from platforms.label_studio.labeling_config import build_labeling_config
from platforms.label_studio.local_server import PASSWORD, USERNAME, LabelStudioServer
from simulator import RunningSimulator
from simulator.settings import FaultRule, ScriptedAnswer
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


def _run(
    sim: RunningSimulator,
    tmp_path: Path,
    sources: list[str],
    name: str,
    layout: str = "n_way",
    template: str | dict[str, Any] = "pref_ranking",
) -> Path:
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
        tmp_path / name,
        providers,
        prompts,
        batch=name,
        annotation={"template": template, "seed": 3, "layout": layout},
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


def _wait_for_annotation(page: Any, task_id: int) -> None:
    """Until Label Studio holds an annotation of ``task_id`` (the form's submission has landed)."""
    page.wait_for_function(
        f"fetch('/api/tasks/{task_id}/annotations').then(r => r.json()).then(a => a.length > 0)", polling=500
    )


def _harvest(run_dir: Path, label_studio: LabelStudioServer, out: Path) -> dict[str, Any]:
    """``rlhf harvest`` of the run from Label Studio into ``out``; its JSON report (the command must succeed)."""
    harvested = _rlhf(
        "harvest", "--from", "label-studio", "--url", label_studio.url, "--run-dir", str(run_dir),
        "--out", str(out), "--json", env={"LABEL_STUDIO_TOKEN": label_studio.token},
    )  # fmt: skip
    assert harvested.returncode == 0, harvested.stdout + harvested.stderr
    report: dict[str, Any] = json.loads(harvested.stdout)
    return report


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
    _wait_for_annotation(page, ls_task)
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
    assert _harvest(run_dir, label_studio, out)["annotated"] == 1
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


MARKDOWN_ANSWER = """## Three actors

**Hugh Jackman** played *Wolverine*.

| film | year |
|:-----|-----:|
| X-Men | 2000 |

```python
def films(actor):
    if actor:
        return ["X-Men"]
```

The area is \\( \\pi r^2 \\). See [the list](https://example.com/films).
"""
# Each of these would change the page (title, a global, a request) if any of it ran or loaded.
HOSTILE_ANSWER = (
    "<script>document.title = 'pwned'; window.__pwned = 'script'</script>\n\n"
    '<img src="/static/x.png" onerror="window.__pwned = \'onerror\'">\n\n'
    "[harmless-looking link](javascript:window.__pwned='link')\n\n"
    '<a href="javascript:window.__pwned=\'raw link\'" id="rlhf-hostile-link">raw link</a>\n\n'
    "Then the answer stops mid-sen"
)
PLAYWRIGHT_KEYS = {"-": "Minus", "=": "Equal", "[": "BracketLeft", "]": "BracketRight", ";": "Semicolon",
                   "'": "Quote", ",": "Comma", ".": "Period", "/": "Slash"}  # fmt: skip


def _playwright_key(hotkey: str) -> str:
    """A Label Studio hotkey (``ctrl+alt+shift+q``) as Playwright presses it (``Control+Alt+Shift+KeyQ``)."""
    *modifiers, key = hotkey.split("+")
    names = {"ctrl": "Control", "alt": "Alt", "shift": "Shift"}
    code = f"Digit{key}" if key.isdigit() else PLAYWRIGHT_KEYS.get(key) or f"Key{key.upper()}"
    return "+".join([*(names[m] for m in modifiers), code])


def _rows_do_not_wrap(page: Any) -> None:
    """Every rating's options sit on one line (same top), inside its answer's column, on screen."""
    rows = page.evaluate(
        """() => [...document.querySelectorAll('.rlhf-row')].map(row => {
            const column = row.closest('.rlhf-answer').getBoundingClientRect();
            const boxes = [...row.querySelectorAll('label.lsf-choice__checkbox')].map(l => l.getBoundingClientRect());
            return {tops: boxes.map(b => Math.round(b.top)), right: Math.max(...boxes.map(b => b.right)),
                    columnRight: column.right, screen: window.innerWidth};
        })"""
    )
    assert rows
    for row in rows:
        assert len(set(row["tops"])) == 1, row  # one line of options
        assert row["right"] <= row["columnRight"] <= row["screen"], row  # within its column, on screen


@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_answers_render_as_markdown_their_labels_show_and_nothing_in_them_runs(
    label_studio: LabelStudioServer, sim: RunningSimulator, browser: Any, tmp_path: Path
) -> None:
    sim.configure(
        scripted=[
            ScriptedAnswer(text=MARKDOWN_ANSWER, model=SOURCES["vendor-north"]),
            ScriptedAnswer(text=HOSTILE_ANSWER, model=SOURCES["vendor-south"], truncated=True),
        ],
        faults=[FaultRule(kind="refusal", model=SOURCES["vendor-east"])],
    )
    run_dir = _run(sim, tmp_path, list(SOURCES), "browser-render")
    delivered = _deliver(run_dir, label_studio, "browser rendering")
    dimensions = resolve_template("pref_ranking").dimensions
    page = _logged_in_page(browser, label_studio)
    page.set_viewport_size({"width": 1366, "height": 900})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    task = _task_ids(label_studio, delivered["project_id"])[0]
    _open_task(page, label_studio, delivered["project_id"], task, 3 * len(dimensions) + 1)
    _assert_blind(page)
    columns = {page.locator(".rlhf-answer").nth(i).inner_text(): i for i in range(3)}
    by_kind = {
        "markdown": next(i for text, i in columns.items() if "Three actors" in text),
        "hostile": next(i for text, i in columns.items() if "harmless-looking link" in text),
    }
    by_kind["refused"] = ({0, 1, 2} - set(by_kind.values())).pop()

    # Markdown, rendered: a heading, bold, a table, a code block in monospace with its indentation, math set off.
    md = page.locator(".rlhf-answer").nth(by_kind["markdown"])
    assert md.locator(".rlhf-md h2").inner_text() == "Three actors"
    assert md.locator(".rlhf-md strong").first.inner_text() == "Hugh Jackman"
    assert md.locator(".rlhf-md table td").all_inner_texts()[:2] == ["X-Men", "2000"]
    code = md.locator(".rlhf-md pre code")
    assert "\n        return" in code.inner_text()  # indentation kept
    assert "mono" in code.evaluate("e => getComputedStyle(e).fontFamily").lower()
    assert code.locator("span.k").first.inner_text() == "def"  # highlighted
    assert md.locator("code.rlhf-math").inner_text() == "\\( \\pi r^2 \\)"
    link = md.locator(".rlhf-md a", has_text="the list")
    assert (link.get_attribute("target"), link.get_attribute("rel")) == ("_blank", "noopener noreferrer nofollow")
    raw = md.locator("details.rlhf-raw")
    assert not raw.locator("pre").is_visible()
    raw.locator("summary").click()
    assert "**Hugh Jackman**" in raw.locator("pre").inner_text()  # the raw text, one click away

    # The labels, on the answers they belong to.
    hostile = page.locator(".rlhf-answer").nth(by_kind["hostile"])
    assert hostile.locator(".rlhf-label").inner_text() == "Cut off at the length limit"
    assert "cut off here" in hostile.locator(".rlhf-cutoff-end").inner_text()
    assert page.locator(".rlhf-answer").nth(by_kind["refused"]).locator(".rlhf-label").inner_text() == "Refused"
    assert md.locator(".rlhf-label").count() == 0

    # Nothing of the hostile answer ran or loaded; it is shown as the characters the model wrote.
    assert "<script>" in hostile.locator(".rlhf-md").inner_text()
    assert hostile.locator("script, img, iframe, a[href^='javascript']").count() == 0
    page.wait_for_timeout(1000)
    assert page.evaluate("window.__pwned") is None and page.title() != "pwned"
    assert not [url for url in requests if "/static/x.png" in url]

    # Three answers at 1366 px: every rating on one line, inside its column, all on screen; no side panels.
    _rows_do_not_wrap(page)
    assert page.locator(".lsf-sidepanels__wrapper").count() > 0  # Label Studio's panels exist ...
    assert not any(panel.is_visible() for panel in page.locator(".lsf-sidepanels__wrapper").all())  # ... hidden
    _screenshot(page, "labeling-rendered-answers.png")
    page.close()


@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_an_annotator_completes_a_two_answer_task_with_the_keyboard_alone(
    label_studio: LabelStudioServer, sim: RunningSimulator, browser: Any, tmp_path: Path
) -> None:
    """The demo's template (pref_ranking): every question answered by its hotkeys, submitted with Ctrl+Enter,
    and the annotation harvests with the values the keys chose, bound to the text shown."""
    run_dir = _run(sim, tmp_path, ["vendor-north", "vendor-south"], "browser-keys")
    delivered = _deliver(run_dir, label_studio, "browser keyboard")
    template = resolve_template("pref_ranking")
    form = build_labeling_config(template, 2)
    root = ET.fromstring(form.xml)
    questions = {c.get("name"): [o.get("hotkey") for o in c] for c in root.iter("Choices")}
    page = _logged_in_page(browser, label_studio)
    page.set_viewport_size({"width": 1366, "height": 900})
    task = _task_ids(label_studio, delivered["project_id"])[0]
    _open_task(page, label_studio, delivered["project_id"], task, len(questions))
    _rows_do_not_wrap(page)
    assert "Ctrl+Enter submits" in page.inner_text("body")  # the keys are documented on the form
    chosen: dict[str, str] = {}
    presses = 0
    for index, (name, keys) in enumerate(questions.items()):
        option = (index + 2) % len(keys)
        page.keyboard.press(_playwright_key(keys[option]))
        presses += 1
        chosen[name] = form.controls[name].allowed[option]
    page.wait_for_timeout(500)  # (antd's radios repaint late: what was chosen is read from the submission)
    _screenshot(page, "labeling-keyboard.png")
    page.keyboard.press("Control+Enter")
    presses += 1
    _wait_for_annotation(page, task)
    page.close()
    (annotation,) = _annotations(label_studio, task)
    results = {item["from_name"]: item["value"]["choices"][0] for item in annotation["result"]}
    assert results == chosen and presses == len(questions) + 1

    out = tmp_path / "annotated.jsonl"
    report = _harvest(run_dir, label_studio, out)
    assert report["annotated"] == 1, report  # the text hash binding holds: the rendered HTML is not the text
    (annotated,) = [json.loads(line) for line in out.read_text().splitlines()]
    turn = annotated["threads"][0]["turns"][-1]
    first = {slot["key"]: slot["value"] for slot in turn["messages"][1]["annotations"]}
    assert str(first["instruction_following"]) == chosen["a__instruction_following"]
    likert = {slot["key"]: slot["value"] for slot in turn["annotations"]}["likert_value"]
    assert str(likert) == chosen["likert"]


@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_pairwise_rates_each_answer_once_per_prompt_and_carries_its_ratings(
    label_studio: LabelStudioServer, sim: RunningSimulator, browser: Any, tmp_path: Path
) -> None:
    """Three answers in pairs: the first pair of a prompt rates both answers, the next rates its new answer
    only, the last none; each shows only those rows, submits by keyboard, and harvest fills every pair."""
    run_dir = _run(sim, tmp_path, list(SOURCES), "browser-pairs", layout="pairwise")
    delivered = _deliver(run_dir, label_studio, "browser pairs")
    shells = [json.loads(line) for line in (run_dir / "tasks.jsonl").read_text().splitlines()]
    prompt = shells[0]["metadata"]["prompt_id"]
    pairs = [shell for shell in shells if shell["metadata"]["prompt_id"] == prompt]
    assert [len(shell["metadata"]["rated_here"]) for shell in pairs] == [2, 1, 0]
    response = httpx.get(
        f"{label_studio.url}/api/tasks",
        params={"project": delivered["project_id"]},
        headers={"Authorization": f"Token {label_studio.token}"},
        timeout=30,
    )
    ls_ids = {task["data"]["task_id"]: task["id"] for task in response.json()["tasks"]}
    form = build_labeling_config(resolve_template("pref_ranking"), 2, carried=True)
    questions = [(c.get("name"), [o.get("hotkey") for o in c]) for c in ET.fromstring(form.xml).iter("Choices")]
    page = _logged_in_page(browser, label_studio)
    page.set_viewport_size({"width": 1366, "height": 900})
    presses = []
    for shell in pairs:
        task = ls_ids[shell["task_id"]]
        _open_task(page, label_studio, delivered["project_id"], task, len(questions))
        groups = page.locator(".lsf-choices")
        visible = [name for i, (name, _) in enumerate(questions) if groups.nth(i).is_visible()]
        rated = len(shell["metadata"]["rated_here"])
        assert len(visible) == 7 * rated + 1 and "likert" in visible  # only the ratings this pair asks
        assert page.locator(".rlhf-rated-elsewhere").count() == 2 - rated
        if rated == 1:
            _screenshot(page, "labeling-pairwise-carried.png")
        for name, keys in questions:
            if name in visible:
                page.keyboard.press(_playwright_key(keys[3 if name == "likert" else 1]))
        page.keyboard.press("Control+Enter")
        presses.append(len(visible) + 1)
        _wait_for_annotation(page, task)
    page.close()
    assert presses == [16, 9, 2]  # 27 interactions for the prompt's three pairs, against 48 when every pair rates both

    out = tmp_path / "annotated.jsonl"
    report = _harvest(run_dir, label_studio, out)
    assert report["annotated"] == 3
    for annotated in (json.loads(line) for line in out.read_text().splitlines()):
        for answer in annotated["threads"][0]["turns"][-1]["messages"][1:]:
            values = {slot["key"]: slot["value"] for slot in answer["annotations"]}
            assert values["overall"] == 2 and values["verbosity"] == "just_right"  # rated once, carried here
        carried = annotated["metadata"].get("carried_ratings", {})
        assert len(carried) == 2 - len(annotated["metadata"]["rated_here"])


@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_a_models_reasoning_is_shown_collapsed_when_the_template_asks(
    label_studio: LabelStudioServer, sim: RunningSimulator, browser: Any, tmp_path: Path
) -> None:
    sim.configure(faults=[FaultRule(kind="thinking", model=SOURCES["vendor-north"])])
    template = tmp_path / "with-reasoning.yaml"
    template.write_text("name: with-reasoning\nextends: pref_ranking\ndisplay: {show_reasoning: true}\n")
    run_dir = _run(sim, tmp_path, ["vendor-north", "vendor-south"], "browser-reasoning", template=str(template))
    shell = json.loads((run_dir / "tasks.jsonl").read_text().splitlines()[0])
    thinker = next(m for m in shell["threads"][0]["turns"][-1]["messages"] if m["content"].get("reasoning"))
    thought = thinker["content"]["reasoning"][0]["content"]
    delivered = _deliver(run_dir, label_studio, "browser reasoning")
    page = _logged_in_page(browser, label_studio)
    task = _task_ids(label_studio, delivered["project_id"])[0]
    _open_task(
        page, label_studio, delivered["project_id"], task, 2 * len(resolve_template("pref_ranking").dimensions) + 1
    )
    reasoning = page.locator("details.rlhf-reasoning")
    assert reasoning.count() == 1  # the thinking model's answer only
    assert "Reasoning" in reasoning.locator("summary").inner_text()
    assert not reasoning.locator(".rlhf-md").is_visible()  # collapsed until asked for
    reasoning.locator("summary").click()
    assert thought.split()[0] in reasoning.locator(".rlhf-md").inner_text()
    _assert_blind(page)
    page.close()


@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_tasks_streamed_by_the_run_open_in_the_form_rendered_and_blind(
    label_studio: LabelStudioServer, sim: RunningSimulator, browser: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """A run that delivers as it goes (``delivery:`` in its config, no ``rlhf deliver``): its tasks are in
    Label Studio when the run ends, and one opens in the real form rendered (markdown as HTML, no raw
    asterisks) and blind."""
    monkeypatch.setenv("LABEL_STUDIO_TOKEN", label_studio.token)
    sim.configure(
        mode="auto",
        scripted=[
            ScriptedAnswer(text="**Hugh Jackman** played him, in *X-Men* (2000).", model=SOURCES["vendor-north"]),
            ScriptedAnswer(text="It was **Hugh Jackman**; he played him for 17 years.", model=SOURCES["vendor-south"]),
        ],
    )
    prompts = tmp_path / "streamed.jsonl"
    prompts.write_text("".join(ALPACA.read_text(encoding="utf-8").splitlines(keepends=True)[:2]), encoding="utf-8")
    sources = ["vendor-north", "vendor-south"]
    providers = [
        provider_entry(sim, source, "anthropic" if "claude" in SOURCES[source] else "openai", SOURCES[source])
        for source in sources
    ]
    (tmp_path / "streamed").mkdir()
    config = write_config(
        tmp_path / "streamed",
        providers,
        prompts,
        batch="browser-streamed",
        chunk_size=1,
        annotation={"template": "pref_ranking", "seed": 3},
        delivery={"url": label_studio.url, "project_title": "browser streamed"},
    )
    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API keeps an event loop on this thread
        summary = thread.submit(asyncio.run, generate_tasks(str(config))).result()
    report = summary["delivery"]
    assert report["undelivered"] == [] and report["imported"] == 2, report
    run_dir = Path(summary["files"]["tasks"]).parent
    (record,) = {r["project_id"]: r for r in map(json.loads, (run_dir / "deliveries.jsonl").open())}.values()
    project_id = int(record["project_id"])
    tasks = _task_ids(label_studio, project_id)
    assert len(tasks) == 2
    page = _logged_in_page(browser, label_studio)
    _open_task(page, label_studio, project_id, tasks[0], 2 * len(resolve_template("pref_ranking").dimensions) + 1)
    bold = page.locator(".rlhf-md strong", has_text="Hugh Jackman")
    assert bold.count() == 2  # both answers rendered from markdown
    assert "**Hugh Jackman**" not in page.locator(".rlhf-md").first.inner_text()
    _assert_blind(page)
    page.close()


IMAGE_EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "images"


@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_the_prompts_images_show_next_to_it_and_annotation_works_as_before(
    label_studio: LabelStudioServer, sim: RunningSimulator, browser: Any, tmp_path: Path
) -> None:
    """The examples/images run (small PNGs, one prompt with two): every task shows its prompt's images,
    loaded (natural size non-zero), blind; a task with two is annotated by keyboard and harvests as before."""
    sim.configure(mode="auto")
    shutil.copytree(IMAGE_EXAMPLES, tmp_path / "images")
    providers = [
        provider_entry(sim, source, "anthropic" if "claude" in SOURCES[source] else "openai", SOURCES[source])
        for source in ("vendor-north", "vendor-south")
    ]
    config = write_config(
        tmp_path,
        providers,
        tmp_path / "images" / "prompts.jsonl",
        batch="browser-images",
        annotation={"template": "pref_ranking", "seed": 3},
    )
    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API keeps an event loop on this thread
        summary = thread.submit(asyncio.run, generate_tasks(str(config))).result()
    run_dir = Path(summary["files"]["tasks"]).parent

    # An image over the template's inline limit stops the delivery before anything reaches Label Studio.
    from pydantic import SecretStr

    from flows.delivery.deliver import LabelStudioTarget, deliver_shells, read_jsonl
    from platforms.label_studio.client import LabelStudioClient
    from task_builder.template import DisplayOptions

    tiny = resolve_template("pref_ranking").model_copy(update={"display": DisplayOptions(inline_image_max_bytes=100)})
    with LabelStudioClient(label_studio.url, SecretStr(label_studio.token)) as client:
        with pytest.raises(ValueError, match=r"task .*display\.inline_image_max_bytes \(now 100\)"):
            target = LabelStudioTarget(label_studio.url, "browser images")
            deliver_shells(client, run_dir, target, tiny, "browser-images", lambda: read_jsonl(run_dir / "tasks.jsonl"))
        assert client.find_project("browser images") is None and not (run_dir / "deliveries.jsonl").exists()

    delivered = _deliver(run_dir, label_studio, "browser images")
    assert delivered["imported"] == 4
    response = httpx.get(
        f"{label_studio.url}/api/tasks",
        params={"project": delivered["project_id"]},
        headers={"Authorization": f"Token {label_studio.token}"},
        timeout=30,
    )
    expected = {task["id"]: len(task["data"]["prompt_images"]) for task in response.json()["tasks"]}
    urls = [image["url"] for task in response.json()["tasks"] for image in task["data"]["prompt_images"]]
    assert all(url.startswith("data:image/png;base64,") for url in urls)  # inlined: nothing to serve
    assert sorted(expected.values()) == [1, 1, 1, 2]

    template = resolve_template("pref_ranking")
    form = build_labeling_config(template, 2, images=True)
    questions = {c.get("name"): [o.get("hotkey") for o in c] for c in ET.fromstring(form.xml).iter("Choices")}
    page = _logged_in_page(browser, label_studio)
    page.set_viewport_size({"width": 1366, "height": 900})
    shown = ".rlhf-images img"
    loaded = "n => { const i = [...document.querySelectorAll('.rlhf-images img')]; return i.length >= n && i.every(e => e.complete); }"
    for task_id, count in sorted(expected.items(), key=lambda item: item[1]):  # the two-image task last
        _open_task(page, label_studio, delivered["project_id"], task_id, len(questions))
        page.wait_for_function(loaded, arg=count, polling=250)
        images = page.locator(shown)
        assert images.count() == count
        for index in range(count):
            image = images.nth(index)
            size = image.evaluate("i => [i.naturalWidth, i.naturalHeight, i.clientWidth, i.clientHeight]")
            assert min(size) > 0, f"task {task_id}: image {index + 1} not displayed ({size})"
            assert image.is_visible()
        _assert_blind(page)
        assert "circle.png" not in page.inner_text("body")
    _screenshot(page, "labeling-prompt-images.png")

    # The two-image task, annotated by keyboard as before, harvests with the keys' values.
    task = max(expected, key=lambda task_id: expected[task_id])
    chosen: dict[str, str] = {}
    for index, (name, keys) in enumerate(questions.items()):
        option = (index + 1) % len(keys)
        page.keyboard.press(_playwright_key(keys[option]))
        chosen[name] = form.controls[name].allowed[option]
    page.wait_for_timeout(500)
    page.keyboard.press("Control+Enter")
    _wait_for_annotation(page, task)
    page.close()
    (annotation,) = _annotations(label_studio, task)
    assert {item["from_name"]: item["value"]["choices"][0] for item in annotation["result"]} == chosen

    out = tmp_path / "annotated.jsonl"
    report = _harvest(run_dir, label_studio, out)
    assert report["annotated"] == 1
    (annotated,) = [json.loads(line) for line in out.read_text().splitlines()]
    user = annotated["threads"][0]["turns"][-1]["messages"][0]
    assert [a["name"] for a in user["content"]["attachments"]] == ["red_circle.png", "blue_circle.png"]
    likert = {slot["key"]: slot["value"] for slot in annotated["threads"][0]["turns"][-1]["annotations"]}
    assert str(likert["likert_value"]) == chosen["likert"]
