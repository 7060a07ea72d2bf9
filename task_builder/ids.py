"""Deterministic ids: the same batch, prompt and position always give the same id."""

from __future__ import annotations

import hashlib


def stable_id(prefix: str, *parts: object, length: int = 24) -> str:
    """``prefix_`` + a hex digest of the parts (joined with NUL, so ``("a", "bc") != ("ab", "c")``)."""
    digest = hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}_{digest[:length]}"


def task_id_for(batch: str, prompt_id: str, variant: str = "") -> str:
    """The task id of a prompt in a batch (``variant`` separates several tasks made from one prompt)."""
    return stable_id("task", batch, prompt_id, variant)
