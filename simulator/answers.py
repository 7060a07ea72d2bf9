"""Answer text for the simulator: replayed AlpacaEval outputs or deterministic derived text."""

from __future__ import annotations

import hashlib
import json
import random
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from simulator.settings import AnswerMode, ScriptedAnswer

PROMPTS_PATH: Path = Path(__file__).resolve().parent.parent / "prompts/examples/alpaca_eval.jsonl"
REPLAY_DIR: Path = Path(__file__).resolve().parent / "data" / "alpaca_eval"
REPLAY_MODELS: tuple[str, ...] = (
    "claude-3-5-sonnet-20240620",
    "gpt-4o-2024-05-13",
    "Meta-Llama-3-8B-Instruct",
)

CHARS_PER_TOKEN = 4
MIN_WORDS = 30
MAX_WORDS = 400

_FILLER_SENTENCES: tuple[str, ...] = (
    "This is a simulated answer produced for testing purposes.",
    "The content is deterministic, so the same request always yields the same text.",
    "A real model would address the question in far more specific detail.",
    "Here the goal is only to exercise the surrounding pipeline end to end.",
    "Consider the main factors involved before drawing any firm conclusions.",
    "There are several perspectives worth weighing, each with its own trade-offs.",
    "In practice, the best approach depends on the context and constraints at hand.",
    "A short example often helps to make an abstract idea concrete.",
    "It is worth double-checking assumptions against reliable sources.",
    "Breaking the problem into smaller steps usually makes it easier to solve.",
    "Clear structure and plain language make an explanation easier to follow.",
    "Edge cases deserve attention, since they are where mistakes tend to hide.",
    "Summarising the key points at the end can reinforce understanding.",
    "Different readers may prefer different levels of depth and formality.",
    "When in doubt, start simple and refine the answer iteratively.",
    "Evidence and reasoning should support every recommendation made here.",
)


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer text plus whether it was cut short by ``max_tokens``.

    ``tool_input``: the answer is a call of the request's forced Anthropic tool (structured output, see
    :mod:`simulator.structured`) with this input; ``text`` is then its JSON, for the token count.
    """

    text: str
    truncated: bool
    tool_input: dict[str, Any] | None = None


def approx_tokens(text: str) -> int:
    """Approximate token count of ``text`` (about 4 characters per token, at least 1)."""
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def answer_marker(model: str, prompt_text: str) -> str:
    """Return the marker a derived answer starts with: ``[sim:<model>:<sha256(prompt)[:12]>]``."""
    return f"[sim:{model}:{hashlib.sha256(prompt_text.encode()).hexdigest()[:12]}]"


@lru_cache(maxsize=8192)
def derived_text(model: str, prompt_text: str) -> str:
    """Deterministic answer text for (model, prompt): the marker followed by filler sentences.

    The length (roughly 30-400 words) varies with a hash of the model and the prompt.
    """
    seed = int.from_bytes(hashlib.sha256(f"{model}\x00{prompt_text}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    target_words = MIN_WORDS + seed % (MAX_WORDS - MIN_WORDS + 1)
    parts = [answer_marker(model, prompt_text)]
    words = 1
    while words < target_words:
        sentence = rng.choice(_FILLER_SENTENCES)
        parts.append(sentence)
        words += sentence.count(" ") + 1
    return " ".join(parts)


class _ReplayData:
    """Lazily loaded AlpacaEval prompts and per-model outputs (loaded once, thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prompt_ids: dict[str, str] | None = None
        self._stripped_ids: dict[str, str] = {}
        self._outputs: dict[str, dict[str, str]] = {}
        self._sorted_ids: dict[str, list[str]] = {}

    def prompt_id(self, prompt_text: str) -> str | None:
        """Return the AlpacaEval id of ``prompt_text`` (exact, else whitespace-stripped match)."""
        if self._prompt_ids is None:
            self._load_prompts()
        assert self._prompt_ids is not None
        found = self._prompt_ids.get(prompt_text)
        if found is None:
            found = self._stripped_ids.get(prompt_text.strip())
        return found

    def output(self, replay_model: str, prompt_id: str) -> str | None:
        """Return ``replay_model``'s recorded output for ``prompt_id``."""
        outputs = self._outputs.get(replay_model)
        if outputs is None:
            outputs = self._load_outputs(replay_model)
        return outputs.get(prompt_id)

    def output_ids(self, replay_model: str) -> list[str]:
        """The prompt ids ``replay_model`` has recorded answers for, sorted."""
        if replay_model not in self._sorted_ids:
            outputs = self._outputs.get(replay_model)
            if outputs is None:
                outputs = self._load_outputs(replay_model)
            self._sorted_ids[replay_model] = sorted(outputs)
        return self._sorted_ids[replay_model]

    def _load_prompts(self) -> None:
        with self._lock:
            if self._prompt_ids is not None:
                return
            ids: dict[str, str] = {}
            stripped: dict[str, str] = {}
            if PROMPTS_PATH.is_file():
                with PROMPTS_PATH.open(encoding="utf-8") as fh:
                    for line in fh:
                        if line.strip():
                            row = json.loads(line)
                            ids.setdefault(row["prompt"], row["id"])
                            stripped.setdefault(row["prompt"].strip(), row["id"])
            self._stripped_ids = stripped
            self._prompt_ids = ids

    def _load_outputs(self, replay_model: str) -> dict[str, str]:
        with self._lock:
            if replay_model in self._outputs:
                return self._outputs[replay_model]
            outputs: dict[str, str] = {}
            path = REPLAY_DIR / f"{replay_model}.jsonl"
            if path.is_file():
                with path.open(encoding="utf-8") as fh:
                    for line in fh:
                        if line.strip():
                            row = json.loads(line)
                            outputs[row["id"]] = row["output"]
            self._outputs[replay_model] = outputs
            return outputs


_REPLAY = _ReplayData()


@lru_cache(maxsize=1024)
def replay_model_for(model: str) -> str:
    """Map a requested model name to the AlpacaEval output file it replays."""
    lowered = model.lower()
    if "gpt" in lowered:
        return "gpt-4o-2024-05-13"
    if "claude" in lowered:
        return "claude-3-5-sonnet-20240620"
    if "llama" in lowered:
        return "Meta-Llama-3-8B-Instruct"
    digest = hashlib.sha256(model.encode()).digest()
    return REPLAY_MODELS[digest[0] % len(REPLAY_MODELS)]


def replay_text(model: str, prompt_text: str) -> str | None:
    """Recorded AlpacaEval output for a known prompt, or None when the prompt is unknown."""
    prompt_id = _REPLAY.prompt_id(prompt_text)
    if prompt_id is None:
        return None
    return _REPLAY.output(replay_model_for(model), prompt_id)


def stand_in_text(model: str, prompt_text: str) -> str | None:
    """For a prompt AlpacaEval does not have: one of the model's recorded answers, chosen by a hash of
    the prompt (real prose without a marker, so what a trial run shows reads like model output; it
    answers another question). None when no recorded answers are installed."""
    replay_model = replay_model_for(model)
    ids = _REPLAY.output_ids(replay_model)
    if not ids:
        return None
    digest = int.from_bytes(hashlib.sha256(f"{model}\x00{prompt_text}".encode()).digest()[:8], "big")
    return _REPLAY.output(replay_model, ids[digest % len(ids)])


def truncate(text: str, max_tokens: int | None) -> Answer:
    """Cut ``text`` to about ``max_tokens`` tokens (4 chars each); flag whether it was cut."""
    if max_tokens is None:
        return Answer(text, False)
    limit = max(0, max_tokens) * CHARS_PER_TOKEN
    if len(text) <= limit:
        return Answer(text, False)
    return Answer(text[:limit], True)


@lru_cache(maxsize=16384)
def compose_answer(model: str, prompt_text: str, max_tokens: int | None, mode: AnswerMode) -> Answer:
    """Answer for a request, truncated to ``max_tokens``.

    ``auto``/``replay``: the model's recorded AlpacaEval output for a known prompt, else a stand-in
    recorded answer (:func:`stand_in_text`), so answers read like real ones. ``derived`` (marker mode,
    for tests that must prove which model answered which prompt): :func:`derived_text`.
    """
    text: str | None = None
    if mode != "derived":
        text = replay_text(model, prompt_text) or stand_in_text(model, prompt_text)
    if text is None:
        text = derived_text(model, prompt_text)
    return truncate(text, max_tokens)


def scripted_answer(rules: list[ScriptedAnswer], model: str, prompt_text: str) -> Answer | None:
    """The first scripted answer whose model and prompt filter match the request, if any."""
    for rule in rules:
        if rule.model is not None and rule.model != model:
            continue
        if rule.prompt_contains is not None and rule.prompt_contains not in prompt_text:
            continue
        return Answer(rule.text, rule.truncated)
    return None
