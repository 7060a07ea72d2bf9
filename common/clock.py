"""The wall clock as the ISO-8601 UTC strings our files record (``…Z``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal


def utc_now(timespec: Literal["seconds", "milliseconds"] = "seconds") -> str:
    """Now in UTC, e.g. ``2026-11-27T13:00:00Z`` (``timespec="milliseconds"``: ``…00.123Z``)."""
    return datetime.now(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
