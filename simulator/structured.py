"""Structured output (judge models): a value conforming to a request's JSON Schema, or a realistic invalid one.

A request asks for structured output with OpenAI's ``response_format: {"type": "json_schema", ...}`` or
with an Anthropic tool the model is forced to call (see :mod:`simulator.wire`). The simulator answers
with :func:`conforming_value`: deterministic in (model, prompt text, schema), so the same request gets
the same answer (tests and resumed runs rely on it), while different prompts get different values.

Supported schema subset (what ``task_builder.judging`` emits, and a little more): ``type`` ``object``
(``properties``; every property is filled, in schema order), ``string`` (a short sentence, cut to
``maxLength``), ``integer`` / ``number`` (``minimum`` / ``maximum``), ``boolean``, ``null``, ``array``
(``items``, ``minItems`` elements, at least one), a list of types (the first that is not ``null``),
``enum``, ``const``, ``anyOf`` / ``oneOf`` (the first alternative). Anything else becomes ``null``.

Values: a per-request "quality" in [0, 1) drawn from the hash places every ordered scale (an integer
``enum``, a numeric range) near the same relative position, give or take one step, so a request's
scores agree with each other the way a judge's do; string enums and booleans are drawn independently
per key; free strings are a sentence or two, critical or approving with the quality.

Invalid answers (``structured_invalid_probability``, to exercise a client's retry): :class:`InvalidDraws`
decides per request, from an RNG seeded with the settings' seed, and cycles through the kinds an API can
produce: a value off its scale (``enum``), a missing required key (``missing``) and, for OpenAI only
(an Anthropic tool input is always an object), the JSON wrapped in a sentence (``prose``).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from simulator.answers import Answer, truncate
from simulator.wire import ParsedRequest

InvalidKind = Literal["enum", "missing", "prose"]
OPENAI_INVALID_KINDS: tuple[InvalidKind, ...] = ("enum", "missing", "prose")
ANTHROPIC_INVALID_KINDS: tuple[InvalidKind, ...] = ("enum", "missing")
PROSE_PREFIX = "Here is my evaluation of the response: "

_APPROVING = (
    "The response addresses the question directly.",
    "The answer is accurate and stays on topic.",
    "The explanation is clear and well organised.",
    "The response covers the main points the prompt asks for.",
    "The reasoning is sound and easy to follow.",
    "The answer is complete without unnecessary detail.",
)
_CRITICAL = (
    "The response only partly addresses the question.",
    "Some claims are vague or not supported.",
    "The answer misses part of what the prompt asks for.",
    "The explanation is harder to follow than it needs to be.",
    "The response contains an inaccuracy that weakens it.",
    "The answer is longer than the question calls for.",
)
# Default range of an integer or number without ``minimum`` / ``maximum``.
_DEFAULT_SPAN = 10


def request_seed(model: str, prompt_text: str, schema: Mapping[str, Any]) -> str:
    """The seed of a request's structured answer: a hash of the model, the prompt text and the schema."""
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{model}\x00{prompt_text}\x00{canonical}".encode()).hexdigest()


def _unit(seed: str, path: str) -> float:
    """A number in [0, 1) determined by ``seed`` and ``path`` (a property path, plus a purpose)."""
    digest = hashlib.sha256(f"{seed}\x00{path}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _pick(seed: str, path: str, count: int) -> int:
    """An index in ``range(count)`` determined by ``seed`` and ``path``."""
    return min(count - 1, int(_unit(seed, path) * count))


def _scale_index(count: int, quality: float, seed: str, path: str) -> int:
    """A position on an ordered scale of ``count`` values: near ``quality``, give or take one step."""
    step = _pick(seed, path + "#step", 3) - 1
    return max(0, min(count - 1, round(quality * (count - 1)) + step))


def _sentence(quality: float, seed: str, path: str, sentences: int = 1) -> str:
    """One or more short sentences, approving above the middle quality, critical below."""
    pool = _APPROVING if quality >= 0.5 else _CRITICAL
    first = _pick(seed, path + "#s", len(pool))
    return " ".join(pool[(first + i) % len(pool)] for i in range(sentences))


def _first_type(kind: Any) -> Any:
    """``type`` as one name: the first of a list that is not ``null`` (``null`` if it is the only one)."""
    if isinstance(kind, list):
        named = [k for k in kind if k != "null"]
        return named[0] if named else ("null" if kind else None)
    return kind


def _number_bounds(schema: Mapping[str, Any]) -> tuple[float, float]:
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(low, bool) or not isinstance(low, int | float):
        low = None
    if isinstance(high, bool) or not isinstance(high, int | float):
        high = None
    if low is None and high is None:
        return 0, _DEFAULT_SPAN
    if low is None:
        assert high is not None
        return high - _DEFAULT_SPAN, high
    if high is None:
        return low, low + _DEFAULT_SPAN
    return (low, high) if low <= high else (high, low)


def _value(schema: Any, seed: str, path: str, quality: float) -> Any:
    """The value of ``schema`` at ``path`` (see the module docstring)."""
    if not isinstance(schema, Mapping):
        return None
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        ordered = all(isinstance(v, int | float) and not isinstance(v, bool) for v in enum)
        index = _scale_index(len(enum), quality, seed, path) if ordered else _pick(seed, path, len(enum))
        return enum[index]
    for key in ("anyOf", "oneOf"):
        alternatives = schema.get(key)
        if isinstance(alternatives, list) and alternatives:
            return _value(alternatives[0], seed, path, quality)
    kind = _first_type(schema.get("type"))
    if kind is None and isinstance(schema.get("properties"), Mapping):
        kind = "object"
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        return {str(key): _value(prop, seed, f"{path}.{key}", quality) for key, prop in properties.items()}
    if kind == "array":
        low = schema.get("minItems")
        count = low if isinstance(low, int) and not isinstance(low, bool) and low > 1 else 1
        return [_value(schema.get("items"), seed, f"{path}[{i}]", quality) for i in range(count)]
    if kind == "string":
        text = _sentence(quality, seed, path, 2 if path.endswith(".rationale") else 1)
        limit = schema.get("maxLength")
        return text[:limit] if isinstance(limit, int) and not isinstance(limit, bool) else text
    if kind in ("integer", "number"):
        low, high = _number_bounds(schema)
        position = quality + (_unit(seed, path) - 0.5) / 5
        raw = low + max(0.0, min(1.0, position)) * (high - low)
        if kind == "number":
            return round(raw, 2)
        return max(int(-(-low // 1)), min(int(high // 1), round(raw)))
    if kind == "boolean":
        return _unit(seed, path) < 0.5
    return None


def conforming_value(schema: Mapping[str, Any], seed: str) -> Any:
    """A value conforming to ``schema`` (the supported subset), determined by ``seed``."""
    return _value(schema, seed, "$", _unit(seed, "quality"))


def _properties(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    properties = schema.get("properties")
    return properties if isinstance(properties, Mapping) else {}


def _off_scale(prop: Mapping[str, Any], current: Any) -> Any:
    """A value a careless judge writes that is not on ``prop``'s scale (or not of its type)."""
    enum = prop.get("enum")
    if isinstance(enum, list) and enum:
        numbers = [v for v in enum if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) == len(enum):
            return max(numbers) + 1  # one past the top of the scale
        for value in enum:  # the label instead of the key ("Just right" for just_right)
            label = str(value).replace("_", " ").capitalize()
            if label not in enum:
                return label
        return "n/a"
    kind = _first_type(prop.get("type"))
    if kind == "boolean":
        return "yes"
    if kind in ("integer", "number"):
        return str(current)  # "4" is not the integer 4
    if kind == "string":
        return 5
    return "n/a"


def invalid_value(schema: Mapping[str, Any], value: Any, seed: str, kind: InvalidKind) -> Any:
    """``value`` (a conforming object) made invalid the way ``kind`` says; ``prose`` returns a string."""
    if kind == "prose":
        return PROSE_PREFIX + json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if not isinstance(value, dict) or not value:
        return {**(value if isinstance(value, dict) else {}), "confidence": "high"}  # a key not in the schema
    broken = dict(value)
    properties = _properties(schema)
    # The scores, not the rationale, are what a judge gets wrong.
    candidates = [k for k in broken if k != "rationale"] or list(broken)
    if kind == "enum":
        with_enum = [k for k in candidates if isinstance(properties.get(k), Mapping) and properties[k].get("enum")]
        pool = with_enum or candidates
        key = pool[_pick(seed, "invalid-key", len(pool))]
        prop = properties.get(key)
        broken[key] = _off_scale(prop if isinstance(prop, Mapping) else {}, broken[key])
        return broken
    required = schema.get("required")
    needed = [k for k in candidates if isinstance(required, list) and k in required] or candidates
    del broken[needed[_pick(seed, "invalid-key", len(needed))]]
    return broken


def _partial(value: dict[str, Any], limit: int) -> dict[str, Any]:
    """The keys of ``value`` a tool call cut at ``limit`` characters of its JSON had finished."""
    kept: dict[str, Any] = {}
    for key, item in value.items():
        if len(json.dumps({**kept, key: item}, ensure_ascii=False, separators=(",", ":"))) > limit:
            break
        kept[key] = item
    return kept


def structured_answer(parsed: ParsedRequest, invalid: InvalidKind | None = None) -> Answer:
    """The structured answer to ``parsed`` (which has a ``schema``), made invalid as ``invalid`` says.

    OpenAI (no ``tool_name``): ``text`` is the JSON text, cut to ``max_tokens`` like any answer. Anthropic
    (``tool_name``): ``tool_input`` is the forced tool's input and ``text`` its JSON (for the token
    count); cut short, the input keeps only the keys finished within ``max_tokens``."""
    schema = parsed.schema or {}
    seed = request_seed(parsed.model, parsed.prompt_text, schema)
    value = conforming_value(schema, seed)
    if invalid is not None:
        value = invalid_value(schema, value, seed, invalid)
    if isinstance(value, str) and invalid == "prose":
        return truncate(value, parsed.max_tokens)
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if parsed.tool_name is None:
        return truncate(text, parsed.max_tokens)
    tool_input = value if isinstance(value, dict) else {"value": value}
    cut = truncate(text, parsed.max_tokens)
    if cut.truncated:
        return Answer(cut.text, True, _partial(tool_input, len(cut.text)))
    return Answer(text, False, tool_input)


class InvalidDraws:
    """Which structured answers are made invalid: a seeded draw per request with probability ``p``, and
    the kinds in turn (the n-th invalid answer of an API gets its ``n mod len(kinds)``-th kind)."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self.reset()

    def reset(self) -> None:
        """Re-seed the RNG and restart the cycle of kinds."""
        self._rng = random.Random(f"structured-invalid:{self._seed}")
        self._counts = {"openai": 0, "anthropic": 0}

    def draw(self, probability: float, anthropic: bool) -> InvalidKind | None:
        """The kind of invalid answer for this request, or None (a valid answer)."""
        if probability <= 0.0 or self._rng.random() >= probability:
            return None
        api = "anthropic" if anthropic else "openai"
        kinds: Sequence[InvalidKind] = ANTHROPIC_INVALID_KINDS if anthropic else OPENAI_INVALID_KINDS
        kind = kinds[self._counts[api] % len(kinds)]
        self._counts[api] += 1
        return kind
