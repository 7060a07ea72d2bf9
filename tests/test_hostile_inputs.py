"""Inputs an adversarial (or careless) user can hand over are refused quickly, at their line, without a
traceback: YAML bombs, huge and deeply nested lines, CSV cells over the csv module's limit, paths of the
wrong kind, and prompt templates that reach for Python's internals.

As in ``test_input_validation``: both ``rlhf validate`` (the real command, in this process) and the run's
preparation (``prepare_run``, what ``rlhf run`` does before anything is called or written) must refuse
alike, with ``file:line: field: what``, and write nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from test_datasets import annotate, make_shell
from typer.testing import CliRunner

from common.errors import InputError
from common.yaml_locations import read_yaml
from flows.cli.app import app
from flows.generation.prepare import prepare_run
from prompts.config import PromptsConfig
from prompts.reader import iter_prompts, max_line_bytes, scan_prompts

ROOT = Path(__file__).resolve().parent.parent

# Line numbers below are those of this text (line 1 is "project: demo").
CONFIG = """\
project: demo
batch: b1
prompts:
  path: p.jsonl
  template: null
providers:
  - source_id: gpt
    kind: openai
    model: gpt-4o
annotation:
  template: default
output:
  dir: out
"""
GOOD = '{"id": "a", "prompt": "Why is the sky blue?"}\n'
FROM_PATH = "(from cfg.yaml:4: prompts.path)"

# Nine levels of aliases, each a list of nine of the one below: 9**9 (387 million) strings once expanded.
BILLION_LAUGHS = 'lol:\n  l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"  l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]\n" for n in range(1, 9)
)
DEEP = "[" * 200_000 + "]" * 200_000


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in ``tmp_path`` (problems name files as written) with the provider's key set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    return tmp_path


def _write(config: str = CONFIG, prompts: str = GOOD, prompts_name: str = "p.jsonl", **files: str) -> None:
    Path("cfg.yaml").write_text(config, encoding="utf-8")
    Path(prompts_name).write_text(prompts, encoding="utf-8")
    for name, text in files.items():
        Path(name).write_text(text, encoding="utf-8")


def _refused() -> list[str]:
    """The problems of cfg.yaml, the same from ``rlhf validate`` (exit 2, no traceback) and ``prepare_run``;
    nothing written."""
    before = set(Path(".").rglob("*"))
    result = CliRunner().invoke(app, ["validate", "cfg.yaml"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    with pytest.raises(InputError) as caught:
        prepare_run("cfg.yaml")
    listed = caught.value.render().splitlines()
    assert result.stderr.splitlines()[1:] == listed + ([caught.value.hint] if caught.value.hint else [])
    assert set(Path(".").rglob("*")) == before and not Path("out").exists()
    return listed


# --- YAML bombs ---------------------------------------------------------------------------------------


def test_a_billion_laughs_config_is_refused_at_the_alias_that_goes_over(workdir: Path) -> None:
    _write(CONFIG + BILLION_LAUGHS)
    started = time.monotonic()
    with pytest.raises(InputError):  # before the bound, reading the file passed and validating it spun
        read_yaml(Path("cfg.yaml"))

    problems = _refused()

    # Line 20 (l6: nine aliases of 9**6 values each) is the first to take the count over 100,000.
    assert problems == ["cfg.yaml:20: aliases expand this document to over 100,000 values: refused"]
    assert time.monotonic() - started < 30  # was over a minute (generous: a shared 2-core machine)


def test_rlhf_validate_refuses_a_billion_laughs_config_in_seconds(workdir: Path) -> None:
    """The real command in a process of its own, so that, before the bound, the test failed on its timeout
    instead of hanging."""
    _write(CONFIG + BILLION_LAUGHS)

    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "validate", "cfg.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=workdir,
        env={**os.environ, "OPENAI_API_KEY": "sk-test-not-a-key", "PYTHONPATH": str(ROOT)},
    )

    assert result.returncode == 2, result.stderr
    assert "cfg.yaml:20: aliases expand this document to over 100,000 values: refused" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(BILLION_LAUGHS, "a.yaml:7: aliases expand this document to over 100,000 values", id="laughs"),
        pytest.param("a: &a [1, [2, *a]]\n", "a.yaml:1: alias *a is inside the value it names", id="cycle"),
        pytest.param(
            "l0: &l0 [x]\n" + "".join(f"l{n}: &l{n} [*l{n - 1}]\n" for n in range(1, 12)),
            "a.yaml:12: aliases nest more than 10 deep (alias *l10): refused",
            id="alias-nesting",
        ),
        pytest.param("a: " + "[" * 5000 + "]" * 5000 + "\n", "a.yaml:1: nested more than 100 levels deep", id="deep"),
    ],
)
def test_yaml_that_expands_too_far_is_refused_at_its_line(workdir: Path, text: str, expected: str) -> None:
    Path("a.yaml").write_text(text, encoding="utf-8")

    with pytest.raises(InputError) as caught:
        read_yaml(Path("a.yaml"))

    assert str(caught.value).startswith(expected)


def test_aliases_within_bounds_still_load(workdir: Path) -> None:
    Path("a.yaml").write_text(
        "defaults: &d {kind: openai, params: &p {temperature: 0.5}}\n"
        "providers:\n  - {<<: *d, source_id: a, params: *p}\n  - {<<: *d, source_id: b}\n",
        encoding="utf-8",
    )

    _, data = read_yaml(Path("a.yaml"))

    assert data["providers"] == [
        {"kind": "openai", "params": {"temperature": 0.5}, "source_id": "a"},
        {"kind": "openai", "params": {"temperature": 0.5}, "source_id": "b"},
    ]


def test_a_billion_laughs_annotation_template_is_refused(workdir: Path) -> None:
    _write(CONFIG.replace("template: default", "template: a.yaml"), **{"a.yaml": "name: a\n" + BILLION_LAUGHS})
    with pytest.raises(InputError):  # before the bound, reading the file passed and validating it spun
        read_yaml(Path("a.yaml"))

    problems = _refused()

    assert problems == [
        "a.yaml:8: aliases expand this document to over 100,000 values: refused (from cfg.yaml:11: annotation.template)"
    ]


# --- CSV cells and deeply nested JSON -------------------------------------------------------------------


def test_a_csv_cell_over_the_csv_modules_limit_but_within_max_prompt_chars_is_read(workdir: Path) -> None:
    long_prompt = "why " * 40_000  # 160,000 characters: over csv's default 131,072
    _write(CONFIG.replace("path: p.jsonl", "path: p.csv"), f"id,prompt\na,{long_prompt}\nb,short\n", "p.csv")

    result = CliRunner().invoke(app, ["validate", "cfg.yaml"])

    assert result.exit_code == 0, result.output
    assert "2 prompt(s)" in result.stdout
    records = list(iter_prompts(PromptsConfig(path="p.csv")))
    assert [len(r.prompt_text) for r in records] == [len(long_prompt), 5]


def test_a_csv_cell_over_max_prompt_chars_is_a_problem_at_its_line(workdir: Path) -> None:
    config = CONFIG.replace("path: p.jsonl", "path: p.csv").replace("template: null", "max_prompt_chars: 150000")
    _write(config, f"id,prompt\na,fine\nb,{'x' * 180_000}\nc,fine\n", "p.csv")

    assert _refused() == [
        f"p.csv:3: prompt is 180000 characters, over the limit of 150000 (prompts.max_prompt_chars) {FROM_PATH}"
    ]


def test_a_csv_cell_longer_than_any_line_may_be_is_refused_at_its_line(workdir: Path) -> None:
    config = CONFIG.replace("path: p.jsonl", "path: p.csv").replace("template: null", "max_prompt_chars: 1000")
    limit = max_line_bytes(1000)
    cell = "many lines\n" * (limit // 11 + 10)  # a quoted cell over many lines: each line is short
    _write(config, f'id,prompt\na,fine\nb,"{cell}"\nc,fine\n', "p.csv")

    assert _refused() == [
        f"p.csv:3: a record longer than {limit:,} characters (a quote left open?), more than one within "
        f"prompts.max_prompt_chars can take: the rest of the file is not read {FROM_PATH}"
    ]


@pytest.mark.parametrize(
    ("prompts", "name", "expected"),
    [
        pytest.param(
            GOOD + '{"id": "b", "prompt": ' + DEEP + "}\n" + '{"id": "c", "prompt": "fine"}\n',
            "p.jsonl",
            "p.jsonl:2: invalid JSON: nested deeper than 100 levels",
            id="jsonl-200k",
        ),
        pytest.param(
            GOOD + '{"id": "b", "prompt": "hi", "metadata": {"x": ' + "[" * 500 + "]" * 500 + "}}\n",
            "p.jsonl",
            "p.jsonl:2: invalid JSON: nested deeper than 100 levels",
            id="jsonl-500",
        ),
        pytest.param(
            f'id,prompt,metadata\na,fine,\nb,fine,"{DEEP}"\n',
            "p.csv",
            "p.csv:3: metadata: invalid JSON in column: nested deeper than 100 levels",
            id="csv-column",
        ),
    ],
)
def test_deeply_nested_json_in_a_prompt_file_is_a_problem_at_its_line(
    workdir: Path, prompts: str, name: str, expected: str
) -> None:
    _write(CONFIG.replace("path: p.jsonl", f"path: {name}"), prompts, name)

    assert _refused() == [f"{expected} {FROM_PATH}"]


def test_harvest_rejects_a_deeply_nested_line_and_goes_on(workdir: Path) -> None:
    shell = make_shell(["gpt-4o", "claude"])
    good = annotate(shell, turn={"likert_value": 2, "justification": "A is clearer"})
    other = annotate(shell, annotator="ann2", turn={"likert_value": 6})
    source = workdir / "from-platform.jsonl"
    source.write_text("\n".join([json.dumps(good), DEEP, json.dumps(other)]) + "\n", encoding="utf-8")

    result = CliRunner().invoke(
        app, ["harvest", "--from", "file", "--in", str(source), "--out", str(workdir / "annotated.jsonl"), "--json"]
    )

    assert result.exit_code == 3, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    report = json.loads(result.stdout)
    assert (report["read"], report["annotated"], report["rejected"]) == (3, 2, 1)
    rejects = [json.loads(line) for line in Path(report["rejects"]).read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["reason"], r["reasons"]) for r in rejects] == [
        (2, "invalid_json", ["nested deeper than 100 levels"])
    ]
    kept = (workdir / "annotated.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in kept] == [good, other]


# --- Paths of the wrong kind --------------------------------------------------------------------------------


def test_output_dir_that_is_a_file_is_refused_at_validate(workdir: Path) -> None:
    _write(CONFIG.replace("dir: out", "dir: taken"), taken="a file\n")

    assert _refused() == [
        "cfg.yaml:13: output.dir: taken is a file, not a directory: output.dir names the directory each batch's "
        "directory is made in"
    ]


def test_a_batch_directory_that_is_a_file_is_refused_at_validate(workdir: Path) -> None:
    Path("out").mkdir()
    _write(**{"out/b1": "a file\n"})

    result = CliRunner().invoke(app, ["validate", "cfg.yaml"])

    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[1:] == [
        "cfg.yaml:13: output.dir: out/b1 (the directory of batch 'b1') is a file, not a directory: output.dir names "
        "the directory each batch's directory is made in"
    ]


def test_output_store_that_is_a_directory_or_inside_a_file_is_refused_at_validate(workdir: Path) -> None:
    Path("stores").mkdir()
    _write(CONFIG.replace("dir: out", "dir: out\n  store: stores"))
    assert _refused() == [
        "cfg.yaml:14: output.store: stores is a directory: output.store names the response store's SQLite file "
        "(such as stores/responses.sqlite)"
    ]

    _write(CONFIG.replace("dir: out", "dir: out\n  store: notes.txt/responses.sqlite"), **{"notes.txt": "x\n"})
    assert _refused() == [
        "cfg.yaml:14: output.store: notes.txt is a file, not a directory: the response store "
        "notes.txt/responses.sqlite cannot be made in it"
    ]


def test_a_prompt_path_that_is_a_directory_says_so(workdir: Path) -> None:
    _write()
    Path("prompts").mkdir()
    Path("cfg.yaml").write_text(CONFIG.replace("path: p.jsonl", "path: prompts"), encoding="utf-8")

    assert _refused() == [
        f"prompts: prompt file is a directory, not a file (give the path of a .jsonl or .csv) {FROM_PATH}"
    ]


def test_a_prompt_template_or_config_that_is_a_directory_says_so(workdir: Path) -> None:
    _write(CONFIG.replace("template: null", "template: templates"))
    Path("templates").mkdir()
    assert _refused() == ["templates: prompt template is a directory, not a file (from cfg.yaml:5: prompts.template)"]

    result = CliRunner().invoke(app, ["validate", "templates"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[1:] == ["templates: is a directory, not a file"]


# --- A line too long to hold -------------------------------------------------------------------------------


def test_a_huge_single_line_is_refused_without_being_held_in_memory(workdir: Path) -> None:
    """30 MB on one line (a stand-in for 2 GB): refused at its line, the next line still read, and the
    memory used stays around the line bound (4.2 MB by default), not the line's size."""
    with open("p.jsonl", "w", encoding="utf-8") as handle:
        handle.write(GOOD)
        handle.write('{"id": "huge", "prompt": "')
        for _ in range(30):
            handle.write("x" * 1_000_000)
        handle.write('"}\n')
        handle.write('{"id": "after", "prompt": "still read"}\n')
    config = PromptsConfig(path="p.jsonl")

    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    tracemalloc.reset_peak()
    baseline = tracemalloc.get_traced_memory()[0]
    try:
        report = scan_prompts(config)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        if started_here:
            tracemalloc.stop()

    assert report.valid == 2
    assert [str(p) for p in report.problems] == [
        f"p.jsonl:2: line longer than {max_line_bytes(200_000):,} bytes, more than a record within "
        "prompts.max_prompt_chars can take: refused unread"
    ]
    assert peak < 20_000_000, f"peak {peak:,} bytes while reading a 30 MB line"  # was over 60 MB


# --- Prompt templates run in the sandbox ---------------------------------------------------------------


def test_a_template_reaching_for_python_internals_runs_nothing_and_is_refused(workdir: Path) -> None:
    marker = workdir / "pwned"
    template = f"Question:\n{{{{ prompt }}}}\n{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}\n"
    _write(
        CONFIG.replace("template: null", "template: t.j2"),
        GOOD + '{"id": "b", "prompt": "two"}\n',
        **{"t.j2": template},
    )

    problems = _refused()

    assert problems == [
        "p.jsonl:1: template: t.j2:3: refused by Jinja2's sandbox (a template reaches the record's fields, not "
        "Python's internals): access to attribute '__init__' of 'type' object is unsafe. "
        f"{FROM_PATH} [the same in 1 more record(s): line 2]"
    ]
    assert not marker.exists()


def test_templates_still_render_fields_and_filters_in_the_sandbox(workdir: Path) -> None:
    _write(
        CONFIG.replace("template: null", "template: t.j2"),
        '{"id": "a", "prompt": "sky", "tags": ["b", "a"]}\n',
        **{"t.j2": "Why is the {{ prompt | upper }}{% for t in tags | sort %} {{ loop.index }}:{{ t }}{% endfor %}?"},
    )

    records = list(iter_prompts(PromptsConfig(path="p.jsonl", template="t.j2")))

    assert [r.prompt_text for r in records] == ["Why is the SKY 1:a 2:b?"]
