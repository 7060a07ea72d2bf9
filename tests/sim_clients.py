"""Clients of the simulator's own APIs for its tests: the ``openai`` SDK and ``httpx`` with Anthropic's headers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from simulator import RunningSimulator

ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "test-key"}


@pytest.fixture
def client(sim: RunningSimulator) -> Iterator[openai.OpenAI]:
    """The ``openai`` SDK on the simulator (no retries of its own)."""
    with openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0, timeout=10) as sdk:
        yield sdk


@pytest.fixture
def http(sim: RunningSimulator) -> Iterator[httpx.Client]:
    """``httpx`` on the simulator with Anthropic's headers."""
    with httpx.Client(base_url=sim.url, headers=ANTHROPIC_HEADERS, trust_env=False, timeout=10) as session:
        yield session
