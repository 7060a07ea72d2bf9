"""README's ways to start a Prefect server keep it offline (issue 26): ``make prefect-server``, and the
variables README shows for those not using make.

Each is started as README writes it (the lines are read from README.md's Prefect section), in a shell
without the offline switches ``make`` exports, the test suite sets and ``rlhf`` sets for itself (a bare
``prefect server start`` there logs ``Failed to send telemetry``). Substituted: the port
(``PREFECT_SERVER_API_PORT``, the setting README names for another port) and ``PREFECT_HOME`` (a scratch
directory instead of ``./.prefect``), so a server already running and the repository are left alone.
Then the server's own settings must say analytics off (the heartbeat and the UI's analytics follow it)
and promotional content off, and its log must not mention telemetry.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import ROOT
from prefect_stack import free_port, stop

pytestmark = pytest.mark.slow

OFFLINE_SWITCHES = ("DO_NOT_TRACK", "PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT")


def prefect_server_lines() -> list[str]:
    """The commands of the bash block in README's Prefect section that start a server."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Prefect\n") :]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block, "README's Prefect section shows no commands"
    lines = [line.strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line.startswith("make prefect-server") or "prefect server start" in line]


def test_readme_shows_both_ways() -> None:
    lines = prefect_server_lines()
    assert [line.split("#")[0].split() for line in lines][0] == ["make", "prefect-server"]
    assert "PREFECT_SERVER_ANALYTICS_ENABLED=false" in lines[1] and "DO_NOT_TRACK=1" in lines[1]


@pytest.mark.parametrize("way", ["make", "variables"])
def test_the_server_readme_starts_is_offline(way: str, tmp_path: Path) -> None:
    stamp = ROOT / ".venv" / ".installed-stamp"
    if not stamp.is_file() or stamp.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime:
        pytest.skip("needs the .venv that make installs, up to date (run make install)")
    line = prefect_server_lines()[0 if way == "make" else 1]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in (*OFFLINE_SWITCHES, "PREFECT_API_URL", "MAKEFLAGS")}
    env.update(
        PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_LOGGING_LEVEL="INFO",
    )
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            ["bash", "-c", line],
            cwd=ROOT if way == "make" else tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}/api"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, log.read_text(errors="replace")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"no Prefect server on {url}:\n{log.read_text(errors='replace')}")
        settings = httpx.get(f"{url}/admin/settings", timeout=10).json()
        assert settings["server"]["analytics_enabled"] is False
        assert settings["server"]["ui"]["show_promotional_content"] is False
        time.sleep(5)  # the telemetry heartbeat, when on, runs (and fails, offline) as the services start
    finally:
        stop(server)
    text = log.read_text(errors="replace")
    assert "telemetry" not in text.lower(), text
