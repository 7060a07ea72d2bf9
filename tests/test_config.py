"""Tests for the run config: loading, defaults, env expansion, errors as ``file:line: field: message``."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from common.errors import InputError, InputProblem
from flows.config import RunConfig, load_config
from providers.config import ANTHROPIC_DEFAULT_MAX_TOKENS, ProviderConfig

REPO = Path(__file__).resolve().parent.parent
FAKE_KEY = "sk-FAKE-7f3a9c-DO-NOT-LEAK-0123456789"

# Line numbers below are those of this text (line 1 is "project: demo").
TWO_PROVIDERS = """\
project: demo
batch: b1
prompts:
  path: prompts.jsonl
providers:
  - source_id: gpt
    kind: openai
    model: gpt-4o
    params: {temperature: 0.7, max_tokens: 256}
  - source_id: claude
    kind: anthropic
    model: claude-3-5-sonnet
    params: {temperature: 0.7}
"""


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write ``cfg.yaml`` in a fresh working directory and return its (relative) name."""
    monkeypatch.chdir(tmp_path)
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)

    def write(text: str | bytes, name: str = "cfg.yaml") -> str:
        if isinstance(text, bytes):
            (tmp_path / name).write_bytes(text)
        else:
            (tmp_path / name).write_text(text, encoding="utf-8")
        return name

    return write


def error_of(path: str, *, require_keys: bool = False) -> InputError:
    with pytest.raises(InputError) as info:
        load_config(path, require_keys=require_keys)
    return info.value


def error_text(path: str, *, require_keys: bool = False) -> str:
    return str(error_of(path, require_keys=require_keys))


# --- valid configs and defaults -------------------------------------------------------------------


def test_demo_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_URL", "http://127.0.0.1:8765")
    monkeypatch.setenv("SIM_OPENAI_KEY", "dummy-openai")
    monkeypatch.setenv("SIM_ANTHROPIC_KEY", "dummy-anthropic")
    config = load_config(REPO / "examples" / "demo.yaml")
    assert config.project == "demo-helpfulness"
    assert config.batch == "demo"
    assert config.prompts.file == REPO / "prompts" / "examples" / "alpaca_sample.jsonl"  # relative to the config
    assert config.batch_dir == REPO / "out" / "demo"
    assert [p.source_id for p in config.providers] == ["gpt-4o", "llama-3-8b", "claude-sonnet"]
    assert [p.kind for p in config.providers] == ["openai", "openai", "anthropic"]
    assert config.providers[0].base_url == "http://127.0.0.1:8765/v1"
    assert config.providers[2].base_url == "http://127.0.0.1:8765"
    assert [p.key_env for p in config.providers] == ["SIM_OPENAI_KEY", "SIM_OPENAI_KEY", "SIM_ANTHROPIC_KEY"]
    assert config.providers[0].params == {"temperature": 0.7, "max_tokens": 1024, "top_p": 1.0}
    assert config.providers[0].timeout_s == 30.0
    assert config.annotation.template == "default"
    assert config.annotation.seed == 7
    assert config.required_answers == 2
    assert config.run_dir == REPO / "out" / "demo"


def test_demo_config_needs_its_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_URL", "http://127.0.0.1:8765")
    monkeypatch.delenv("SIM_OPENAI_KEY", raising=False)
    monkeypatch.setenv("SIM_ANTHROPIC_KEY", "dummy-anthropic")
    demo = REPO / "examples" / "demo.yaml"
    key_lines = [n for n, line in enumerate(demo.read_text().splitlines(), 1) if "api_key_env: SIM_OPENAI_KEY" in line]
    assert len(key_lines) == 2
    lines = error_text(str(demo), require_keys=True).splitlines()
    assert lines == [  # both openai providers use SIM_OPENAI_KEY
        f"{demo}:{key_lines[0]}: providers[0].api_key_env: "
        "environment variable SIM_OPENAI_KEY is not set (the API key of 'gpt-4o')",
        f"{demo}:{key_lines[1]}: providers[1].api_key_env: "
        "environment variable SIM_OPENAI_KEY is not set (the API key of 'llama-3-8b')",
    ]


def test_defaults(cfg) -> None:
    config = load_config(cfg(TWO_PROVIDERS), require_keys=False)
    gpt, claude = config.providers
    assert gpt.key_env == "OPENAI_API_KEY"
    assert claude.key_env == "ANTHROPIC_API_KEY"
    assert gpt.api_key_env is None
    assert gpt.max_concurrency == 16 and claude.max_concurrency == 16
    assert gpt.timeout_s == 120.0
    assert gpt.max_retries == 5
    assert gpt.effective_base_url == "https://api.openai.com/v1"
    assert claude.effective_base_url == "https://api.anthropic.com"
    assert config.chunk_size == 1000
    assert config.min_responses is None
    assert config.prompts.format == "auto"
    assert config.prompts.template is None
    assert config.prompts.max_prompt_chars == 200_000
    assert config.annotation.template == "default" and config.annotation.seed == 0
    assert config.output.dir == "out"
    assert config.store_path == Path("out") / "b1" / "responses.sqlite"


def test_base_url_trailing_slash_stripped(cfg) -> None:
    text = TWO_PROVIDERS.replace("    model: gpt-4o\n", "    model: gpt-4o\n    base_url: ' http://localhost:9/v1/ '\n")
    config = load_config(cfg(text), require_keys=False)
    assert config.providers[0].base_url == "http://localhost:9/v1"


# --- validation errors with file, line and field ----------------------------------------------------


def test_duplicate_source_id(cfg) -> None:
    text = TWO_PROVIDERS.replace("source_id: claude", "source_id: gpt")
    err = error_of(cfg(text))
    assert str(err) == "cfg.yaml:10: providers[1].source_id: duplicate 'gpt'"
    assert err.problems == [InputProblem("cfg.yaml", 10, "duplicate 'gpt'", "providers[1].source_id")]


def test_duplicate_source_id_third_provider(cfg) -> None:
    text = TWO_PROVIDERS + "  - source_id: claude\n    kind: anthropic\n    model: other\n"
    assert error_text(cfg(text)) == "cfg.yaml:14: providers[2].source_id: duplicate 'claude'"


def test_unknown_key_in_provider(cfg) -> None:
    text = TWO_PROVIDERS.replace("    model: gpt-4o\n", "    model: gpt-4o\n    bogus: 1\n")
    assert error_text(cfg(text)) == "cfg.yaml:9: providers[0].bogus: unknown key"


def test_unknown_top_level_key(cfg) -> None:
    assert error_text(cfg(TWO_PROVIDERS + "extra_thing: yes\n")) == "cfg.yaml:14: extra_thing: unknown key"


def test_wrong_kind(cfg) -> None:
    text = TWO_PROVIDERS.replace("kind: anthropic", "kind: gemini")
    assert error_text(cfg(text)) == "cfg.yaml:11: providers[1].kind: Input should be 'openai' or 'anthropic'"


def test_unknown_http_client(cfg) -> None:
    text = TWO_PROVIDERS.replace("    model: gpt-4o\n", "    model: gpt-4o\n    http_client: requests\n")
    assert error_text(cfg(text)) == "cfg.yaml:9: providers[0].http_client: Input should be 'default' or 'aiohttp'"


def test_max_concurrency_zero(cfg) -> None:
    text = TWO_PROVIDERS.replace("    model: gpt-4o\n", "    model: gpt-4o\n    max_concurrency: 0\n")
    assert (
        error_text(cfg(text)) == "cfg.yaml:9: providers[0].max_concurrency: Input should be greater than or equal to 1"
    )


def test_wrong_kind_close_to_a_real_one_says_which(cfg) -> None:
    text = TWO_PROVIDERS.replace("kind: anthropic", "kind: antropic")
    assert error_text(cfg(text)) == (
        "cfg.yaml:11: providers[1].kind: Input should be 'openai' or 'anthropic' (did you mean 'anthropic'?)"
    )
    text = TWO_PROVIDERS + "annotation: {layout: nway}\n"
    assert error_text(cfg(text)).endswith(
        "annotation.layout: Input should be 'n_way', 'pairwise' or 'single' (did you mean 'n_way'?)"
    )


def test_missing_project(cfg) -> None:
    # A missing top-level key has no line of its own: line 1 holds another key, and naming it would mislead.
    text = TWO_PROVIDERS.replace("project: demo\n", "")
    assert error_text(cfg(text)) == "cfg.yaml: project: required, but the file has no 'project:' key"


def test_missing_prompts_and_a_missing_provider_key(cfg) -> None:
    text = TWO_PROVIDERS.replace("prompts:\n  path: prompts.jsonl\n", "").replace("    model: gpt-4o\n", "")
    assert error_text(cfg(text)) == (
        "cfg.yaml: prompts: required, but the file has no 'prompts:' key\n"
        "cfg.yaml:4: providers[0].model: required, but providers[0] has no 'model:' key"
    )


def test_batch_with_slash(cfg) -> None:
    text = TWO_PROVIDERS.replace("batch: b1", "batch: runs/b1")
    err = error_text(cfg(text))
    assert err.startswith("cfg.yaml:2: batch: String should match pattern ")


def test_several_problems_listed_together(cfg) -> None:
    text = TWO_PROVIDERS.replace("kind: anthropic", "kind: gemini").replace("batch: b1", "batch: a/b")
    lines = error_text(cfg(text)).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("cfg.yaml:2: batch: ")
    assert lines[1].startswith("cfg.yaml:11: providers[1].kind: ")


def test_invalid_yaml_reports_line(cfg) -> None:
    text = TWO_PROVIDERS.replace("    model: claude-3-5-sonnet\n", "    model: : claude\n")
    assert error_text(cfg(text)) == "cfg.yaml:12: invalid YAML: mapping values are not allowed here"


def test_yaml_tab_indent_reports_line(cfg) -> None:
    text = TWO_PROVIDERS.replace("  path: prompts.jsonl", "\tpath: prompts.jsonl")
    err = error_text(cfg(text))
    assert err.startswith("cfg.yaml:4: invalid YAML: ")


def test_file_not_found(cfg) -> None:
    assert error_text("nowhere.yaml") == "nowhere.yaml: file not found"


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", ""])
def test_top_level_not_a_mapping(cfg, text: str) -> None:
    assert error_text(cfg(text)) == "cfg.yaml:1: the config must be a YAML mapping (key: value)"


def test_not_utf8(cfg) -> None:
    data = TWO_PROVIDERS.replace("model: gpt-4o", "model: caf\udce9", 1).encode("utf-8", "surrogateescape")
    line = data[: data.index(b"\xe9")].count(b"\n") + 1
    err = error_text(cfg(data))
    assert err == f"cfg.yaml:{line}: not valid UTF-8 (invalid continuation byte)"


def test_reserved_param_in_config(cfg) -> None:
    text = TWO_PROVIDERS.replace("{temperature: 0.7, max_tokens: 256}", "{temperature: 0.7, stream: true}")
    assert (
        error_text(cfg(text))
        == "cfg.yaml:9: providers[0].params: 'stream' is set by the orchestrator and may not appear in params"
    )


def test_anthropic_both_max_token_params(cfg) -> None:
    text = TWO_PROVIDERS.replace("params: {temperature: 0.7}\n", "params: {max_tokens: 5, max_completion_tokens: 6}\n")
    assert error_text(cfg(text)) == "cfg.yaml:10: providers[1]: give max_tokens or max_completion_tokens, not both"


# --- API keys ---------------------------------------------------------------------------------------


def test_missing_api_key_reported_only_with_require_keys(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    path = cfg(TWO_PROVIDERS)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    err = error_of(path, require_keys=True)
    assert str(err) == (
        "cfg.yaml:10: providers[1].api_key_env: environment variable ANTHROPIC_API_KEY is not set "
        "(the API key of 'claude')"
    )
    config = load_config(path, require_keys=False)
    assert config.providers[1].key_env == "ANTHROPIC_API_KEY"


def test_empty_api_key_counts_as_missing(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "")
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    assert error_text(cfg(TWO_PROVIDERS), require_keys=True).startswith(
        "cfg.yaml:6: providers[0].api_key_env: environment variable OPENAI_API_KEY is not set"
    )


def test_custom_api_key_env_line(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    text = TWO_PROVIDERS.replace("    model: gpt-4o\n", "    model: gpt-4o\n    api_key_env: MY_GPT_KEY\n")
    monkeypatch.delenv("MY_GPT_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    assert error_text(cfg(text), require_keys=True) == (
        "cfg.yaml:9: providers[0].api_key_env: environment variable MY_GPT_KEY is not set (the API key of 'gpt')"
    )


def test_key_value_never_in_errors_or_hash(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    # Several problems at once: a duplicate, a missing key, a bad value elsewhere.
    text = TWO_PROVIDERS + "  - source_id: gpt\n    kind: openai\n    model: x\n"
    messages = [error_text(cfg(text), require_keys=True)]
    messages.append(error_text(cfg(TWO_PROVIDERS.replace("kind: anthropic", "kind: nope"), name="b.yaml")))
    messages.append(error_text(cfg(TWO_PROVIDERS), require_keys=True))
    assert "duplicate 'gpt'" in messages[0] and "ANTHROPIC_API_KEY" in messages[0]
    for message in messages:
        assert FAKE_KEY not in message
        assert "7f3a9c" not in message
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY + "-2")
    config = load_config(cfg(TWO_PROVIDERS))
    assert FAKE_KEY not in config.model_dump_json()
    assert FAKE_KEY not in repr(config)
    key = asyncio.run(config.providers[0].api_key())
    assert key.get_secret_value() == FAKE_KEY
    assert FAKE_KEY not in str(key) and FAKE_KEY not in repr(key)


# --- ${VAR} expansion -------------------------------------------------------------------------------


def test_env_expansion(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("BATCH_NAME", "nightly-3")
    monkeypatch.delenv("CONCURRENCY", raising=False)
    monkeypatch.delenv("SEED", raising=False)
    text = (
        TWO_PROVIDERS.replace("batch: b1", "batch: ${BATCH_NAME}").replace(
            "    model: gpt-4o\n",
            "    model: gpt-4o\n    base_url: ${SIM_URL}/v1\n    max_concurrency: ${CONCURRENCY:-4}\n",
        )
        + "annotation: {seed: '${SEED:-42}'}\n"
    )
    config = load_config(cfg(text), require_keys=False)
    assert config.batch == "nightly-3"
    assert config.providers[0].base_url == "http://127.0.0.1:9999/v1"
    assert config.providers[0].max_concurrency == 4
    assert config.annotation.seed == 42


def test_env_default_not_used_when_set(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCURRENCY", "32")
    text = TWO_PROVIDERS.replace("    model: gpt-4o\n", "    model: gpt-4o\n    max_concurrency: ${CONCURRENCY:-4}\n")
    assert load_config(cfg(text), require_keys=False).providers[0].max_concurrency == 32


def test_env_default_used_when_set_but_empty(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    # Shell / docker-compose semantics: ``${X:-d}`` is ``d`` when X is unset *or* empty.
    monkeypatch.setenv("BATCH_NAME", "")
    text = TWO_PROVIDERS.replace("batch: b1", "batch: ${BATCH_NAME:-fallback}")
    assert load_config(cfg(text), require_keys=False).batch == "fallback"


def test_env_unset_variable(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIM_URL", raising=False)
    monkeypatch.delenv("OTHER_URL", raising=False)
    text = TWO_PROVIDERS.replace("    model: gpt-4o\n", "    model: gpt-4o\n    base_url: ${SIM_URL}/v1\n").replace(
        "    model: claude-3-5-sonnet\n", "    model: claude-3-5-sonnet\n    base_url: ${OTHER_URL}\n"
    )
    err = error_of(cfg(text))
    assert str(err).splitlines() == [
        "cfg.yaml:9: providers[0].base_url: environment variable SIM_URL is not set",
        "cfg.yaml:14: providers[1].base_url: environment variable OTHER_URL is not set",
    ]


def test_env_unset_variable_top_level(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROJECT_NAME", raising=False)
    text = TWO_PROVIDERS.replace("project: demo", "project: ${PROJECT_NAME}")
    assert error_text(cfg(text)) == "cfg.yaml:1: project: environment variable PROJECT_NAME is not set"


# --- config_hash --------------------------------------------------------------------------------------


def test_config_hash_stable_and_sensitive(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "key-one")
    first = load_config(cfg(TWO_PROVIDERS)).config_hash()
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    # Same content in another file, formatted differently: same hash.
    reformatted = "# a comment\n" + TWO_PROVIDERS.replace(
        "{temperature: 0.7, max_tokens: 256}", "{max_tokens: 256, temperature: 0.7}"
    )
    assert load_config(cfg(reformatted, name="other.yaml")).config_hash() == first
    # Only the key's value changed: same hash.
    monkeypatch.setenv("ANTHROPIC_API_KEY", "key-two")
    monkeypatch.setenv("OPENAI_API_KEY", "another-value")
    assert load_config(cfg(TWO_PROVIDERS)).config_hash() == first
    # A sampling parameter changed: different hash.
    changed = TWO_PROVIDERS.replace("{temperature: 0.7, max_tokens: 256}", "{temperature: 0.8, max_tokens: 256}")
    assert load_config(cfg(changed)).config_hash() != first
    # Defaults spelled out explicitly do not change the hash.
    explicit = TWO_PROVIDERS.replace("    model: gpt-4o\n", "    model: gpt-4o\n    max_concurrency: 16\n")
    assert load_config(cfg(explicit)).config_hash() == first


# --- min_responses / required_answers --------------------------------------------------------------


def test_min_responses_more_than_providers(cfg) -> None:
    err = error_text(cfg(TWO_PROVIDERS + "min_responses: 3\n"))
    assert err == "cfg.yaml:14: min_responses: 3 answers required but only 2 are asked for per prompt"


def test_key_given_twice_is_an_error(cfg) -> None:
    text = TWO_PROVIDERS.replace("    kind: openai\n", "    kind: openai\n    kind: anthropic\n", 1)
    line = text.splitlines().index("    kind: anthropic") + 1
    assert error_text(cfg(text)) == f"cfg.yaml:{line}: key 'kind' appears more than once"


def test_min_responses_zero(cfg) -> None:
    assert error_text(cfg(TWO_PROVIDERS + "min_responses: 0\n")) == (
        "cfg.yaml:14: min_responses: Input should be greater than or equal to 1"
    )


def test_required_answers(cfg) -> None:
    assert load_config(cfg(TWO_PROVIDERS), require_keys=False).required_answers == 2
    one = TWO_PROVIDERS.split("  - source_id: claude")[0]
    assert load_config(cfg(one, name="one.yaml"), require_keys=False).required_answers == 1
    three = TWO_PROVIDERS + "  - source_id: third\n    kind: openai\n    model: m\n"
    assert load_config(cfg(three, name="three.yaml"), require_keys=False).required_answers == 2
    explicit = three + "min_responses: 3\n"
    assert load_config(cfg(explicit, name="explicit.yaml"), require_keys=False).required_answers == 3
    explicit_one = TWO_PROVIDERS + "min_responses: 1\n"
    assert load_config(cfg(explicit_one, name="e1.yaml"), require_keys=False).required_answers == 1


# --- ProviderConfig -----------------------------------------------------------------------------------


def provider(kind: str = "anthropic", **params) -> ProviderConfig:
    return ProviderConfig(source_id="p", kind=kind, model="model-x", params=params)


def test_anthropic_wire_params() -> None:
    p = provider(max_completion_tokens=500, stop="END", temperature=0.2)
    assert p.wire_params() == {"max_tokens": 500, "stop_sequences": ["END"], "temperature": 0.2}
    assert p.params == {"max_completion_tokens": 500, "stop": "END", "temperature": 0.2}  # not mutated


def test_anthropic_wire_params_defaults_max_tokens() -> None:
    assert ANTHROPIC_DEFAULT_MAX_TOKENS == 1024
    assert provider().wire_params() == {"max_tokens": 1024}
    assert provider(max_tokens=77).wire_params() == {"max_tokens": 77}
    assert provider(stop=["a", "b"]).wire_params() == {"max_tokens": 1024, "stop_sequences": ["a", "b"]}


def test_openai_wire_params_unchanged() -> None:
    p = provider("openai", max_completion_tokens=500, stop="END", temperature=0.2)
    assert p.wire_params() == {"max_completion_tokens": 500, "stop": "END", "temperature": 0.2}
    assert provider("openai").wire_params() == {}


def test_shell_model_parameters_keeps_only_allowed_keys() -> None:
    p = provider(
        "openai", temperature=0.5, top_p=0.9, top_k=40, max_tokens=256, stop="x", frequency_penalty=0.1, seed=3
    )
    assert p.shell_model_parameters() == {
        "model": "model-x",
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "max_completion_tokens": 256,
    }
    assert provider("openai", max_completion_tokens=100, max_tokens=50).shell_model_parameters() == {
        "model": "model-x",
        "max_completion_tokens": 100,
    }
    assert provider("openai", presence_penalty=1).shell_model_parameters() == {"model": "model-x"}


def test_shell_model_parameters_anthropic() -> None:
    assert provider(temperature=0).shell_model_parameters() == {
        "model": "model-x",
        "temperature": 0,
        "max_completion_tokens": 1024,
    }
    assert provider(max_completion_tokens="300").shell_model_parameters()["max_completion_tokens"] == 300


@pytest.mark.parametrize("reserved", ["model", "messages", "stream", "n"])
def test_reserved_params_rejected(reserved: str) -> None:
    with pytest.raises(ValidationError) as info:
        provider("openai", **{reserved: 1})
    assert f"'{reserved}' is set by the orchestrator and may not appear in params" in str(info.value)


def test_run_config_model_direct() -> None:
    # The pydantic model itself enforces the same rules as load_config.
    with pytest.raises(ValidationError):
        RunConfig.model_validate({"project": "p", "batch": "b", "prompts": {"path": "x"}, "providers": []})


# --- numbers: finite, never booleans; text: valid Unicode ------------------------------------------------


def test_numbers_from_variables_are_checked_too(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMEOUT", "inf")
    monkeypatch.setenv("RETRIES", "2")
    text = TWO_PROVIDERS.replace(
        "    model: gpt-4o\n", "    model: gpt-4o\n    timeout_s: ${TIMEOUT}\n    max_retries: ${RETRIES}\n"
    )
    assert error_text(cfg(text)) == "cfg.yaml:9: providers[0].timeout_s: Input should be a finite number"
    monkeypatch.setenv("TIMEOUT", "30")
    provider = load_config(cfg(text), require_keys=False).providers[0]
    assert (provider.timeout_s, provider.max_retries) == (30.0, 2)


def test_params_keep_their_values_and_booleans_where_they_belong() -> None:
    p = provider("openai", temperature=0, top_p=1, logprobs=True, stop=["x"], logit_bias={"1": -100})
    assert p.params == {"temperature": 0, "top_p": 1, "logprobs": True, "stop": ["x"], "logit_bias": {"1": -100}}
    assert type(p.params["temperature"]) is int  # sent as written: the request fingerprint stays the same
    with pytest.raises(ValidationError, match=r"params\.seed\n  Input should be a number, not true/false"):
        provider("openai", seed=True)
    with pytest.raises(ValidationError, match=r"params\.stop\n  Input should be a finite number"):
        provider("openai", stop=[float("nan")])


def test_undecodable_variable_is_an_error_at_its_field(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL", "gpt-\udcff")  # the byte 0xff in a variable, as Python decodes the environment
    text = TWO_PROVIDERS.replace("model: gpt-4o", "model: ${MODEL}")
    assert (
        error_text(cfg(text))
        == "cfg.yaml:8: providers[0].model: not valid Unicode: lone surrogate U+DCFF at character 5"
    )


def test_annotation_template_file_problems(tmp_path: Path) -> None:
    from task_builder.template import resolve_template

    bad = tmp_path / "t.yaml"
    bad.write_bytes(b"name: t\ntitle: caf\xe9\n")
    with pytest.raises(InputError, match=rf"^{re.escape(str(bad))}:2: not valid UTF-8 \(invalid continuation byte\)$"):
        resolve_template(str(bad))
    bad.write_text('name: t\ntitle: "\\ud800"\nbogus: 1\n')
    with pytest.raises(
        InputError, match=rf"^{re.escape(str(bad))}:2: title: not valid Unicode: lone surrogate U\+D800"
    ):
        resolve_template(str(bad))
    bad.write_text("name: t\nbogus: 1\nturn: {likert: {values: [1, false]}}\n")
    with pytest.raises(InputError) as info:
        resolve_template(str(bad))
    assert sorted(str(info.value).splitlines()) == [
        f"{bad}:2: bogus: unknown key",
        f"{bad}:3: turn.likert.values[1]: Input should be a number, not true/false",
    ]
