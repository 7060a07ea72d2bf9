"""What a first hour with the tool trips on: a cost that is only partly known, a misspelt config key, a
template error on every prompt, paths in a config written relative to it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from common.errors import InputError
from flows.reporting.plan import plan_cost_text, plan_run, plan_table


def _text(renderable: object) -> str:
    console = Console(record=True, width=200, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def _prompts(path: Path, count: int, **fields: str) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            handle.write(json.dumps({"id": f"p-{i}", "prompt": f"Question {i}?", **fields}) + "\n")
    return path


def _config(directory: Path, body: str, name: str = "run.yaml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path


PROVIDERS = """\
providers:
  - source_id: priced
    kind: openai
    model: gpt-4o
    params: {max_tokens: 100}
    price: {input_per_million: 2.0, output_per_million: 8.0}
  - source_id: free-a
    kind: openai
    model: llama
    params: {max_tokens: 100}
  - source_id: free-b
    kind: anthropic
    model: claude
    params: {max_tokens: 100}
"""


# ------------------------------------------------------------------------------------------- cost


def test_plan_names_the_providers_without_a_price_and_gives_a_lower_bound(tmp_path: Path) -> None:
    _prompts(tmp_path / "p.jsonl", 10)
    config = _config(tmp_path, f"project: x\nbatch: b\nprompts: {{path: p.jsonl}}\n{PROVIDERS}")
    report = plan_run(config)
    assert report["cost_no_price"] == ["free-a", "free-b"] and report["cost_is_lower_bound"] is True
    low, high = report["cost_usd_range"]
    assert (
        plan_cost_text(report)
        == f"estimated cost: at least ${low:.2f} – ${high:.2f} (no price: free-a, free-b; give providers a price to count them)"
    )
    text = _text(plan_table(report, "plan"))
    assert text.count("no price") == 2 and "estimated cost" not in text  # the cost line is printed once, below


def test_plan_cost_without_any_price_says_unknown_and_with_every_price_is_plain(tmp_path: Path) -> None:
    report = {"cost_usd_range": None, "cost_no_price": ["a"], "providers": {}}
    assert plan_cost_text(report).startswith("estimated cost: unknown (no price: a;")
    assert plan_cost_text({"cost_usd_range": [0.1, 0.5], "cost_no_price": []}) == "estimated cost: $0.10 – $0.50"


# -------------------------------------------------------------------------------- did you mean


def _problems(config: Path, **kwargs: object) -> list[str]:
    from flows.generation.prepare import prepare_run

    with pytest.raises(InputError) as info:
        prepare_run(config, require_keys=False, **kwargs)
    return [str(p) for p in info.value.problems]


def test_unknown_config_keys_say_what_was_meant_with_file_line_and_field(tmp_path: Path) -> None:
    _prompts(tmp_path / "p.jsonl", 2)
    config = _config(
        tmp_path,
        """\
project: x
batch: b
prompts: {path: p.jsonl, tempalte: null}
providers:
  - source_id: a
    kind: openai
    model: m
    temprature: 0.5
    max_concurency: 3
    params: {temprature: 0.7, min_p: 0.1, max_new_tokens: 5, reasoning_effort: low}
annotation:
  template: {name: t, dimensionz: []}
outptu: {dir: out}
""",
    )
    assert sorted(_problems(config)) == sorted(
        [
            f"{config}:3: prompts.tempalte: unknown key (did you mean 'template'?)",
            f"{config}:8: providers[0].temprature: unknown key (did you mean 'params: {{temperature: …}}'?)",
            f"{config}:9: providers[0].max_concurency: unknown key (did you mean 'max_concurrency'?)",
            f"{config}:10: providers[0].params: unknown parameter 'temprature': did you mean 'temperature'? "
            "(params are sent to the API as given)",
            f"{config}:12: annotation.template.dimensionz: unknown key (did you mean 'dimensions'?)",
            f"{config}:13: outptu: unknown key (did you mean 'output'?)",
        ]
    )


def test_a_misspelt_key_in_an_annotation_template_file_is_named_too(tmp_path: Path) -> None:
    from task_builder.template import resolve_template

    template = tmp_path / "t.yaml"
    template.write_text("name: t\nrewite: true\nbogus: 1\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        resolve_template(str(template))
    assert sorted(str(p) for p in info.value.problems) == [
        f"{template}:2: rewite: unknown key (did you mean 'rewrite'?)",
        f"{template}:3: bogus: unknown key",  # nothing close: no guess
    ]


# ------------------------------------------------------------------------- template error once


def test_a_template_error_is_listed_once_with_how_many_prompts_it_hit(tmp_path: Path) -> None:
    with (tmp_path / "q.jsonl").open("w", encoding="utf-8") as handle:
        for i in range(1000):
            handle.write(json.dumps({"id": i, "text": "x", **({"question": "q"} if i == 500 else {})}) + "\n")
        handle.write("not json\n")
    (tmp_path / "t.j2").write_text("Q: {{ question }} {{ 1 / zero }}\n", encoding="utf-8")
    config = _config(
        tmp_path,
        "project: x\nbatch: b\nprompts: {path: q.jsonl, template: t.j2}\n"
        "providers: [{source_id: a, kind: openai, model: m}]\n",
    )
    from flows.generation.prepare import prepare_run

    with pytest.raises(InputError) as info:
        prepare_run(config, require_keys=False)
    assert len(info.value.problems) == 1001  # every record is still a problem (--skip-invalid rejects each)
    lines = info.value.render().splitlines()
    assert lines == [
        f"{tmp_path}/q.jsonl:1: template: template uses a field this record does not have ('question' is undefined) "
        f"(from {config}:3: prompts.path) [the same in 998 more record(s): lines 2, 3, 4, 5, 6, …]",
        f"{tmp_path}/q.jsonl:501: template: template uses a field this record does not have ('zero' is undefined) "
        f"(from {config}:3: prompts.path)",
        f"{tmp_path}/q.jsonl:1001: invalid JSON: Expecting value (column 1) (from {config}:3: prompts.path)",
    ]


# --------------------------------------------------------------------------- config-relative paths


def test_paths_in_a_config_are_relative_to_the_config_file_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.config import load_config
    from flows.generation.prepare import prepare_run
    from prompts.reader import iter_prompts

    project = tmp_path / "project"
    (project / "data" / "incoming").mkdir(parents=True)
    (project / "templates").mkdir()
    _prompts(project / "data" / "incoming" / "2026-01-01.jsonl", 3, question="why?")
    (project / "templates" / "q.j2").write_text("Q: {{ question }}", encoding="utf-8")
    (project / "templates" / "base.yaml").write_text("name: base\nrewrite: true\n", encoding="utf-8")
    (project / "templates" / "mine.yaml").write_text("name: mine\nextends: base.yaml\n", encoding="utf-8")  # next to it
    config = _config(
        project / "configs",
        """\
project: x
batch: b
prompts: {path: ../data/incoming/*.jsonl, template: ../templates/q.j2}
providers: [{source_id: a, kind: openai, model: m}]
annotation: {template: ../templates/mine.yaml}
output: {dir: ../out, store: ../stores/b.sqlite}
""",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # run from another directory, with the config named relative to it
    relative = Path("..") / "project" / "configs" / "run.yaml"
    prepared = prepare_run(relative, require_keys=False)
    assert prepared.prompt_count == 3 and prepared.template.name == "mine" and prepared.template.rewrite is True
    config_ = prepared.config
    assert (elsewhere / config_.prompts.file).resolve() == (
        project / "data" / "incoming" / "2026-01-01.jsonl"
    ).resolve()
    assert (elsewhere / config_.run_dir).resolve() == (project / "out" / "b").resolve()
    assert (elsewhere / config_.store_path).resolve() == (project / "stores" / "b.sqlite").resolve()
    assert [r.prompt_text for r in iter_prompts(config_.prompts)] == ["Q: why?"] * 3
    # The same config loaded from its own directory, or by absolute path, finds the same files.
    monkeypatch.chdir(project / "configs")
    assert load_config("run.yaml", require_keys=False).run_dir == Path("../out/b")
    assert load_config(config, require_keys=False).run_dir == project / "out" / "b"


def test_absolute_paths_are_kept_and_a_missing_file_says_which_directory_was_searched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.config import load_config

    _prompts(tmp_path / "prompts.jsonl", 2)
    config = _config(
        tmp_path / "configs",
        f"project: x\nbatch: b\nprompts: {{path: {tmp_path / 'prompts.jsonl'}}}\n"
        f"providers: [{{source_id: a, kind: openai, model: m}}]\noutput: {{dir: {tmp_path / 'o'}}}\n",
    )
    monkeypatch.chdir(tmp_path)
    loaded = load_config(config, require_keys=False)
    assert loaded.prompts.file == tmp_path / "prompts.jsonl" and loaded.run_dir == tmp_path / "o" / "b"

    # Written relative to the working directory, as earlier versions read it: the error says where it looked,
    # and that the file exists relative to the working directory.
    config.write_text(config.read_text().replace(str(tmp_path / "prompts.jsonl"), "prompts.jsonl"))
    assert _problems(config) == [
        f"{tmp_path}/configs/prompts.jsonl: prompt file not found (looked in {tmp_path / 'configs'}: relative paths in a config "
        f"start at the config file's directory; a file of that name exists relative to the working directory "
        f"({tmp_path / 'prompts.jsonl'}): write it relative to {tmp_path / 'configs'}, or as an absolute path) "
        f"(from {config}:3: prompts.path)"
    ]
    config.write_text(
        config.read_text()
        .replace("prompts.jsonl", "../prompts.jsonl")
        .replace("providers:", "annotation: {template: nope.yaml}\nproviders:")
    )
    [problem] = _problems(config)
    assert problem.startswith("nope.yaml: annotation template not found (shipped: ")
    assert f"as a path: looked in {tmp_path / 'configs'}: relative paths in a config start at" in problem


def test_a_store_left_where_earlier_versions_put_it_is_not_silently_abandoned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.config import load_config

    (tmp_path / "configs").mkdir()
    _prompts(tmp_path / "configs" / "p.jsonl", 2)
    config = _config(
        tmp_path / "configs",
        "project: x\nbatch: b\nprompts: {path: p.jsonl}\n"
        "providers: [{source_id: a, kind: openai, model: m}]\noutput: {dir: out}\n",
    )
    monkeypatch.chdir(tmp_path)
    assert load_config(config, require_keys=False).store_path == tmp_path / "configs/out/b/responses.sqlite"
    old = tmp_path / "out" / "b" / "responses.sqlite"  # an earlier version, run from tmp_path, put it here
    old.parent.mkdir(parents=True)
    old.write_bytes(b"")
    with pytest.raises(InputError) as info:
        load_config(config, require_keys=False)
    [problem] = [str(p) for p in info.value.problems]
    assert problem.startswith(f"{config}:5: output.dir: 'out' is relative to the config file's directory")
    assert str(old) in problem and "not paid for again" in problem
    (tmp_path / "configs" / "out" / "b").mkdir(parents=True)
    (tmp_path / "configs" / "out" / "b" / "responses.sqlite").write_bytes(b"")  # moved: both exist, the new one wins
    assert load_config(config, require_keys=False).run_dir == tmp_path / "configs/out/b"
