"""Prefect flows and the ``rlhf`` command line.

Importing this package sets the offline defaults (no telemetry, no update checks) before Prefect is
imported anywhere below it.
"""

from flows.offline import apply_offline_defaults

apply_offline_defaults()
