"""A real S3-compatible server for the tests: moto's standalone server (``python -m moto.server``) on a
free loopback port, stopped at the end of the session.

Without moto's S3 server (``pip install 'moto[s3]' flask flask-cors``) or s3fs the tests skip, or fail when ``CI`` is set. Every test
gets a fresh bucket from :func:`s3_bucket`, with fake, recognisable credentials (:data:`ACCESS_KEY_ID`,
:data:`SECRET_ACCESS_KEY`) and ``AWS_ENDPOINT_URL`` pointing at the server, all set for that test only; the
developer's own AWS configuration (profiles, config files, a session token) is hidden from it.

Use: ``from s3_server import s3_server, s3_bucket  # noqa: F401`` in a test module (or in ``conftest.py``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY_ID = "AKIARLHFTESTFAKE0001"
SECRET_ACCESS_KEY = "FAKE-moto-s3cret-9c2e7a41b0d3"  # shares no 8 characters with a bucket name
REGION = "us-east-1"
START_TIMEOUT_S = 60.0
_INSTALL = (
    "moto's S3 server or s3fs is not installed (pip install 'moto[s3]' flask flask-cors s3fs; all are in the [dev]"
    " extra)"
)
# Hidden from each test, so a developer's own AWS setup cannot leak in.
_AWS_VARIABLES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_REGION")
_AWS_VARIABLES += ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")


def _missing(message: str) -> None:
    """Skip the test, or fail it on CI (where moto and s3fs must be there)."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class S3Server:
    """One moto server process: its URL, log, and the buckets made on it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rlhf-s3-"))
        self.log = self.root / "moto.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._names = count(1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        """Start the server on a free port; returns once it answers."""
        self.port = _free_port()
        # The server needs no credentials of its own; it gets none of ours.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.root,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited ({self.process.returncode}): {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                if time.monotonic() > deadline:
                    message = f"moto server did not answer in {START_TIMEOUT_S}s: {self.log.read_text()[-2000:]}"
                    raise RuntimeError(message) from exc
            time.sleep(0.1)

    def client(self) -> Any:
        """A boto3 S3 client for the fixtures' own use (checking what is stored, multipart uploads, ...)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def new_bucket(self) -> str:
        """A fresh empty bucket; its name."""
        name = f"rlhf-test-{os.getpid()}-{next(self._names)}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL), then remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server for the session (skipped without moto or s3fs, failed on CI)."""
    try:
        import boto3  # noqa: F401
        import flask  # noqa: F401  # moto's standalone server
        import moto.server  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as exc:
        _missing(f"{_INSTALL}: {exc}")
    server = S3Server()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """``s3://<a fresh bucket>`` on :func:`s3_server`, with the AWS environment set for this test only."""
    for name in _AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)
    # No ~/.aws files and no instance metadata lookups.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return f"s3://{s3_server.new_bucket()}"
