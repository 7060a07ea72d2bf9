"""The provider kinds' registry: every kind registered once, with a provider class, and owning its endpoint,
key variable and parameter translation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from providers.config import ProviderConfig
from providers.factory import PROVIDERS
from providers.kinds import KINDS, AnthropicKind, Kind, OpenAIKind, ProviderKind

ROOT = Path(__file__).resolve().parent.parent


def test_every_kind_has_a_provider_class_and_the_config_accepts_exactly_them() -> None:
    assert list(KINDS) == ["openai", "anthropic"]
    assert set(PROVIDERS) == set(KINDS)
    for name, provider in PROVIDERS.items():
        assert provider.kind is KINDS[name]
    assert get_args(ProviderKind) == tuple(KINDS)
    with pytest.raises(ValidationError, match="Input should be 'openai' or 'anthropic'"):
        ProviderConfig(source_id="p", kind="gemini", model="m")


@pytest.mark.parametrize(
    ("kind", "key_env", "base_url"),
    [
        ("openai", "OPENAI_API_KEY", "https://api.openai.com/v1"),
        ("anthropic", "ANTHROPIC_API_KEY", "https://api.anthropic.com"),
    ],
)
def test_the_kind_supplies_the_defaults(kind: str, key_env: str, base_url: str) -> None:
    config = ProviderConfig(source_id="p", kind=kind, model="m")
    assert config.kind_class is KINDS[kind]
    assert (config.key_env, config.effective_base_url) == (key_env, base_url)
    own = ProviderConfig(source_id="p", kind=kind, model="m", api_key_env="MY_KEY", base_url="http://h:1/v1/")
    assert (own.key_env, own.effective_base_url) == ("MY_KEY", "http://h:1/v1")


def test_each_kind_translates_its_params() -> None:
    params: dict[str, Any] = {"temperature": 0.2, "max_completion_tokens": 500, "stop": "END"}
    assert OpenAIKind.wire_params(params) == params and OpenAIKind.wire_params(params) is not params
    assert AnthropicKind.wire_params(params) == {"temperature": 0.2, "max_tokens": 500, "stop_sequences": ["END"]}
    assert params == {"temperature": 0.2, "max_completion_tokens": 500, "stop": "END"}  # not changed in place
    assert AnthropicKind.wire_params({}) == {"max_tokens": AnthropicKind.default_max_tokens}
    OpenAIKind.check_params({"max_tokens": 1, "max_completion_tokens": 2})  # OpenAI-compatible servers take both
    with pytest.raises(ValueError, match="give max_tokens or max_completion_tokens, not both"):
        AnthropicKind.check_params({"max_tokens": 1, "max_completion_tokens": 2})


def test_a_kind_is_one_class_and_a_name_is_registered_once() -> None:
    try:

        class EchoKind(Kind):
            name = "echo-test"
            default_base_url = "http://localhost:1"
            default_key_env = "ECHO_KEY"

        assert KINDS["echo-test"] is EchoKind and EchoKind.wire_params({"a": 1}) == {"a": 1}
        with pytest.raises(TypeError, match="registered twice"):

            class Again(Kind):
                name = "echo-test"
                default_base_url = "http://localhost:2"
                default_key_env = "ECHO_KEY"
    finally:
        KINDS.pop("echo-test", None)
    assert list(KINDS) == ["openai", "anthropic"]


def test_the_config_reads_the_kinds_without_loading_a_client_stack() -> None:
    code = (
        "import sys, providers.config; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'httpx', 'openai', 'prefect')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
