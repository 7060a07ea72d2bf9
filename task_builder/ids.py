"""Deterministic ids: the same batch, prompt and position always give the same id."""

from __future__ import annotations

import hashlib
import string


def stable_id(prefix: str, *parts: object, length: int = 24) -> str:
    """``prefix_`` + a hex digest of the parts (joined with NUL, so ``("a", "bc") != ("ab", "c")``)."""
    digest = hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}_{digest[:length]}"


def task_id_for(batch: str, prompt_id: str, variant: str = "") -> str:
    """The task id of a prompt in a batch (``variant`` separates several tasks made from one prompt)."""
    return stable_id("task", batch, prompt_id, variant)


def position_letter(index: int) -> str:
    """``0`` -> ``A``, … ``25`` -> ``Z``, ``26`` -> ``AA``: the letter of an answer's position."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = string.ascii_uppercase[rem] + letters
    return letters


def position_label(index: int) -> str:
    """``Response A``, ``Response B``, … what annotators read."""
    return f"Response {position_letter(index)}"


def position_field(index: int) -> str:
    """``response_a``, ``response_b``, … the field (and blind source id) of an answer's position."""
    return f"response_{position_letter(index).lower()}"
