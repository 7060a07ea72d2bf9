"""``rlhf validate`` refuses everything ``rlhf run`` would refuse, with the same ``file:line: field: what``.

For each bad input (non-finite or boolean numbers in the config, text that is not valid Unicode, a record
with both ``prompt`` and ``messages``, problems in files the config names) both ``rlhf validate`` (the
real command, in this process) and the run's preparation (``prepare_run``, which ``rlhf run`` calls
before anything is called or written) must refuse it, and nothing may be written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.errors import InputError
from flows.cli.app import app
from flows.generation.prepare import prepare_run

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
    base_url: http://127.0.0.1:9/v1
    params: {temperature: 0.7, max_tokens: 64}
    timeout_s: 5
annotation:
  template: default
output:
  dir: out
"""
GOOD_PROMPTS = '{"id": "a", "prompt": "Why is the sky blue?"}\n'

NOT_FINITE = "Input should be a finite number"
NOT_BOOL = "Input should be a number, not true/false"
SURROGATE = "not valid Unicode: lone surrogate U+D800"
FROM_PATH = "(from cfg.yaml:4: prompts.path)"


@dataclass(frozen=True)
class Case:
    """A bad input: the config edited by ``replace`` (old, new), the prompt file, extra files, the expected problem."""

    id: str
    expected: str
    replace: tuple[str, str] = ("", "")
    prompts: str = GOOD_PROMPTS
    prompts_name: str = "p.jsonl"
    files: tuple[tuple[str, str], ...] = ()


def _param(old: str, new: str, line: int, field: str, message: str) -> Case:
    return Case(f"{field} ({new.splitlines()[-1].strip()})", f"cfg.yaml:{line}: {field}: {message}", (old, new))


def _record(case_id: str, field: str, message: str, line: str) -> Case:
    """A prompt file whose second record is ``line``; the problem is on line 2."""
    return Case(case_id, f"p.jsonl:2: {field}: {message} {FROM_PATH}", prompts=GOOD_PROMPTS + line + "\n")


CASES = [
    # Non-finite numbers anywhere a number is accepted.
    _param("temperature: 0.7", "temperature: .nan", 11, "providers[0].params.temperature", NOT_FINITE),
    _param("temperature: 0.7", "temperature: .inf", 11, "providers[0].params.temperature", NOT_FINITE),
    _param("max_tokens: 64", "max_tokens: -.inf", 11, "providers[0].params.max_tokens", NOT_FINITE),
    _param(
        "max_tokens: 64",
        "max_tokens: 64, logit_bias: {'50256': .nan}",
        11,
        "providers[0].params.logit_bias",
        NOT_FINITE,
    ),
    _param("timeout_s: 5", "timeout_s: .inf", 12, "providers[0].timeout_s", NOT_FINITE),
    _param("timeout_s: 5", "timeout_s: .nan", 12, "providers[0].timeout_s", NOT_FINITE),
    _param("timeout_s: 5", "backoff_max_s: .inf", 12, "providers[0].backoff_max_s", NOT_FINITE),
    _param("timeout_s: 5", "requests_per_minute: .inf", 12, "providers[0].requests_per_minute", NOT_FINITE),
    _param(
        "timeout_s: 5",
        "price: {input_per_million: .nan, output_per_million: 1}",
        12,
        "providers[0].price.input_per_million",
        NOT_FINITE,
    ),
    # Booleans where numbers are expected (pydantic's lax mode read them as 1 and 0).
    _param("timeout_s: 5", "max_concurrency: true", 12, "providers[0].max_concurrency", NOT_BOOL),
    _param("temperature: 0.7", "temperature: false", 11, "providers[0].params.temperature", NOT_BOOL),
    _param("timeout_s: 5", "timeout_s: true", 12, "providers[0].timeout_s", NOT_BOOL),
    _param("  dir: out", "  dir: out\nchunk_size: true", 17, "chunk_size", NOT_BOOL),
    _param("  template: default", "  template: default\n  seed: false", 15, "annotation.seed", NOT_BOOL),
    # Text that cannot be encoded as UTF-8, in the config or in any field of a prompt record.
    _param("model: gpt-4o", 'model: "gpt-4o\\ud800"', 9, "providers[0].model", f"{SURROGATE} at character 7"),
    _record("prompt-surrogate", "prompt", f"{SURROGATE} at character 4", '{"prompt": "hi \\ud800"}'),
    _record(
        "messages-surrogate",
        "messages[2].content",
        f"{SURROGATE} at character 1",
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "\ud800"},
                ]
            }
        ),
    ),
    _record("system-surrogate", "system", f"{SURROGATE} at character 1", '{"prompt": "hi", "system": "\\ud800"}'),
    _record("id-surrogate", "id", f"{SURROGATE} at character 2", '{"id": "b\\ud800", "prompt": "hi"}'),
    _record(
        "metadata-surrogate",
        "metadata.tags[0]",
        f"{SURROGATE} at character 1",
        '{"prompt": "hi", "metadata": {"tags": ["\\ud800"]}}',
    ),
    _record("extra-key-surrogate", "topic", f"{SURROGATE} at character 3", '{"prompt": "hi", "topic": "ab\\ud800"}'),
    Case(
        "csv-json-column-surrogate",
        f"p.csv:3: messages[0].content: {SURROGATE} at character 1 {FROM_PATH}",
        replace=("path: p.jsonl", "path: p.csv"),
        prompts_name="p.csv",
        prompts='id,prompt,messages\n1,fine,\n2,,"[{""role"": ""user"", ""content"": ""\\ud800""}]"\n',
    ),
    Case(
        "template-literal-surrogate",
        f"p.jsonl:1: template: {SURROGATE} at character 1 {FROM_PATH}",
        replace=("template: null", "template: t.j2"),
        files=(("t.j2", '{{ "\\ud800" }}{{ prompt }}'),),
    ),
    # A record with both prompt and messages.
    _record(
        "prompt-and-messages",
        "prompt",
        "give 'prompt' or 'messages', not both",
        '{"prompt": "a", "messages": [{"role": "user", "content": "b"}]}',
    ),
    # Problems in the files the config names also name the config's line and field.
    Case(
        "prompt-file-missing",
        "nowhere.jsonl: prompt file not found (looked in {workdir}: relative paths in a config "
        f"start at the config file's directory) {FROM_PATH}",
        replace=("path: p.jsonl", "path: nowhere.jsonl"),
    ),
    Case(
        "prompt-template-syntax",
        "t.j2:1: template syntax error: unexpected '}' (from cfg.yaml:5: prompts.template)",
        replace=("template: null", "template: t.j2"),
        files=(("t.j2", "{{ prompt }"),),
    ),
    Case(
        "annotation-template-invalid",
        "a.yaml:3: dimensions[0]: an integer dimension needs 'values' (from cfg.yaml:14: annotation.template)",
        replace=("template: default", "template: a.yaml"),
        files=(("a.yaml", "name: a\ndimensions:\n  - {key: helpful, title: Helpful}\n"),),
    ),
    Case(
        "annotation-template-bool-value",
        f"a.yaml:2: dimensions[0].values[1]: {NOT_BOOL} (from cfg.yaml:14: annotation.template)",
        replace=("template: default", "template: a.yaml"),
        files=(("a.yaml", "name: a\ndimensions: [{key: helpful, title: Helpful, values: [1, true]}]\n"),),
    ),
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in ``tmp_path`` (problems name files as written) with the provider's key set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    return tmp_path


def _write(workdir: Path, case: Case) -> str:
    old, new = case.replace
    assert old in CONFIG
    (workdir / "cfg.yaml").write_text(CONFIG.replace(old, new, 1), encoding="utf-8")
    (workdir / case.prompts_name).write_text(case.prompts, encoding="utf-8")
    for name, text in case.files:
        (workdir / name).write_text(text, encoding="utf-8")
    return "cfg.yaml"


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_validate_and_run_refuse_alike(workdir: Path, case: Case) -> None:
    config = _write(workdir, case)
    before = _files(workdir)

    result = CliRunner().invoke(app, ["validate", config])
    assert result.exit_code == 2, result.output
    with pytest.raises(InputError) as caught:
        prepare_run(config)  # what `rlhf run` does before anything is called or written
    for skip_invalid in (True, False):  # --skip-invalid: a bad record is rejected, never run
        try:
            rejected = prepare_run(config, skip_invalid=skip_invalid).rejected
        except InputError as exc:
            rejected = exc.problems
        assert case.expected.replace("{workdir}", str(workdir)) in [str(p) for p in rejected]

    listed = [str(p) for p in caught.value.problems]
    assert case.expected.replace("{workdir}", str(workdir)) in listed
    hint = [caught.value.hint] if caught.value.hint else []  # how to run the valid records (--skip-invalid)
    assert result.stderr.splitlines()[1:] == listed + hint  # the same problems, word for word
    assert _files(workdir) == before and not (workdir / "out").exists()
