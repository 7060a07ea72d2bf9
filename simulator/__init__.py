"""Provider simulator: a local HTTP server speaking the OpenAI Chat Completions and Anthropic
Messages wire formats, with deterministic or replayed (AlpacaEval) answers, configurable
latency and fault injection, and a control API (``/_sim/...``) for statistics.

Use :class:`RunningSimulator` (in-process, background thread) or
:func:`start_simulator_process` (subprocess) in tests and benchmarks, :func:`serve` to run it.
"""

from simulator.answers import answer_marker
from simulator.harness import (
    RunningSimulator,
    SimulatorProcess,
    start_simulator_process,
)
from simulator.server import build_app, serve
from simulator.settings import FaultRule, ScriptedAnswer, SimulatorSettings

__all__ = [
    "FaultRule",
    "RunningSimulator",
    "ScriptedAnswer",
    "SimulatorProcess",
    "SimulatorSettings",
    "answer_marker",
    "build_app",
    "serve",
    "start_simulator_process",
]
