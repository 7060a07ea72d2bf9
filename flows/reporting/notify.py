"""Notifications: when a generation run completes or fails, POST its summary to a webhook.

Wired as Prefect flow-state hooks (``on_completion``, ``on_failure``, ``on_crashed``) of
``generate_tasks``, so they fire however the flow was started (CLI, deployment, schedule). A run that
finished with calls missing ends Failed, named ``Incomplete``: its failure hook sends the "completed"
event with the summary (the run wrote its outputs), whose ``state`` says ``Incomplete``. A
notification that cannot be delivered is reported on stderr and never fails the run. Webhook URLs often
carry a secret (Slack, Teams): the URL is never logged, only its host.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from flows.config import NotifyConfig, load_config
from flows.reporting.report import ended_incomplete


def post_event(config: NotifyConfig, event: str, payload: dict[str, Any]) -> bool:
    """POST ``{"event": ..., **payload}`` to the webhook; True if it answered 2xx."""
    if not config.webhook_url or event not in config.on:
        return False
    host = urlsplit(config.webhook_url).netloc
    try:
        response = httpx.post(config.webhook_url, json={"event": event, **payload}, timeout=config.timeout_s)
    except httpx.HTTPError as exc:
        print(f"rlhf: notification to {host} failed: {type(exc).__name__}", file=sys.stderr)
        return False
    if response.status_code >= 300:
        print(f"rlhf: notification to {host} answered HTTP {response.status_code}", file=sys.stderr)
        return False
    return True


def _run_notify(flow_run: Any) -> tuple[NotifyConfig, Path] | None:
    parameters = flow_run.parameters or {}
    config_path = parameters.get("config_path")
    if not config_path or parameters.get("shard_index") is not None:  # shards: the parent run reports
        return None
    try:
        config = load_config(config_path, require_keys=False)
    except Exception:  # noqa: BLE001 - a config that does not load has already failed the run
        return None
    return config.notify, config.run_dir


def on_run_completed(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect hook: the run finished (Completed, Incomplete or, called by the flow, Cancelled); send its
    summary with the state's name and message."""
    found = _run_notify(flow_run)
    if found is None:
        return
    notify, run_dir = found
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else None
    post_event(
        notify,
        "completed",
        {
            "flow_run_id": str(flow_run.id),
            "flow_run_name": flow_run.name,
            "state": state.name,
            "message": (state.message or "")[:2000],
            "summary": summary,
        },
    )


def on_run_failed(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect hook: the run failed or crashed; send the reason. A run that ended Incomplete finished: its
    summary goes out as the "completed" event."""
    if ended_incomplete(state):
        on_run_completed(flow, flow_run, state)
        return
    found = _run_notify(flow_run)
    if found is None:
        return
    notify, _ = found
    post_event(
        notify,
        "failed",
        {
            "flow_run_id": str(flow_run.id),
            "flow_run_name": flow_run.name,
            "state": str(state.type.value),
            "message": (state.message or "")[:2000],
        },
    )
