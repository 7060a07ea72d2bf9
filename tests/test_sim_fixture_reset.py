"""The ``sim`` fixture gives every test the simulator's defaults, whatever the test before it changed
(tests here run in file order: the first changes every setting it can, the second looks)."""

from __future__ import annotations

from simulator import RunningSimulator, SimulatorSettings
from simulator.settings import FaultRule, ScriptedAnswer

CHANGED = {
    "latency_ms": 5.0,
    "latency_jitter_ms": 1.0,
    "mode": "replay",
    "seed": 7,
    "faults": [FaultRule(kind="429", times=1)],
    "scripted": [ScriptedAnswer(text="scripted")],
    "require_api_key": True,
    "request_id_header": "none",
    "rate_limit_requests": 3,
    "rate_limit_tokens": 300,
    "rate_limit_window_s": 2.0,
    "rate_limit_enforce": True,
    "rate_limit_burst": 2,
    "rate_limit_headers": False,
    "rate_limit_header_mode": "azure",
    "rate_limit_retry_after": "ms",
    "batch_completion_s": 3.0,
    "batch_max_requests": 5,
    "batch_max_bytes": 5_000,
    "batch_expire_prompt_contains": "expire me",
    "structured_invalid_probability": 0.5,
}


def test_a_test_changes_every_setting(sim: RunningSimulator) -> None:
    assert set(CHANGED) == set(SimulatorSettings.model_fields)  # a new setting belongs here too
    changed = sim.configure(**CHANGED)
    defaults = SimulatorSettings(mode="derived")
    assert all(getattr(changed, name) != getattr(defaults, name) for name in CHANGED)


def test_the_next_test_gets_the_defaults_back(sim: RunningSimulator) -> None:
    assert sim.configure() == SimulatorSettings(mode="derived")
