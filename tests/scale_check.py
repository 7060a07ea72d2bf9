"""The FORMAT.md acceptance check: a shell parses with the official ``scaleapi`` SDK and loses no key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from scaleapi.api_client.v2 import Task


def _unwrap(obj: Any) -> Any:
    # The SDK's one-of wrappers (Annotation, ExpandableProject, …) hold the parsed value here.
    while hasattr(obj, "actual_instance") and hasattr(obj, "one_of_schemas"):
        obj = obj.actual_instance
    return obj


def _compare(ours: Any, theirs: Any, path: str) -> None:
    theirs = _unwrap(theirs)
    if isinstance(ours, dict):
        if path.endswith("metadata"):
            return  # free-form by contract
        assert theirs is not None, f"{path}: dropped by the SDK"
        fields = type(theirs).model_fields
        for key, value in ours.items():
            assert key in fields, f"{path}.{key}: not a field of the SDK's {type(theirs).__name__}"
            _compare(value, getattr(theirs, key), f"{path}.{key}")
    elif isinstance(ours, list):
        assert isinstance(theirs, list) and len(theirs) == len(ours), f"{path}: list changed"
        for index, (a, b) in enumerate(zip(ours, theirs)):
            _compare(a, b, f"{path}[{index}]")
    elif isinstance(theirs, datetime):
        assert datetime.fromisoformat(ours.replace("Z", "+00:00")) == theirs, f"{path}: date changed"
    elif hasattr(theirs, "value") and not isinstance(ours, (dict, list)) and not isinstance(theirs, (int, float, str)):
        assert ours == theirs.value, f"{path}: {ours!r} became {theirs!r}"  # enums (role, status)
    else:
        assert ours == theirs, f"{path}: {ours!r} became {theirs!r}"


def assert_scale_compatible(shell: dict[str, Any]) -> None:
    """``Task.from_dict(shell)`` succeeds and every key outside ``metadata`` survives with its value."""
    parsed = Task.from_dict(shell)
    assert parsed is not None
    _compare(shell, parsed, "task")
