"""What a preference value says about which answer won: one rule for harvest and for the exports."""

from __future__ import annotations

from collections.abc import Sequence


def likert_winner(values: Sequence[int], value: int) -> tuple[int, float] | None:
    """``(winner index, margin)`` for a Likert ``value`` on the scale ``values``; ``None`` on a tie.

    The scale runs from "first answer much better" (``values[0]``) to "second answer much better"
    (``values[-1]``); the midpoint ``(first + last) / 2`` is a tie and the margin is the distance from it.
    """
    first, last = values[0], values[-1]
    midpoint = (first + last) / 2
    if value == midpoint:
        return None
    winner = 0 if (value - midpoint) * (first - midpoint) > 0 else 1
    return winner, float(abs(value - midpoint))
