"""A real PostgreSQL server for the tests: ``initdb`` in a temporary directory, ``postgres`` on a free
loopback port, stopped at the end of the session.

The binaries are those on ``PATH`` (``initdb``), else Debian's ``/usr/lib/postgresql/<version>/bin``
(``apt-get install -y postgresql``). Without them the tests skip, or fail when ``CI`` is set. ``initdb``
refuses to run as root: then the server runs as the ``postgres`` system user (or ``nobody``), in a
directory under ``/tmp`` given to it. Local (socket) connections are trusted, for the fixture's own
administration; TCP connections need a password: role :data:`ROLE` has :data:`PASSWORD`, which the
fixture also puts in the environment variable :data:`PASSWORD_ENV` for the session.

Use: ``from pg_server import postgres_server, postgres_url  # noqa: F401`` in a test module (or in
``conftest.py``); ``postgres_url`` is a fresh empty database owned by :data:`ROLE` for each test, its
URL without the password.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

ROLE = "rlhf_test"
PASSWORD = "pg-test-S3cret-a91f"
PASSWORD_ENV = "RLHF_TEST_PG_PASSWORD"
START_TIMEOUT_S = 60.0
_INSTALL = "PostgreSQL is not installed (apt-get install -y postgresql; or put initdb and postgres on PATH)"
_DRIVER = "psycopg is not installed (pip install 'rlhf-orchestrator[postgres]')"


def _missing(message: str) -> None:
    """Skip the test, or fail it on CI (where PostgreSQL must be there)."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def find_bin_dir() -> Path | None:
    """The directory with ``initdb`` and ``postgres``: on PATH, else Debian's newest versioned one."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _version(p.parent.name), reverse=True)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    return None


def _version(name: str) -> int:
    return int(name) if name.isdigit() else -1


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a postgres nor a nobody account exists to run PostgreSQL")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgServer:
    """One throwaway PostgreSQL cluster: its directory, port, and the running ``postgres`` process."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.user = _server_user()
        # As root the server's account must reach its directory: the session's TMPDIR is private (0700).
        self.root = Path(tempfile.mkdtemp(prefix="rlhf-pg-", dir="/tmp" if self.user else None))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "postgres.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._names = count(1)

    def _as_server_user(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C", "LC_ALL": "C", "TZ": "UTC"}

    def start(self) -> PgServer:
        """``initdb``, then ``postgres`` on a free port; returns once it accepts connections."""
        self.sockets.mkdir()
        if self.user is not None:
            for path in (self.root, self.sockets):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self._initdb()
        self.port = _free_port()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data), "-k", str(self.sockets), "-h", "127.0.0.1"]
                + ["-p", str(self.port), "-c", "fsync=off", "-c", "max_connections=200"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=self.root,
                **self._as_server_user(),
            )
        self._wait_ready()
        self._create_role()
        return self

    def _initdb(self) -> None:
        done = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--no-locale"]
            + ["--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions"],
            capture_output=True,
            text=True,
            env=self._env(),
            cwd=self.root,
            timeout=120,
            **self._as_server_user(),
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.strip()}")

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited ({self.process.returncode}): {self.log.read_text()[-2000:]}")
            try:
                self.admin().close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    message = f"postgres did not start in {START_TIMEOUT_S}s: {self.log.read_text()[-2000:]}"
                    raise RuntimeError(message) from exc
                time.sleep(0.1)

    def admin(self, dbname: str = "postgres") -> Any:
        """A superuser connection over the socket (trusted), autocommit."""
        import psycopg

        return psycopg.connect(
            host=str(self.sockets), port=self.port, user="postgres", dbname=dbname, autocommit=True, connect_timeout=5
        )

    def _create_role(self) -> None:
        from psycopg import sql

        with self.admin() as db:
            db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(PASSWORD)))

    def url(self, dbname: str, user: str = ROLE, port: int | None = None) -> str:
        """The TCP URL of a database (no password in it)."""
        return f"postgresql://{user}@127.0.0.1:{port or self.port}/{dbname}"

    def new_database(self, owner: str = ROLE) -> str:
        """A fresh empty database owned by ``owner``; its URL."""
        from psycopg import sql

        name = f"store_{next(self._names)}"
        with self.admin() as db:
            db.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
        return self.url(name, owner)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected), then remove the cluster's directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    """A PostgreSQL server for the session (skipped without PostgreSQL or psycopg, failed on CI)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _missing(_INSTALL)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing(_DRIVER)
    assert bin_dir is not None
    server = PgServer(bin_dir)
    try:
        server.start()
        os.environ[PASSWORD_ENV] = PASSWORD
        yield server
    finally:
        os.environ.pop(PASSWORD_ENV, None)
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PgServer) -> str:
    """The URL of a fresh empty database owned by :data:`ROLE` (the password is in :data:`PASSWORD_ENV`)."""
    return postgres_server.new_database()
