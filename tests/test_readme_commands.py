"""README's quick start and annotation loop, run as written (issue 26).

The commands are read from README.md's code blocks, so this test fails when the README drifts from what
works. They run one after the other in one bash "terminal" (what a line exports, the next line sees) in a
copy of the repository (tracked files and untracked ones git does not ignore), so nothing lands in the
repository itself; afterwards ``git ls-files --others --exclude-standard`` in the copy must list no new
file: whatever the commands wrote, git ignores.

Substitutions, and only these:

- ``make test`` (quick start) is not run: it is this suite.
- ``make label-studio`` (terminal 1) is the session's ``label_studio`` fixture: the same server module
  that target starts (``platforms/label_studio/local_server.py``), with the same user, password and token,
  on a free port and a scratch data directory instead of port 8080 and ``~/.cache/rlhf-orchestrator/ls-trial``.
  So ``http://127.0.0.1:8080`` in the commands becomes the fixture's URL. The token the README exports is
  not substituted: it must be the one the server has.
- "open …, annotate" (a comment: a person in a browser) is done through Label Studio's REST API as that
  user: every control of the project's labeling form filled, as the form submits it.
- The terminal: bash in the copy, with the ``.venv`` that ``make`` made first on ``PATH`` (as if activated;
  the copy's ``.venv`` is a link to the repository's), ``PREFECT_HOME`` the copy's ``.prefect`` (where
  ``make`` puts it, so the commands outside ``make`` write nothing to ``~/.prefect`` either), and none of
  the variables a fresh shell would not have (the demo's ``SIM_URL`` and keys, ``LABEL_STUDIO_TOKEN``,
  ``PREFECT_API_URL``, the offline switches ``make`` and ``rlhf`` set themselves, make's own).

Then ``make demo-clean`` (README: it starts afresh) ends the test.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import ROOT
from pydantic import SecretStr

from platforms.label_studio.client import LabelStudioClient
from platforms.label_studio.local_server import PASSWORD, USERNAME, LabelStudioServer

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
TRIAL_URL = "http://127.0.0.1:8080"  # what make label-studio serves, as the README writes it
DEMO_CALLS = 150  # 50 prompts x 3 providers (examples/demo.yaml)
FRESH_SHELL_LACKS = {
    "SIM_URL",
    "SIM_OPENAI_KEY",
    "SIM_ANTHROPIC_KEY",
    "LABEL_STUDIO_TOKEN",
    "PREFECT_API_URL",
    "PREFECT_HOME",
    "DO_NOT_TRACK",
    "PREFECT_SERVER_ANALYTICS_ENABLED",
    "PREFECT_LOGGING_LEVEL",
    "VIRTUAL_ENV",
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
}


def bash_blocks(text: str) -> list[tuple[int, list[str]]]:
    """The ```bash blocks of a markdown text: (the line number of the fence, the block's lines)."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] | None = None
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if current is None and line.strip() == "```bash":
            current, start = [], number
        elif current is not None and line.strip() == "```":
            blocks.append((start, current))
            current = None
        elif current is not None:
            current.append(line.strip())
    return blocks


def readme_block(after_heading: str | None) -> list[str]:
    """The first bash block of README.md (after the heading, if one is given)."""
    text = README.read_text(encoding="utf-8")
    offset = 0
    if after_heading is not None:
        match = re.search(rf"^#+ {re.escape(after_heading)}", text, flags=re.M)
        assert match, f"README.md has no heading '{after_heading}'"
        offset = text[: match.start()].count("\n")
    return next(lines for start, lines in bash_blocks(text) if start > offset)


class Terminal:
    """One bash session: each line runs in the working directory with what earlier lines exported."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd, self.env = cwd, env
        self._env_file = cwd.parent / f"{cwd.name}.env"

    def run(self, line: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        script = f'{line}\nstatus=$?\nenv -0 > {shlex.quote(str(self._env_file))}\nexit "$status"\n'
        result = subprocess.run(
            ["bash", "-c", script], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout_s
        )
        if self._env_file.is_file():
            pairs = self._env_file.read_text(encoding="utf-8").split("\0")
            self.env = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
            self._env_file.unlink()
        print(f"$ {line}\n{result.stdout}{result.stderr}")
        return result


def _copy_of_the_repository(target: Path) -> Path:
    """The repository's working tree (tracked files, and untracked ones git does not ignore), as a git
    repository with nothing added (so ``--others --exclude-standard`` lists what is not ignored)."""
    stamp = ROOT / ".venv" / ".installed-stamp"
    if not stamp.is_file() or stamp.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime:
        # make would reinstall the package from the copy into the shared .venv
        pytest.skip("needs the .venv that make installs, up to date (run make install)")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in sorted(set(filter(None, listed.split("\0")))):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)  # mtimes kept: make sees its install stamp as up to date
    (target / ".venv").symlink_to(ROOT / ".venv")
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    return target


def _not_ignored(repo: Path) -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--others", "--exclude-standard"], cwd=repo, capture_output=True, check=True
    ).stdout.decode()
    return set(filter(None, listed.split("\0")))


def _summary_calls(repo: Path) -> tuple[int, int]:
    summary = json.loads((repo / "out" / "demo" / "summary.json").read_text(encoding="utf-8"))
    providers = summary["providers"].values()
    return sum(p["called_this_run"] for p in providers), sum(p["reused_from_store"] for p in providers)


def _option(line: str, name: str) -> str:
    words = shlex.split(line, comments=True)
    return words[words.index(name) + 1]


def _annotate_everything(server: LabelStudioServer, repo: Path) -> dict[str, str]:
    """Fill every control of each delivered task's form, as the labeling UI submits it; return the
    position letter chosen as best per task id."""
    rng = random.Random(26)
    delivered = [
        json.loads(line) for line in (repo / "out" / "demo" / "deliveries.jsonl").read_text().splitlines() if line
    ]
    chosen: dict[str, str] = {}
    with LabelStudioClient(server.url, SecretStr(server.token)) as client:
        for project_id in {d["project_id"] for d in delivered}:
            form = ET.fromstring(client.request("GET", f"/api/projects/{project_id}")["label_config"])
            for task_id, ls_id in client.task_ids(project_id).items():
                result = []
                for control in form.iter():
                    if control.tag == "Choices":
                        aliases = [c.get("alias") or c.get("value") for c in control.iter("Choice")]
                        value = rng.choice(aliases)
                        if control.get("name") == "selected":
                            chosen[task_id] = str(value)
                        result.append(
                            {
                                "from_name": control.get("name"),
                                "to_name": control.get("toName"),
                                "type": "choices",
                                "value": {"choices": [value]},
                            }
                        )
                    elif control.tag == "TextArea":
                        result.append(
                            {
                                "from_name": control.get("name"),
                                "to_name": control.get("toName"),
                                "type": "textarea",
                                "value": {"text": ["The chosen answer is clearer and complete."]},
                            }
                        )
                    else:
                        assert control.tag not in ("Rating", "Ranker", "Number", "Labels"), control.tag
                client.create_annotation(ls_id, result)
    return chosen


def test_quick_start_and_annotation_loop_as_written(label_studio: LabelStudioServer, tmp_path: Path) -> None:
    repo = _copy_of_the_repository(tmp_path / "repo")
    before = _not_ignored(repo)
    env = {k: v for k, v in os.environ.items() if k not in FRESH_SHELL_LACKS}
    env["PATH"] = f"{repo / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    env["PREFECT_HOME"] = str(repo / ".prefect")
    terminal = Terminal(repo, env)

    # -------------------------------------------------------------------------------- quick start
    quick_start = readme_block(None)
    assert [shlex.split(line, comments=True) for line in quick_start] == [["make", "demo"], ["make", "test"]]
    first = terminal.run(quick_start[0])
    assert first.returncode == 0, first.stderr
    assert _summary_calls(repo) == (DEMO_CALLS, 0)
    assert f"simulator served {DEMO_CALLS} request(s)" in first.stdout
    assert "run make demo again: every answer then comes from the store and nothing is called" in first.stdout

    # ---------------------------------------------------------------------------- annotation loop
    loop = readme_block("The annotation loop, end to end")
    commands = [line for line in loop if line and not line.startswith("#")]
    assert shlex.split(commands[0], comments=True) == ["make", "label-studio"]  # stands in: the fixture
    assert label_studio.running
    annotated, choices = "", {}
    harvested_to = dataset_dir = None
    for line in loop:
        if line == commands[0]:
            continue
        if line.startswith("#"):
            if "annotate" in line:  # a person at the labeling form: here, its REST API
                assert TRIAL_URL in line and USERNAME in line and PASSWORD in line, line
                choices = _annotate_everything(label_studio, repo)
                annotated = line
            continue
        command = line.replace(TRIAL_URL, label_studio.url)
        words = shlex.split(command, comments=True)
        result = terminal.run(command)
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
        if words == ["make", "demo"]:  # a second demo: kept, resumed, nothing called
            assert _summary_calls(repo) == (0, DEMO_CALLS), "the second make demo called providers again"
            assert f"all {DEMO_CALLS} answers reused from the response store" in result.stdout
            assert "simulator served 0 request(s)" in result.stdout
            assert "SIM_URL" not in terminal.env  # what follows needs none of the providers' variables
        elif words[0] == "export":
            assert terminal.env["LABEL_STUDIO_TOKEN"] == label_studio.token  # the trial token, as printed
        elif words[:2] == ["rlhf", "deliver"]:
            delivered = (repo / "out" / "demo" / "deliveries.jsonl").read_text().splitlines()
            assert sum(json.loads(d)["imported"] for d in delivered) == 50
        elif words[:2] == ["rlhf", "harvest"]:
            harvested_to = repo / _option(command, "--out")
        elif words[:2] == ["rlhf", "export-dataset"]:
            dataset_dir = repo / _option(command, "--out")
    assert annotated and harvested_to is not None and dataset_dir is not None

    shells = {
        json.loads(line)["task_id"]: json.loads(line)
        for line in (repo / "out" / "demo" / "tasks.jsonl").read_text().splitlines()
    }
    harvested = [json.loads(line) for line in harvested_to.read_text().splitlines()]
    assert sorted(task["task_id"] for task in harvested) == sorted(shells) == sorted(choices)
    rejects = harvested_to.with_name(harvested_to.stem + ".rejects.jsonl")
    assert rejects.read_text() == ""
    pairs = [json.loads(line) for line in (dataset_dir / "dpo.jsonl").read_text().splitlines()]
    assert {pair["task_id"] for pair in pairs} == set(shells)
    for pair in pairs:  # the answer the annotator chose is "chosen", mapped back from its position
        positions = shells[pair["task_id"]]["metadata"]["positions"]
        assert pair["chosen_source_id"] == positions[f"Response {choices[pair['task_id']]}"]

    # Whatever the commands wrote, git ignores (README's paths, make's .prefect, the run directory).
    assert _not_ignored(repo) - before == set()

    # ----------------------------------------------------------------------- make demo-clean: afresh
    clean = terminal.run("make demo-clean")
    assert clean.returncode == 0, clean.stderr
    assert "removed out/demo/ (its answers, tasks and deliveries): starting afresh" in clean.stdout
    assert _summary_calls(repo) == (DEMO_CALLS, 0)
    assert not (repo / "out" / "demo" / "deliveries.jsonl").exists()
