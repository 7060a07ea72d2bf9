"""A webhook that cannot be reached never fails the run, and its URL (which may hold a secret) is never printed."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import closed_port_url, three_providers, write_config, write_prompts

from flows.config import NotifyConfig
from flows.reporting.notify import post_event
from simulator import RunningSimulator


def test_an_unreachable_webhook_is_reported_by_host_only(capfd: pytest.CaptureFixture[str]) -> None:
    url = closed_port_url() + "/hook/SECRET-PART"
    assert post_event(NotifyConfig(webhook_url=url), "completed", {"summary": {}}) is False
    err = capfd.readouterr().err
    assert f"rlhf: notification to {urlsplit(url).netloc} failed: ConnectError" in err
    assert "SECRET-PART" not in err


def test_a_webhook_that_never_answers_gives_up_after_its_timeout(capfd: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook/SECRET-PART"
        started = time.monotonic()
        assert post_event(NotifyConfig(webhook_url=url, timeout_s=0.3), "failed", {"message": "x"}) is False
        assert time.monotonic() - started < 10  # the 0.3 s timeout, with room for a loaded machine
    err = capfd.readouterr().err
    assert "failed: ReadTimeout" in err and "SECRET-PART" not in err


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_runs_complete_and_fail_on_their_own_merits_when_the_webhook_is_down(
    sim: RunningSimulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from flows.generation.generate import generate_tasks

    url = closed_port_url() + "/hook/SECRET-PART"
    prompts = write_prompts(tmp_path / "p.jsonl", 3)
    config = write_config(tmp_path, three_providers(sim), prompts, notify={"webhook_url": url})

    summary = asyncio.run(generate_tasks(str(config)))
    assert summary["tasks_written"] == 3 and summary["incomplete"] == 0
    assert len((tmp_path / "out" / "b1" / "tasks.jsonl").read_text().splitlines()) == 3
    err = capfd.readouterr().err
    assert f"rlhf: notification to {urlsplit(url).netloc} failed" in err

    prompts.unlink()  # the next run fails at its start; its own error, not the notification's, is raised
    with pytest.raises(Exception, match="prompt file not found"):
        asyncio.run(generate_tasks(str(config)))
    err = capfd.readouterr().err
    assert f"rlhf: notification to {urlsplit(url).netloc} failed" in err
    assert "SECRET-PART" not in err
