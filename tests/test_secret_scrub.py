"""No run of 8 or more characters of an API key survives in any error text, even when the provider echoes it.

Real services quote keys back: OpenAI's "Incorrect API key provided: sk-proj-****abcd", gateways the
first characters. The simulator's ``echo_key`` fault does the same (whole, first or last characters);
the calls run on both kinds and both exchanges, and once end to end through ``rlhf run``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    FAKE_ANTHROPIC_KEY,
    FAKE_OPENAI_KEY,
    provider_config,
    provider_entry,
    write_config,
    write_prompts,
)

from common.secrets import SECRET_WINDOW, scrub
from providers.errors import ProviderError
from providers.factory import open_provider
from providers.result import CallResult
from simulator import FaultRule, RunningSimulator

PROMPT = [{"role": "user", "content": "Name three primary colours."}]
KINDS = ["openai", "anthropic"]
EXCHANGES = ["default", "aiohttp"]
ECHOES = [("full", 12), ("prefix", 12), ("suffix", 8)]  # (echo, echo_chars): at least 8 characters leak
KEYS = {"openai": FAKE_OPENAI_KEY, "anthropic": FAKE_ANTHROPIC_KEY}


def leaks(text: str, secret: str) -> list[str]:
    """Every ``SECRET_WINDOW``-character run of ``secret`` that appears in ``text``."""
    windows = (secret[i : i + SECRET_WINDOW] for i in range(len(secret) - SECRET_WINDOW + 1))
    return [window for window in windows if window in text]


# ----------------------------------------------------------------------------------- scrub itself
KEY = "sk-proj-Zq8XyW4vT2uR9sP1oN6m"


def test_the_whole_key_and_every_run_of_8_of_its_characters_are_hidden() -> None:
    assert scrub(f"key {KEY} rejected", (KEY,)) == "key *** rejected"
    for start in range(len(KEY) - SECRET_WINDOW + 1):
        for end in range(start + SECRET_WINDOW, len(KEY) + 1):
            assert scrub(f"got {KEY[start:end]}.", (KEY,)) == "got ***.", (start, end)


def test_runs_of_7_characters_are_kept() -> None:
    text = f"Incorrect API key provided: {KEY[:7]}****************{KEY[-4:]}."
    assert scrub(text, (KEY,)) == text


def test_a_key_at_the_start_or_end_of_the_text() -> None:
    assert scrub(KEY, (KEY,)) == "***"
    assert scrub(f"{KEY[:10]} is not valid", (KEY,)) == "*** is not valid"
    assert scrub(f"received {KEY[-9:]}", (KEY,)) == "received ***"


def test_overlapping_and_adjacent_runs_become_one_mask() -> None:
    # Two fragments that overlap in the key, and two that are disjoint in the key but adjacent in the text.
    for text in (KEY[2:14] + KEY[9:20], KEY[:8] + KEY[-8:], KEY[3:12] * 3):
        scrubbed = scrub(f"<{text}>", (KEY,))
        assert scrubbed == "<***>" and not leaks(scrubbed, KEY)


def test_several_secrets_are_all_hidden() -> None:
    other = "another-secret-token-42"
    text = f"a={KEY[4:16]} b={other} c={other[-8:]} d={KEY}"
    assert scrub(text, (KEY, other)) == "a=*** b=*** c=*** d=***"


def test_a_key_shorter_than_8_characters_is_hidden_whole() -> None:
    short = "k3y-abc"
    assert scrub(f"{short} then {short}!", (short,)) == "*** then ***!"
    assert scrub("k3y-ab and 3y-abc stay", (short,)) == "k3y-ab and 3y-abc stay"
    assert scrub("nothing", ("",)) == "nothing"


def test_the_text_is_capped_after_scrubbing() -> None:
    scrubbed = scrub("x" * 490 + KEY + "y" * 100, (KEY,))
    assert scrubbed == "x" * 490 + "***" + "y" * 7 + "…" and not leaks(scrubbed, KEY)


# ------------------------------------------------------------------ against the simulator's echo
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("echo", "chars"), ECHOES)
def test_the_simulator_really_echoes_the_key(sim: RunningSimulator, kind: str, echo: str, chars: int) -> None:
    sim.configure(faults=[FaultRule(kind="echo_key", echo=echo, echo_chars=chars)])
    key = KEYS[kind]
    if kind == "openai":
        path, headers = "/v1/chat/completions", {"Authorization": f"Bearer {key}"}
    else:
        path, headers = "/v1/messages", {"x-api-key": key, "anthropic-version": "2023-06-01"}
    body = {"model": "m", "messages": PROMPT, "max_tokens": 10}
    response = httpx.post(sim.url + path, json=body, headers=headers, trust_env=False)
    assert response.status_code == 401
    shown = {"full": key, "prefix": key[:chars], "suffix": key[-chars:]}[echo]
    assert shown in response.json()["error"]["message"] and len(leaks(response.text, key)) >= 1
    assert sim.stats()["faults_injected"] == {"echo_key": 1}


def _send(config: Any) -> tuple[CallResult, ProviderError]:
    """One call through ``Provider.call``, and one exchange's raised error for the same request."""

    async def go() -> tuple[CallResult, ProviderError]:
        provider = await open_provider(config)
        try:
            result = await provider.call(PROMPT, None)
            with pytest.raises(ProviderError) as raised:
                await provider._send(PROMPT, None)
            return result, raised.value
        finally:
            await provider.aclose()

    return asyncio.run(go())


def _chain(exc: BaseException | None) -> list[BaseException]:
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("http_client", EXCHANGES)
@pytest.mark.parametrize(("echo", "chars"), ECHOES)
def test_an_echoed_key_never_reaches_an_error(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str, http_client: str, echo: str, chars: int
) -> None:
    sim.configure(faults=[FaultRule(kind="echo_key", echo=echo, echo_chars=chars)])
    result, error = _send(provider_config(sim, kind, http_client=http_client))
    assert not result.ok and result.error_type == "http_401" and result.attempts == 1
    assert sim.stats()["faults_injected"] == {"echo_key": 2}
    assert result.error and result.error.startswith("HTTP 401: ")
    assert ("Incorrect API key provided: " if kind == "openai" else "invalid x-api-key: ") in result.error
    texts = [repr(result.to_dict())]
    texts += [text for exc in _chain(error) for text in (str(exc), repr(exc), *map(str, exc.args))]
    for key in KEYS.values():
        for text in texts:
            assert not leaks(text, key), text


# ------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_an_echoed_key_never_reaches_the_output_the_store_or_the_console(
    sim: RunningSimulator, fake_keys: dict[str, str], tmp_path: Path, prefect_api: str
) -> None:
    # One provider per kind and exchange, each echoing its key its own way. A 400 echo (a gateway
    # refusing a key that way) is kept in the store as the prompt's final error; a 401 is not.
    cases = [  # (kind, http_client, echo, echo_chars, echo_status)
        ("openai", "default", "full", 12, "401"),
        ("openai", "aiohttp", "prefix", 12, "400"),
        ("anthropic", "default", "suffix", 8, "400"),
        ("anthropic", "aiohttp", "prefix", 16, "401"),
    ]
    providers, rules = [], []
    for kind, http_client, echo, chars, status in cases:
        model = f"{kind}-{http_client}-{echo}"
        providers.append(provider_entry(sim, model, kind, model, http_client=http_client))
        rules.append(FaultRule(kind="echo_key", model=model, echo=echo, echo_chars=chars, echo_status=status))
    sim.configure(faults=rules)
    config = write_config(tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 3))
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    rlhf = str(Path(sys.executable).with_name("rlhf"))
    run = subprocess.run([rlhf, "run", str(config)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 3, run.stderr  # every call failed, the run says so
    assert sim.stats()["faults_injected"] == {"echo_key": 12}
    blobs = {"stdout": run.stdout, "stderr": run.stderr}
    for path in (tmp_path / "out").rglob("*"):  # every file's bytes, the SQLite store's included
        if path.is_file():
            blobs[str(path)] = path.read_bytes().decode("utf-8", "replace")  # a key's ASCII survives this
    echoed = [name for name, blob in blobs.items() if "Incorrect API key provided: " in blob]
    assert any(".sqlite" in name for name in echoed), "the store holds no echo: the check would prove nothing"
    for name, blob in blobs.items():
        for key in KEYS.values():
            assert not leaks(blob, key), f"{name} leaks {leaks(blob, key)}"
