"""Both provider kinds over real loopback HTTP: answers, retries, Retry-After, no-retry codes, faults.

Every test runs each kind on both of its HTTP exchanges (``http_client``): the default client stack
(the ``openai`` SDK, or ``httpx`` for Anthropic) and the lean aiohttp one; both must behave alike.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from conftest import (
    FAKE_ANTHROPIC_KEY,
    FAKE_OPENAI_KEY,
    closed_port_url,
    provider_config,
)

from providers.config import ProviderConfig
from providers.factory import open_provider
from providers.result import CallResult
from simulator import FaultRule, RunningSimulator, answer_marker

PROMPT = [{"role": "user", "content": "Name three primary colours."}]


def _call(config: ProviderConfig, messages: list[dict[str, Any]] = PROMPT, system: str | None = None) -> CallResult:
    async def go() -> CallResult:
        provider = await open_provider(config)
        try:
            return await provider.call(messages, system)
        finally:
            await provider.aclose()

    return asyncio.run(go())


KINDS = ["openai", "anthropic"]
EXCHANGES = ["default", "aiohttp"]


@pytest.fixture(params=EXCHANGES)
def http_client(request: pytest.FixtureRequest) -> str:
    """The provider's HTTP exchange under test."""
    return request.param


def _config(sim: RunningSimulator, kind: str, http_client: str, **extra: Any) -> ProviderConfig:
    return provider_config(sim, kind, http_client=http_client, **extra)


@pytest.mark.parametrize("kind", KINDS)
def test_answer_is_normalised(sim: RunningSimulator, fake_keys: dict[str, str], kind: str, http_client: str) -> None:
    result = _call(_config(sim, kind, http_client))
    assert result.ok, result.error
    assert answer_marker("model-under-test", PROMPT[-1]["content"]) in (result.text or "")
    assert result.model == "model-under-test"
    assert result.finish_reason == "stop"  # normalised; the vendor's own value next to it
    assert result.vendor_finish_reason == ("stop" if kind == "openai" else "end_turn")
    assert result.input_tokens and result.input_tokens > 0 and result.output_tokens and result.output_tokens > 0
    assert result.request_id
    assert result.attempts == 1 and result.latency_ms > 0 and result.created_at.endswith("Z")


@pytest.mark.parametrize("kind", KINDS)
def test_system_prompt_and_history_reach_the_provider(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str, http_client: str
) -> None:
    history = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ]
    result = _call(_config(sim, kind, http_client), history, system="Be brief.")
    assert result.ok
    assert answer_marker("model-under-test", "Tell me a joke.") in (result.text or "")
    assert sim.stats()["requests_total"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_429_is_retried_after_the_servers_retry_after(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str, http_client: str
) -> None:
    sim.configure(faults=[FaultRule(kind="429", times=1, retry_after_s=1.0)])
    started = time.perf_counter()
    result = _call(_config(sim, kind, http_client))
    elapsed = time.perf_counter() - started
    assert result.ok and result.attempts == 2
    # Backoff alone would have waited ~0.01 s: the 1 s is the server's Retry-After being honoured.
    assert elapsed >= 0.95
    assert sim.stats()["by_model"]["model-under-test"]["requests"] == 2


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", ["500", "503"])
def test_server_errors_are_retried(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str, http_client: str, status: str
) -> None:
    sim.configure(faults=[FaultRule(kind=status, times=2)])
    result = _call(_config(sim, kind, http_client))
    assert result.ok and result.attempts == 3


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", ["401", "400"])
def test_client_errors_are_never_retried(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str, http_client: str, status: str
) -> None:
    sim.configure(faults=[FaultRule(kind=status)])
    result = _call(_config(sim, kind, http_client))
    assert not result.ok
    assert result.error_type == f"http_{status}" and result.status_code == int(status)
    assert result.attempts == 1
    assert sim.stats()["requests_total"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_retries_exhausted_leave_the_last_error(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str, http_client: str
) -> None:
    sim.configure(faults=[FaultRule(kind="503")])
    result = _call(_config(sim, kind, http_client, max_retries=2))
    assert not result.ok and result.error_type == "http_503" and result.attempts == 3
    assert sim.stats()["requests_total"] == 3


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("fault", "error_type"),
    [("drop", "connection"), ("malformed", "malformed"), ("no_choices", "malformed")],
)
def test_broken_responses_are_errors_and_retried(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str, http_client: str, fault: str, error_type: str
) -> None:
    if fault == "no_choices" and kind == "anthropic":
        pytest.skip("a message with no content blocks is an (empty) answer: test_empty_answers_are_billed_answers")
    sim.configure(faults=[FaultRule(kind=fault, times=1)])
    assert _call(_config(sim, kind, http_client)).attempts == 2
    sim.configure(faults=[FaultRule(kind=fault)])
    failed = _call(_config(sim, kind, http_client, max_retries=1))
    assert not failed.ok and failed.error_type == error_type and failed.attempts == 2


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", ["empty", "no_choices"])
def test_empty_answers_are_billed_answers_not_retried(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str, http_client: str, fault: str
) -> None:
    """A valid body with no text (empty content; an Anthropic message with no blocks) was paid for: it is an
    answer with empty text, made once, never asked again and never the breaker's concern."""
    if fault == "no_choices" and kind == "openai":
        pytest.skip("a completion without choices is no answer: test_broken_responses_are_errors_and_retried")
    sim.configure(faults=[FaultRule(kind=fault)])
    result = _call(_config(sim, kind, http_client, max_retries=3))
    assert result.ok and result.text == "" and result.attempts == 1
    assert sim.stats()["requests_total"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_hanging_server_times_out(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str, http_client: str
) -> None:
    sim.configure(faults=[FaultRule(kind="hang", hang_s=30)])
    started = time.perf_counter()
    result = _call(_config(sim, kind, http_client, timeout_s=0.3, max_retries=1))
    assert not result.ok and result.error_type == "timeout" and result.attempts == 2
    assert time.perf_counter() - started < 15  # two 0.3 s timeouts, not the 30 s hang


@pytest.mark.parametrize("kind", KINDS)
def test_unreachable_provider_is_a_connection_error(fake_keys: dict[str, str], kind: str, http_client: str) -> None:
    base = closed_port_url() + ("/v1" if kind == "openai" else "")
    config = ProviderConfig(
        source_id="down",
        kind=kind,
        model="m",
        base_url=base,
        max_retries=1,
        backoff_initial_s=0.01,
        http_client=http_client,
    )
    result = _call(config)
    assert not result.ok and result.error_type == "connection" and result.attempts == 2


@pytest.mark.parametrize("kind", KINDS)
def test_concurrency_limit_is_respected(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str, http_client: str
) -> None:
    sim.configure(latency_ms=30)
    config = _config(sim, kind, http_client, max_concurrency=4)

    async def go() -> list[CallResult]:
        provider = await open_provider(config)
        try:
            return await asyncio.gather(
                *(provider.call([{"role": "user", "content": f"q{i}"}], None) for i in range(24))
            )
        finally:
            await provider.aclose()

    results = asyncio.run(go())
    assert all(r.ok for r in results)
    assert sim.stats()["by_model"]["model-under-test"]["max_in_flight"] == 4


@pytest.mark.parametrize("kind", KINDS)
def test_api_key_never_appears_in_errors(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str, http_client: str
) -> None:
    sim.configure(faults=[FaultRule(kind="401")])
    result = _call(_config(sim, kind, http_client))
    text = repr(result.to_dict())
    assert FAKE_OPENAI_KEY not in text and FAKE_ANTHROPIC_KEY not in text


@pytest.mark.parametrize("kind", KINDS)
def test_both_exchanges_send_the_same_request(sim: RunningSimulator, fake_keys: dict[str, str], kind: str) -> None:
    params = {"temperature": 0.3, "max_tokens": 300, "top_p": 0.9, "stop": ["\n\n"]}
    history = [
        {"role": "user", "content": "Hi ✓"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Why?"},
    ]
    for http_client in EXCHANGES:
        assert _call(_config(sim, kind, http_client, params=params), history, system="Be brief.").ok
    fingerprints = sim.stats()["by_fingerprint"]
    assert list(fingerprints.values()) == [{"requests": 2, "ok": 2}], "the two exchanges sent different bodies"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", ["429", "401", "400", "503", "drop", "malformed", "no_choices"])
def test_both_exchanges_report_a_fault_alike(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str, fault: str
) -> None:
    if fault == "no_choices" and kind == "anthropic":
        pytest.skip("a message with no content blocks is an (empty) answer, not a fault")
    sim.configure(faults=[FaultRule(kind=fault, retry_after_s=0.01)])
    # A 429 is retried until the provider has made no progress for max_rate_limited_s, however many attempts.
    results = [
        _call(_config(sim, kind, http_client, max_retries=0, max_rate_limited_s=0.3)) for http_client in EXCHANGES
    ]
    default, lean = results
    assert not default.ok and not lean.ok
    assert (lean.error_type, lean.status_code) == (default.error_type, default.status_code)
    assert lean.attempts == default.attempts or fault == "429"
    assert lean.error == default.error


@pytest.mark.parametrize("kind", KINDS)
def test_the_aiohttp_client_honours_the_proxy_environment(
    sim: RunningSimulator, fake_keys: dict[str, str], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_proxy = closed_port_url()  # a proxy address where nothing listens
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    through_proxy = _call(_config(sim, kind, "aiohttp", max_retries=0))
    assert not through_proxy.ok and through_proxy.error_type == "connection"
    assert sim.stats()["requests_total"] == 0  # it went to the proxy, not to the simulator
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert _call(_config(sim, kind, "aiohttp", max_retries=0)).ok


def test_the_aiohttp_client_verifies_tls_against_the_ca_bundle_httpx_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    import certifi

    from providers.http import tls_context

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    tls_context.cache_clear()
    try:
        context = tls_context()
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        bundle = ssl.create_default_context(cafile=certifi.where())
        assert context.cert_store_stats()["x509_ca"] == bundle.cert_store_stats()["x509_ca"] > 0
    finally:
        tls_context.cache_clear()
