"""Secrets stay in their environment variables: never printed by ``rlhf validate`` / ``rlhf run``, never
expanded into the config.

- ``api_key_env`` takes a variable's NAME: ``api_key_env: ${OPENAI_API_KEY}`` (the key itself, once
  expanded) or a key pasted there is refused, saying what the field takes, and the value is not printed.
- A secret's variable (a provider's or judge's ``api_key_env``, a kind's default key variable,
  ``output.store_password_env``) expanded into any other value (``system_prompt: "… ${ANTHROPIC_API_KEY}"``
  would land in tasks.jsonl) is refused at its line and field, without the value.

Both the real ``rlhf validate`` and ``rlhf run`` (typer's ``CliRunner``, in this process: the run stops
before Prefect starts) are checked, and every byte they print is searched for the key.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.errors import InputError
from flows.cli.app import app
from flows.config import load_config
from flows.generation.prepare import prepare_run

OPENAI_KEY = "sk-proj-FAKEKEY-0penai-9d8c7b6a5e4f"
ANTHROPIC_KEY = "sk-ant-api03-FAKEKEY-4nthr0pic-1a2b3c"
PASTED_KEY = "sk-proj-PASTED-FAKEKEY-f00dfeed1234"

# Line numbers below are those of this text (line 1 is "project: demo").
CONFIG = """\
project: demo
batch: b1
prompts:
  path: p.jsonl
providers:
  - source_id: gpt
    kind: openai
    model: gpt-4o
    api_key_env: OPENAI_API_KEY
    system_prompt: Be brief.
  - source_id: claude
    kind: anthropic
    model: claude-3-5-sonnet
    params: {max_tokens: 64}
output:
  dir: out
"""
JUDGE = """\
judges:
  - source_id: judge
    kind: openai
    model: gpt-4o-mini
    api_key_env: JUDGE_KEY
    system_prompt: You rate answers.
"""
NAME_TAKEN = "takes the NAME of the environment variable that holds the API key of"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in ``tmp_path`` with recognisable fake keys in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("JUDGE_KEY", "sk-judge-FAKEKEY-77aa88bb")
    (tmp_path / "p.jsonl").write_text('{"id": "a", "prompt": "Why is the sky blue?"}\n', encoding="utf-8")
    return tmp_path


def _refused(config_text: str, *secrets: str) -> list[str]:
    """The problems ``rlhf validate`` and ``rlhf run`` list for this config (the same, word for word, and
    exit 2), having checked that no secret appears in anything either prints."""
    Path("cfg.yaml").write_text(config_text, encoding="utf-8")
    listed = []
    for command in (["validate", "cfg.yaml"], ["run", "cfg.yaml", "--quiet"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        printed = result.stdout + result.stderr
        for secret in (OPENAI_KEY, ANTHROPIC_KEY, PASTED_KEY, *secrets):
            assert secret not in printed and secret[:12] not in printed
        assert "Traceback" not in printed
        listed.append(result.stderr.splitlines()[1:])
    assert listed[0] == listed[1]
    with pytest.raises(InputError) as caught:
        prepare_run("cfg.yaml")
    assert [str(p) for p in caught.value.problems] == listed[0]
    assert not Path("out").exists()
    return listed[0]


def test_a_variable_expanded_into_api_key_env_is_refused_without_printing_the_key(workdir: Path) -> None:
    problems = _refused(CONFIG.replace("api_key_env: OPENAI_API_KEY", "api_key_env: ${OPENAI_API_KEY}"))

    assert problems == [
        f"cfg.yaml:9: providers[0].api_key_env: {NAME_TAKEN} providers[0]: write 'api_key_env: OPENAI_API_KEY', "
        "not '${OPENAI_API_KEY}', which puts the variable's value here (not shown)"
    ]


@pytest.mark.parametrize("pasted", [PASTED_KEY, "sk-ant-api03-PASTED key with spaces", "0123456789abcdef0123"])
def test_a_key_pasted_into_api_key_env_is_never_echoed(workdir: Path, pasted: str) -> None:
    problems = _refused(CONFIG.replace("api_key_env: OPENAI_API_KEY", f"api_key_env: {pasted}"), pasted)

    assert problems == [
        f"cfg.yaml:9: providers[0].api_key_env: {NAME_TAKEN} providers[0] (such as OPENAI_API_KEY), not the "
        "secret itself: what is given is not a variable name (letters, digits and _), and is not shown"
    ]


def test_a_key_pasted_into_a_judges_api_key_env_or_store_password_env_is_never_echoed(workdir: Path) -> None:
    text = CONFIG.replace("  dir: out\n", "  dir: out\n  store_password_env: hunter2-FAKE-pa55word!\n")
    text += JUDGE.replace("api_key_env: JUDGE_KEY", f"api_key_env: {PASTED_KEY}")

    problems = _refused(text, "hunter2-FAKE-pa55word!")

    assert problems == [
        f"cfg.yaml:22: judges[0].api_key_env: {NAME_TAKEN} judges[0] (such as OPENAI_API_KEY), not the secret "
        "itself: what is given is not a variable name (letters, digits and _), and is not shown",
        "cfg.yaml:17: output.store_password_env: takes the NAME of the environment variable that holds the response "
        "store's password (such as PGPASSWORD), not the secret itself: what is given is not a variable name "
        "(letters, digits and _), and is not shown",
    ]


def test_another_providers_key_expanded_into_a_system_prompt_is_refused(workdir: Path) -> None:
    text = CONFIG.replace("system_prompt: Be brief.", 'system_prompt: "Be brief. ${ANTHROPIC_API_KEY}"')

    problems = _refused(text)

    assert problems == [
        "cfg.yaml:10: providers[0].system_prompt: expands ${ANTHROPIC_API_KEY}, the API key variable of kind "
        "'anthropic': a secret is read from its variable where it is used, never put into the config (this value "
        "would be printed, stored and delivered with the tasks)"
    ]


def test_a_judges_key_variable_expanded_anywhere_else_is_refused(workdir: Path) -> None:
    text = CONFIG.replace("model: claude-3-5-sonnet", "model: claude-3-5-sonnet\n    system_prompt: x${JUDGE_KEY}")
    text = text.replace("project: demo", "project: demo-${JUDGE_KEY:-none}") + JUDGE

    problems = _refused(text, "sk-judge-FAKEKEY-77aa88bb")

    held = (
        "the variable of the API key of judges[0]: a secret is read from its variable where it is used, never put "
        "into the config (this value would be printed, stored and delivered with the tasks)"
    )
    assert problems == [
        f"cfg.yaml:1: project: expands ${{JUDGE_KEY}}, {held}",
        f"cfg.yaml:14: providers[1].system_prompt: expands ${{JUDGE_KEY}}, {held}",
    ]


def test_other_variables_still_expand_and_a_variable_naming_the_key_variable_is_allowed(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREETING", "Be brief.")
    monkeypatch.setenv("KEY_VARIABLE", "OPENAI_API_KEY")
    text = CONFIG.replace("system_prompt: Be brief.", 'system_prompt: "${GREETING}"').replace(
        "api_key_env: OPENAI_API_KEY", "api_key_env: ${KEY_VARIABLE}"
    )
    Path("cfg.yaml").write_text(text, encoding="utf-8")

    config = load_config("cfg.yaml")

    assert config.providers[0].system_prompt == "Be brief."
    assert config.providers[0].key_env == "OPENAI_API_KEY"
    result = CliRunner().invoke(app, ["validate", "cfg.yaml"])
    assert result.exit_code == 0, result.output
