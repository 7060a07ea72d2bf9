"""Keep Prefect and friends quiet and offline.

Imported (via ``flows/__init__``) before anything imports Prefect, so the defaults below are in the
environment when Prefect reads its settings. Every value is a default: an operator's own environment
wins.
"""

from __future__ import annotations

import os

OFFLINE_DEFAULTS: dict[str, str] = {
    # No telemetry from Prefect, its server, or libraries that honour the common opt-out.
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # The first start of the temporary local server on a fresh database can exceed the 20 s default.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}


def apply_offline_defaults() -> None:
    """Set the offline/quiet defaults in ``os.environ`` without overriding what the user set."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
