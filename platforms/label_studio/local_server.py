"""Install (once, cached) and start a real Label Studio on 127.0.0.1: for a trial and for the tests.

``make label-studio`` (``python -m platforms.label_studio.local_server``) starts one on
http://127.0.0.1:8080 with a known user and API token and keeps it running until Ctrl-C; the
integration tests start one on a free port per test module.

Label Studio is a server we talk to over HTTP, not a library we import: it lives in its own virtual
environment (``RLHF_LABEL_STUDIO_VENV``, default ``~/.cache/rlhf-orchestrator/ls-venv``) so its Django
stack never meets our dependencies. The first start migrates a fresh database (a minute or two); the
migrated data directory is then kept as a template next to the venv and copied for later sessions,
which start in seconds.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

CACHE = Path(os.environ.get("RLHF_CACHE_DIR", Path.home() / ".cache" / "rlhf-orchestrator"))
VENV = Path(os.environ.get("RLHF_LABEL_STUDIO_VENV", CACHE / "ls-venv"))
DATA_TEMPLATE = CACHE / "ls-data-template"
REQUIREMENT = "label-studio>=1.20,<2"
USERNAME = "annotator@example.com"
PASSWORD = "not-a-real-password-1"
DATABASE = "label_studio.sqlite3"
LEGACY_TOKEN = "5f1e0c7d9a2b4c6e8f0a1b3c5d7e9f1a3b5c7d9e"


def ensure_installed(say: Callable[[str], None] | None = None) -> Path:
    """The ``label-studio`` executable, installing it into its own venv the first time.

    The install is about 1 GB and takes minutes: with ``say``, each line pip prints is passed on as it
    comes (``Collecting …``, ``Downloading …``, ``Installing collected packages …``), and a line saying
    how long it has been whenever pip is quiet for a while (it is, while it unpacks and installs).
    """
    executable = VENV / "bin" / "label-studio"
    if executable.exists():
        return executable
    VENV.parent.mkdir(parents=True, exist_ok=True)
    if say is not None:
        say(f"installing {REQUIREMENT} into {VENV} (about 1 GB, a few minutes, once) ...")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    if say is None:
        subprocess.run([*pip, "--quiet", REQUIREMENT], check=True, timeout=1800)
    else:
        run_with_progress([*pip, "--progress-bar", "off", REQUIREMENT], say, timeout_s=1800)
        say(f"installed {REQUIREMENT}")
    return executable


def run_with_progress(command: list[str], say: Callable[[str], None], timeout_s: float, quiet_s: float = 15.0) -> None:
    """Run ``command``, passing each line it prints to ``say`` (indented) as it comes, and a line with the
    time so far whenever it has printed nothing for ``quiet_s``; :class:`subprocess.CalledProcessError` if
    it fails, :class:`subprocess.TimeoutExpired` (after stopping it) if it runs past ``timeout_s``."""
    started = time.monotonic()
    last = [started]
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(min(1.0, quiet_s / 4)):
            now = time.monotonic()
            if now - last[0] >= quiet_s:
                last[0] = now
                say(f"  ... still working ({now - started:.0f} s so far)")

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        process.kill()

    timer = threading.Timer(timeout_s, stop)
    beat = threading.Thread(target=heartbeat, daemon=True)
    timer.start()
    beat.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            last[0] = time.monotonic()
            if line.strip():
                say(f"  {line.rstrip()}")
        process.wait()
    finally:
        done.set()
        timer.cancel()
        beat.join()
    if expired.is_set():
        raise subprocess.TimeoutExpired(command, timeout_s)
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, command)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LabelStudioServer:
    """A running Label Studio with one user and a legacy API token."""

    def __init__(
        self, data_dir: Path, log_path: Path, port: int | None = None, say: Callable[[str], None] | None = None
    ) -> None:
        self._say = say  # where "still starting" lines go while the server comes up (none: quiet)
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = LEGACY_TOKEN
        self._data_dir = data_dir
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 600.0) -> LabelStudioServer:
        """Start the server and wait until its API answers with our token.

        A data directory that already holds a database is started as it is. The very first start migrates a fresh database, stops, keeps that untouched data directory as
        the template, and starts again from it.
        """
        if not DATA_TEMPLATE.exists():
            self._launch(timeout_s)
            self.stop()
            staging = DATA_TEMPLATE.with_name(DATA_TEMPLATE.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(self._data_dir, staging, ignore=shutil.ignore_patterns("*.log", "media", "export"))
            staging.rename(DATA_TEMPLATE)
            shutil.rmtree(self._data_dir)
        if not (self._data_dir / DATABASE).exists():  # a data directory in use keeps its projects
            shutil.copytree(DATA_TEMPLATE, self._data_dir, dirs_exist_ok=True)
        return self._launch(timeout_s)

    def _launch(self, timeout_s: float) -> LabelStudioServer:
        executable = ensure_installed()
        env = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(self._data_dir),
            "LATEST_VERSION_CHECK": "false",
            "LABEL_STUDIO_USERNAME": USERNAME,
            "LABEL_STUDIO_PASSWORD": PASSWORD,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_USER_TOKEN": LEGACY_TOKEN,
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
        }
        log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            [
                str(executable),
                "start",
                "--no-browser",
                "--internal-host",
                "127.0.0.1",
                "--host",
                self.url,
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started = time.monotonic()
        deadline = started + timeout_s
        next_word = started + 15
        while time.monotonic() < deadline:
            if self._say is not None and time.monotonic() >= next_word:
                self._say(f"  ... still starting ({time.monotonic() - started:.0f} s so far)")
                next_word += 15
            if self._process.poll() is not None:
                raise RuntimeError(f"Label Studio exited with {self._process.returncode}; see {self._log_path}")
            try:
                response = httpx.get(
                    f"{self.url}/api/projects", headers={"Authorization": f"Token {self.token}"}, timeout=5
                )
                if response.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            self.stop()
            raise TimeoutError(f"Label Studio did not come up in {timeout_s:.0f} s; see {self._log_path}")
        return self

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop the server."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None


def _say(line: str) -> None:
    print(line, flush=True)


def main() -> int:
    """``make label-studio``: start a local Label Studio for a trial and wait for Ctrl-C."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=CACHE / "ls-trial",
        help="where projects and annotations are kept between starts",
    )
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_installed(say=_say)
    if not DATA_TEMPLATE.exists():
        _say("first start: Label Studio sets up its database (a minute or two, once) ...")
    _say(f"starting Label Studio on http://127.0.0.1:{args.port} (log: {args.data_dir / 'label-studio.log'}) ...")
    server = LabelStudioServer(args.data_dir, args.data_dir / "label-studio.log", args.port, say=_say)
    server.start()
    print(
        f"""
Label Studio is running on {server.url}
  log in:  {USERNAME} / {PASSWORD}
  token:   export LABEL_STUDIO_TOKEN={server.token}
  deliver: rlhf deliver RUN_DIR --to label-studio --url {server.url}
  data:    {args.data_dir}
Ctrl-C stops it.""",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set() and server.running:
        stop.wait(1.0)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
