"""The commands that call no provider read the run as its ``run.json`` recorded it (issue 26).

``rlhf status RUN_DIR``, ``deliver``, ``harvest``, ``export-dataset`` and ``agreement`` need none of the
providers' variables (base URLs, keys) and never resolve the providers again; an input error is one clean
message and exit 2, never a traceback. A ``run.json`` written before runs recorded their config still works
for delivering and harvesting; ``status`` then says which variables it needs, and why.
"""

from __future__ import annotations

import asyncio
import copy
import glob
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, provider_entry, write_config, write_prompts

from common.errors import InputError
from flows.config import RunConfig, config_from_record, load_config
from flows.generation.manifest import MANIFEST, RESOLVED, run_config
from simulator import RunningSimulator

RLHF = str(Path(sys.executable).with_name("rlhf"))
URL_VAR, KEY_VAR = "RLHF_T_PROVIDER_URL", "RLHF_T_PROVIDER_KEY"


def rlhf(*args: str) -> subprocess.CompletedProcess[str]:
    """``rlhf`` in a shell that has none of the run's provider variables."""
    env = {k: v for k, v in os.environ.items() if k not in (URL_VAR, KEY_VAR)}
    return subprocess.run([RLHF, *args], capture_output=True, text=True, timeout=120, env=env)


# ------------------------------------------------------------------------------- the record, fast


@pytest.mark.parametrize("example", sorted(glob.glob(str(ROOT / "examples" / "*.yaml"))))
def test_a_recorded_config_reads_back_as_the_same_config(example: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_URL", "http://127.0.0.1:8800")
    config = load_config(example, require_keys=False)
    record = json.loads(json.dumps(config.recorded()))  # as run.json holds it
    again = config_from_record(record)
    assert again is not None
    assert again.config_hash() == config.config_hash()
    assert again.model_dump(mode="json", exclude={"notify"}) == config.model_dump(mode="json", exclude={"notify"})
    assert again.base_dir == config.base_dir.absolute() and again.prompts.file == config.prompts.file.absolute()
    assert again.run_dir == config.run_dir.absolute() and again.where("prompts.path") == config.where("prompts.path")


def test_the_record_leaves_out_notify_and_is_none_when_missing_or_unreadable(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "p.jsonl", 1)
    path = tmp_path / "run.yaml"
    path.write_text(
        f"project: x\nbatch: b\nprompts: {{path: {prompts}}}\nproviders: [{{source_id: a, kind: openai, model: m}}]\n"
        "notify: {webhook_url: 'https://hooks.example.com/T0KEN-in-the-url'}\n",
        encoding="utf-8",
    )
    record = load_config(path, require_keys=False).recorded()
    assert "T0KEN" not in json.dumps(record) and "notify" not in record["values"]
    assert config_from_record(None) is None
    assert config_from_record({"values": {"project": "x"}}) is None  # not a config this version reads


def test_providers_unresolved_are_left_out_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(URL_VAR, raising=False)
    prompts = write_prompts(tmp_path / "p.jsonl", 1)
    path = tmp_path / "run.yaml"
    body = (
        f"project: x\nbatch: b\nprompts: {{path: {prompts}}}\n"
        f"providers: [{{source_id: a, kind: openai, model: m, base_url: '${{{URL_VAR}}}/v1'}}]\n"
    )
    path.write_text(body, encoding="utf-8")
    with pytest.raises(InputError, match=f"providers\\[0\\].base_url: environment variable {URL_VAR} is not set"):
        load_config(path, require_keys=False)
    config = load_config(path, require_keys=False, resolve_providers=False)
    assert config.providers[0].base_url is None and config.project == "x"
    # Outside the providers an unset variable is still an error.
    path.write_text(body + "output: {dir: '${RLHF_T_NO_SUCH_DIR}'}\n", encoding="utf-8")
    with pytest.raises(InputError, match="output.dir: environment variable RLHF_T_NO_SUCH_DIR is not set"):
        load_config(path, require_keys=False, resolve_providers=False)


def test_an_old_run_json_without_a_record_says_what_it_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(URL_VAR, raising=False)
    prompts = write_prompts(tmp_path / "p.jsonl", 1)
    path = tmp_path / "run.yaml"
    path.write_text(
        f"project: x\nbatch: b\nprompts: {{path: {prompts}}}\n"
        f"providers: [{{source_id: a, kind: openai, model: m, base_url: '${{{URL_VAR}}}/v1'}}]\n",
        encoding="utf-8",
    )
    manifest = {"config": str(path), "cwd": str(tmp_path)}
    assert run_config(manifest, providers=False).project == "x"
    with pytest.raises(InputError) as info:
        run_config(manifest, where="out/b/run.json")
    assert [str(p) for p in info.value.problems][-1] == (
        "out/b/run.json: the run was made by an earlier version, which did not record its resolved config: set "
        "these variables as the run had them (a run of the batch now records them)"
    )


# ---------------------------------------------------------------------------- the commands, slow


@pytest.fixture
def run_dir(sim: RunningSimulator, tmp_path: Path, prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A finished run whose providers' base URLs and key come from variables, as in examples/demo.yaml."""
    sim.configure(mode="auto")
    providers = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o", base_url=f"${{{URL_VAR}}}/v1", api_key_env=KEY_VAR),
        provider_entry(sim, "claude", "anthropic", "claude-x", base_url=f"${{{URL_VAR}}}", api_key_env=KEY_VAR),
    ]
    template = tmp_path / "form.yaml"
    template.write_text("extends: default\nname: our form\n", encoding="utf-8")
    config = write_config(
        tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 4), annotation={"template": str(template)}
    )
    monkeypatch.setenv(URL_VAR, sim.url)
    monkeypatch.setenv(KEY_VAR, "sk-test-not-a-key")
    from flows.generation.generate import generate_tasks

    summary = asyncio.run(generate_tasks(str(config)))
    monkeypatch.delenv(URL_VAR)
    monkeypatch.delenv(KEY_VAR)
    return Path(summary["files"]["tasks"]).parent


def _annotated(run_dir: Path, out: Path) -> Path:
    """Every task of the run annotated (the first answer preferred), as a vendor returns shells."""
    lines = []
    for line in (run_dir / "tasks.jsonl").read_text(encoding="utf-8").splitlines():
        task: dict[str, Any] = copy.deepcopy(json.loads(line))
        turn = task["threads"][0]["turns"][-1]
        first = next(m["source_id"] for m in turn["messages"] if m["role"] == "assistant")
        for slot in turn["annotations"]:
            slot["value"] = {"likert_value": 2, "selected_model_id": first, "justification": "clearer"}.get(slot["key"])
        for message in turn["messages"][1:]:
            for slot in message["annotations"]:
                slot["value"] = (
                    5 if slot["type"] == "integer" else ("just_right" if slot["type"] == "category" else None)
                )
        task["status"] = "completed"
        task["metadata"]["annotation"] = {"annotator": "ann-1", "platform": "file"}
        lines.append(json.dumps(task) + "\n")
    out.write_text("".join(lines), encoding="utf-8")
    return out


@pytest.mark.slow
def test_commands_that_call_no_provider_need_none_of_its_variables(run_dir: Path, tmp_path: Path) -> None:
    recorded = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))[RESOLVED]
    assert recorded["values"]["providers"][0]["base_url"].endswith("/v1")  # the run's own, resolved

    status = rlhf("status", str(run_dir), "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert {sid: (p["answered"], p["missing"]) for sid, p in report["providers"].items()} == {
        "gpt-4o": (4, 0),
        "claude": (4, 0),
    }

    scale = rlhf("deliver", str(run_dir), "--to", "scale", "--out", str(tmp_path / "scale"))
    assert scale.returncode == 0, scale.stderr
    argilla = rlhf("deliver", str(run_dir), "--to", "argilla", "--out", str(tmp_path / "argilla"))
    assert argilla.returncode == 0, argilla.stderr
    annotated = tmp_path / "annotated.jsonl"
    harvest = rlhf(
        "harvest", "--from", "file", "--in", str(_annotated(run_dir, tmp_path / "back.jsonl")), "--run-dir",
        str(run_dir), "--out", str(annotated),
    )  # fmt: skip
    assert harvest.returncode == 0, harvest.stderr
    assert len(annotated.read_text(encoding="utf-8").splitlines()) == 4
    export = rlhf("export-dataset", str(annotated), "--format", "dpo", "--out", str(tmp_path / "ds"))
    assert export.returncode == 0, export.stderr
    assert len((tmp_path / "ds" / "dpo.jsonl").read_text(encoding="utf-8").splitlines()) == 4
    agreement = rlhf("agreement", str(annotated), "--json")
    assert agreement.returncode == 0, agreement.stderr


@pytest.mark.slow
def test_a_run_json_of_an_earlier_version_delivers_and_errors_are_clean(run_dir: Path, tmp_path: Path) -> None:
    manifest_path = run_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    del manifest[RESOLVED]  # as an earlier version wrote it
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")

    scale = rlhf("deliver", str(run_dir), "--to", "scale", "--out", str(tmp_path / "scale"))
    assert scale.returncode == 0, scale.stderr  # the providers' variables are not needed to deliver
    back = _annotated(run_dir, tmp_path / "back.jsonl")
    harvest = rlhf(
        "harvest", "--from", "file", "--in", str(back), "--run-dir", str(run_dir), "--out", str(tmp_path / "a.jsonl")
    )
    assert harvest.returncode == 0, harvest.stderr

    status = rlhf("status", str(run_dir))  # a status needs the providers: it says which variables, and why
    assert status.returncode == 2 and "Traceback" not in status.stderr
    assert f"providers[0].base_url: environment variable {URL_VAR} is not set" in status.stderr
    assert f"{run_dir / MANIFEST}: the run was made by an earlier version" in status.stderr

    # An input error on the way (the run's annotation template is gone): one clean message, exit 2.
    config = yaml.safe_load(Path(manifest["config"]).read_text(encoding="utf-8"))
    Path(config["annotation"]["template"]).unlink()
    for args in (
        ["harvest", "--from", "file", "--in", str(back), "--run-dir", str(run_dir), "--out", str(tmp_path / "b.jsonl")],
        ["deliver", str(run_dir), "--to", "scale", "--out", str(tmp_path / "scale2")],
    ):
        failed = rlhf(*args)
        assert failed.returncode == 2, failed.stderr
        assert "Traceback" not in failed.stderr and "form.yaml" in failed.stderr


@pytest.mark.slow
def test_the_recorded_run_is_read_even_when_the_config_file_changed(run_dir: Path) -> None:
    """What the run recorded is what status reads: not a config edited (or broken) since."""
    manifest = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    Path(manifest["config"]).write_text("project: [not, valid\n", encoding="utf-8")
    status = rlhf("status", str(run_dir), "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["prompts"] == 4
    assert isinstance(config_from_record(manifest[RESOLVED]), RunConfig)
