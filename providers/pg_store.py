"""The response store on PostgreSQL: the rules of ``providers.store.ResponseStore``, for many workers at once.

:class:`PgResponseStore` has the public methods of the SQLite store, with the same meaning: every
finished call committed as it arrives (autocommit, one statement per ``put``), keyed by request
fingerprint, an answer never replaced by an error (the rule is in the upsert's ``WHERE``, so two
workers writing the same key cannot race), numbered schema migrations applied in one transaction, a
schema newer than the code refused untouched, ``read_only`` opens that never write. ``execute`` takes
the SQLite store's ``?`` placeholders, so ``providers.batch.ledger`` runs unchanged on either store.

The store is named by its URL, ``postgresql://user@host:port/db`` (or ``postgres://``). The password
never comes from the URL (URLs end up in configs, logs and error messages): libpq finds it in
``PGPASSWORD`` or ``~/.pgpass`` (``PGPASSFILE``), or the caller names an environment variable that
holds it (``password_env``). Every error names the URL with any password masked, never the password.

psycopg 3 is an optional dependency (``pip install 'rlhf-orchestrator[postgres]'``), imported only when a
database store is opened. One run per batch is :func:`hold_pg_batch`: a session-level advisory lock,
released by the server when the holding connection ends, however the holder died.

PostgreSQL text cannot hold the NUL character: a NUL in a stored string is kept as U+FFFD.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from providers.result import CallResult
from providers.store import (
    ANSWER_PART_COLUMNS,
    COLUMNS,
    COST_COLUMNS,
    READABLE_FROM,
    ResponseStore,
    StoreError,
    StoreRejected,
    StoreUnreadable,
    StoreUnwritable,
    readable_columns,
    select_results,
)
from providers.store_lock import BatchBusy

if TYPE_CHECKING:
    import psycopg

URL_SCHEMES = ("postgresql", "postgres")
INSTALL_HINT = "pip install 'rlhf-orchestrator[postgres]'"
PASSWORD_PLACES = (
    "PGPASSWORD, ~/.pgpass (or the file PGPASSFILE names), or an environment variable given as password_env"
)
CONNECT_TIMEOUT_S = 10

# Numbered migrations, as in providers.store (the same two, in PostgreSQL's types): each is the statements
# it runs. They run in one transaction under an advisory lock; table ``schema_version`` has one row per
# migration applied. Never edit a migration that has shipped: add the next one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE responses (
            fingerprint   TEXT PRIMARY KEY,
            source_id     TEXT NOT NULL,
            prompt_id     TEXT NOT NULL,
            ok            INTEGER NOT NULL,
            text          TEXT,
            model         TEXT,
            finish_reason TEXT,
            input_tokens  BIGINT,
            output_tokens BIGINT,
            request_id    TEXT,
            latency_ms    DOUBLE PRECISION,
            attempts      INTEGER,
            error_type    TEXT,
            error         TEXT,
            status_code   INTEGER,
            created_at    TEXT
        )
        """,
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    (
        """
        CREATE TABLE batch_jobs (
            job_id        TEXT PRIMARY KEY,
            source_id     TEXT NOT NULL,
            state         TEXT NOT NULL,
            remote_id     TEXT,
            request_count INTEGER NOT NULL,
            prepared_at   TEXT NOT NULL,
            submitted_at  TEXT,
            remote_status TEXT,
            counts        TEXT
        )
        """,
        """
        CREATE TABLE batch_requests (
            custom_id TEXT PRIMARY KEY,
            job_id    TEXT NOT NULL,
            answer_id TEXT NOT NULL,
            prompt_id TEXT NOT NULL
        )
        """,
        "CREATE INDEX batch_requests_by_job ON batch_requests (job_id)",
    ),
    tuple(
        f"ALTER TABLE responses ADD COLUMN {name} {'BIGINT' if kind == 'INTEGER' else kind}"
        for name, kind in ANSWER_PART_COLUMNS
    ),
    tuple(
        f"ALTER TABLE responses ADD COLUMN {name} {'DOUBLE PRECISION' if kind == 'REAL' else kind}"
        for name, kind in COST_COLUMNS
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_CREATE_VERSIONS = (
    "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)
_COLUMN_LIST = ", ".join(COLUMNS)
# The put rule, in the statement itself: an answer is never replaced by an error.
_ON_CONFLICT = (
    " ON CONFLICT (fingerprint) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in COLUMNS[1:])
    + " WHERE responses.ok = 0 OR excluded.ok = 1"
)
_UPSERT = f"INSERT INTO responses ({_COLUMN_LIST}) VALUES ({', '.join(['%s'] * len(COLUMNS))})" + _ON_CONFLICT
# Copying another store: its rows, a page at a time (with the SQLite store's ``?`` placeholders); columns
# an older store does not have are read as NULL.
_FIRST_PAGE = "SELECT {columns} FROM responses ORDER BY fingerprint LIMIT ?"
_NEXT_PAGE = "SELECT {columns} FROM responses WHERE fingerprint > ? ORDER BY fingerprint LIMIT ?"
_INCOMING = "rlhf_incoming"
_MERGE = f"INSERT INTO responses ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM {_INCOMING}" + _ON_CONFLICT
_BATCH = 500

_REJECTED_ADVICE = "the result is stored as a failed call instead (reason internal)"
_UNREADABLE_ADVICE = "check the database name in the URL (a store is created by the first `rlhf run` that uses it)"
_CONNECTION_LOST = ("08", "57P")  # SQLSTATE classes: connection exception, operator intervention


# ------------------------------------------------------------------------------------------------ URLs


def is_database_url(location: str | Path) -> bool:
    """Whether ``location`` names a PostgreSQL store (``postgresql://`` or ``postgres://``), not a file."""
    if not isinstance(location, str):
        return False  # a Path cannot hold a URL (it folds the double slash)
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.lower() in URL_SCHEMES


def mask_url(url: str) -> str:
    """``url`` with any password in it (``user:password@`` or ``password=``) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hosts = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _error(kind: type[StoreError], display: str, cause: str, advice: str) -> StoreError:
    """A store error naming a database store by its masked URL.

    ``StoreError`` annotates its ``path`` as a file path but only formats it: a database store's is the URL.
    """
    return kind(cast(Path, display), cause, advice)


def _checked_url(url: str) -> str:
    """The masked URL of a database store; refuses what is not one, and a URL that carries a password."""
    display = mask_url(url)
    if not is_database_url(url):
        raise _error(StoreUnreadable, display, "not a PostgreSQL URL", "write it as postgresql://user@host:port/db")
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None or any(k == "password" for k, _ in parse_qsl(parts.query))
    except ValueError as exc:
        raise _error(StoreUnreadable, display, f"not a valid PostgreSQL URL ({exc})", "check the URL") from None
    if has_password:
        raise _error(
            StoreUnreadable,
            display,
            "the URL contains a password, and URLs end up in configs, logs and error messages",
            f"remove it from the URL and give it in {PASSWORD_PLACES}",
        )
    return display


def _require_driver(display: str) -> None:
    """Fail with the install command when psycopg (the optional PostgreSQL driver) is missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise _error(
            StoreUnreadable, display, f"the PostgreSQL driver psycopg is not installed ({exc})", INSTALL_HINT
        ) from None


def _password(display: str, password_env: str | None) -> str | None:
    """The password from the environment variable the caller named (None: libpq's own conventions)."""
    if password_env is None:
        return None
    value = os.environ.get(password_env)
    if not value:
        raise _error(
            StoreUnreadable,
            display,
            f"the environment variable {password_env} (password_env) is not set",
            "set it to the role's password, or use PGPASSWORD or ~/.pgpass instead",
        )
    return value


# ---------------------------------------------------------------------------------------------- errors


def _secrets(password_env: str | None) -> list[str]:
    """The passwords this process may hand libpq: kept out of every error text."""
    names = ("PGPASSWORD",) if password_env is None else (password_env, "PGPASSWORD")
    return [value for value in (os.environ.get(name) for name in names) if value]


def _one_line(exc: BaseException, secrets: Iterable[str]) -> str:
    """The error's text on one line, without any of ``secrets`` (libpq never echoes them; this makes sure)."""
    primary = getattr(getattr(exc, "diag", None), "message_primary", None)  # a server error without its SQL
    text = " ".join(str(primary or exc).split()) or type(exc).__name__
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _connect_error(display: str, exc: BaseException, secrets: Iterable[str]) -> StoreError:
    """What went wrong connecting (server, role, password, database), and what to do about it."""
    text = _one_line(exc, secrets)
    if "password" in text or "authentication failed" in text:
        advice = f"check the role and its password (given in {PASSWORD_PLACES}, never in the URL)"
    elif "does not exist" in text:
        advice = "check the role and database names in the URL (create the database first)"
    elif "permission denied" in text:
        advice = "grant the role CONNECT on the database"
    else:
        advice = "check the host and port in the URL, and that PostgreSQL is running and accepts connections from here"
    return _error(StoreUnreadable, display, f"cannot connect to the database ({text})", advice)


def _operation_error(display: str, exc: BaseException, secrets: Iterable[str]) -> StoreError:
    """A failed statement as a store error: reading a non-store is unreadable, anything else a failed write."""
    text = _one_line(exc, secrets)
    state = str(getattr(exc, "sqlstate", None) or "")
    if state == "42P01":
        return _error(StoreUnreadable, display, f"not a response store ({text})", _UNREADABLE_ADVICE)
    if state == "42P07":
        cause = f"the database has tables of the same names that are not a response store ({text})"
        return _error(StoreUnreadable, display, cause, "use another database (or schema) for the store")
    cause = f"cannot write the response store ({text})"
    if state == "25006":
        advice = "the store was opened read-only, or the server is a read-only standby: write to the primary"
    elif state == "42501":
        cause = f"the database refused the role ({text})"
        advice = "grant the role SELECT, INSERT, UPDATE, DELETE on the store's tables (and CREATE on its schema for a new store)"
    elif state.startswith("53"):
        advice = "free space (or memory, or connections) on the database server, then run again"
    elif not state or state.startswith(_CONNECTION_LOST):
        cause = f"lost the connection to the database server ({text})"
        advice = "check the server and the network, then run again"
    else:
        advice = "check the database server's log, then run again"
    return _error(StoreUnwritable, display, cause, advice)


# ----------------------------------------------------------------------------------------- connecting


def _connect(
    url: str, display: str, password_env: str | None, application_name: str | None = None
) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection (every statement its own commit unless in :meth:`transaction`)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    password = _password(display, password_env)
    secrets = _secrets(password_env)
    try:
        given = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise _error(
            StoreUnreadable, display, f"not a valid PostgreSQL URL ({_one_line(exc, secrets)})", "check the URL"
        ) from None
    if "password" in given:
        raise _error(StoreUnreadable, display, "the URL contains a password", f"give it in {PASSWORD_PLACES}")
    options: dict[str, Any] = {}
    if password is not None:
        options["password"] = password
    if "connect_timeout" not in given and "PGCONNECT_TIMEOUT" not in os.environ:
        options["connect_timeout"] = CONNECT_TIMEOUT_S
    if application_name is not None or ("application_name" not in given and "PGAPPNAME" not in os.environ):
        options["application_name"] = application_name or "rlhf-orchestrator"
    try:
        connection = psycopg.connect(url, autocommit=True, **options)
    except psycopg.Error as exc:
        raise _connect_error(display, exc, secrets) from None
    try:
        if connection.info.server_version >= 140000:  # an idle session must not be ended under a run
            connection.execute("SET idle_session_timeout = 0")
    except psycopg.Error as exc:
        connection.close()
        raise _connect_error(display, exc, secrets) from None
    return connection


def _too_new(display: str, version: int) -> StoreError:
    return _error(
        StoreUnreadable,
        display,
        f"its schema is version {version}, newer than this rlhf-orchestrator knows ({SCHEMA_VERSION}):"
        " it was written by a newer release (or is not a response store)",
        "upgrade rlhf-orchestrator to use it, or give the run another database",
    )


def _stored_version(connection: psycopg.Connection[tuple[Any, ...]]) -> int:
    """The number of migrations applied (0: no store here yet)."""
    row = connection.execute("SELECT pg_catalog.to_regclass('schema_version') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    row = connection.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def _lock_id(name: str) -> int:
    """A 64-bit advisory lock key for ``name`` (a signed bigint, as PostgreSQL takes it)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


_MIGRATION_LOCK = _lock_id("rlhf-orchestrator: response store schema migration")


def _storable(value: object) -> object:
    """A value PostgreSQL can store: text without NUL characters (kept as U+FFFD)."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def to_postgres(query: str) -> str:
    """A statement written for the SQLite store, for psycopg: ``?`` becomes ``%s``, ``%`` becomes ``%%``, and
    ``INSERT OR IGNORE`` becomes ``INSERT ... ON CONFLICT DO NOTHING`` (both databases run the latter).

    ``INSERT OR REPLACE`` has no translation without the conflict target: write
    ``INSERT ... ON CONFLICT (key) DO UPDATE SET column = excluded.column``, which SQLite runs too.
    """
    if re.match(r"\s*(INSERT\s+OR\s+)?REPLACE\s+INTO\b", query, re.IGNORECASE):
        raise ValueError(
            "INSERT OR REPLACE is SQLite only: write INSERT ... ON CONFLICT (key) DO UPDATE SET column = "
            "excluded.column, which SQLite and PostgreSQL both run"
        )
    translated = _placeholders(query)
    ignore = re.match(r"\s*INSERT\s+OR\s+IGNORE\s+INTO\b", translated, re.IGNORECASE)
    if ignore:
        translated = "INSERT INTO" + translated[ignore.end() :].rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    return translated


def _placeholders(query: str) -> str:
    """``?`` outside quotes as ``%s``; every ``%`` doubled (psycopg reads ``%`` everywhere in a statement)."""
    out: list[str] = []
    quote: str | None = None
    for char in query:
        if char == "%":
            out.append("%%")
        elif quote is not None:
            out.append(char)
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
            out.append(char)
        else:
            out.append("%s" if char == "?" else char)
    return "".join(out)


# ---------------------------------------------------------------------------------------------- store


class PgResponseStore:
    """A response store in a PostgreSQL database (one connection; many processes may write at once).

    Opening for writing applies the migrations the database has not had (a new database gets them all),
    under an advisory lock so that workers starting together do not race. ``read_only`` opens an existing
    store for reading only: no migration, and the session's transactions are read-only, so a write is
    refused by the server (:class:`StoreUnwritable`). Either way a schema newer than this code is refused
    untouched (:class:`StoreUnreadable`). ``path`` is the URL with any password masked: it names the store
    in every error.
    """

    def __init__(self, url: str, *, read_only: bool = False, password_env: str | None = None) -> None:
        self.path = _checked_url(url)
        _require_driver(self.path)
        self._password_env = password_env
        self._secrets = _secrets(password_env)
        self._conn = _connect(url, self.path, password_env)
        try:
            with self._named_errors():
                self.schema_version = self._open_read_only() if read_only else self._open_for_writing()
        except BaseException:
            self._conn.close()
            raise

    def _open_read_only(self) -> int:
        self._conn.execute("SET default_transaction_read_only = on")
        version = _stored_version(self._conn)
        if version > SCHEMA_VERSION:
            raise _too_new(self.path, version)
        if version == 0:
            raise _error(
                StoreUnreadable, self.path, "not a response store (no schema_version table)", _UNREADABLE_ADVICE
            )
        if version < READABLE_FROM:
            raise _error(
                StoreUnreadable,
                self.path,
                f"its schema is version {version}, older than this rlhf-orchestrator reads ({READABLE_FROM})",
                "open it once for writing (`rlhf run` of its batch) to upgrade it, then run again",
            )
        return version

    def _open_for_writing(self) -> int:
        version = _stored_version(self._conn)
        if version > SCHEMA_VERSION:
            raise _too_new(self.path, version)
        if version < SCHEMA_VERSION:
            self._migrate()
        return SCHEMA_VERSION

    def _migrate(self) -> None:
        """Apply the migrations not applied yet, in one transaction, one worker at a time.

        The lock is taken before the transaction begins: a transaction started earlier could still see
        the catalog as it was before another worker's migration committed.
        """
        import psycopg

        self._conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            with self._conn.transaction():
                version = _stored_version(self._conn)  # another worker may have migrated it meanwhile
                if version > SCHEMA_VERSION:
                    raise _too_new(self.path, version)
                if version == 0:
                    self._conn.execute(_CREATE_VERSIONS)
                for number in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[number - 1]:
                        self._conn.execute(statement)
                    self._conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
        finally:
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
            except psycopg.Error:
                pass  # the session is gone, and its lock with it

    @contextmanager
    def _named_errors(self) -> Iterator[None]:
        """Turn psycopg errors into :class:`StoreError` naming the masked URL."""
        import psycopg

        try:
            yield
        except psycopg.Error as exc:
            raise _operation_error(self.path, exc, self._secrets) from None

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> PgResponseStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def put(self, fingerprint: str, source_id: str, prompt_id: str, result: CallResult) -> None:
        """Commit one finished call (an answer or a final error). An answer is never replaced by an error.

        One statement, committed when it returns. Raises :class:`StoreError` if the commit failed.
        """
        values = tuple(_storable(value) for value in (fingerprint, source_id, prompt_id, *result.to_row()))
        import psycopg

        with self._named_errors():
            try:
                self._conn.execute(_UPSERT, values)
            except (psycopg.DataError, psycopg.ProgrammingError, ValueError, TypeError, OverflowError) as exc:
                cause = f"cannot store this result ({type(exc).__name__}: {exc})"
                raise _error(StoreRejected, self.path, cause, _REJECTED_ADVICE) from None

    def discard_errors(self, source_ids: Iterable[str], status_code: int) -> int:
        """Forget the stored errors with this HTTP status for these answer slots (a rerun makes them again)."""
        query = "DELETE FROM responses WHERE ok = 0 AND status_code = %s AND source_id = ANY(%s)"
        with self._named_errors():
            return int(self._conn.execute(query, (status_code, list(source_ids))).rowcount)

    def copy_results_from(self, source: str | Path, prompt_ids: Iterable[str] | None = None) -> int:
        """Copy the results stored in ``source`` into this store (only these prompts', if given); returns rows copied.

        ``source`` is a SQLite store file (or another database store's URL), only read; it must have a
        schema this code reads. The rule of :meth:`put` holds: an answer is never replaced by an error.
        One transaction: the rows stream through a temporary table (``COPY``), then one upsert merges them.
        """
        wanted = None if prompt_ids is None else set(prompt_ids)
        with self._open_source(source) as reader, self._named_errors(), self._conn.transaction():
            self._conn.execute(f"CREATE TEMP TABLE {_INCOMING} (LIKE responses) ON COMMIT DROP")
            with self._conn.cursor() as cursor, cursor.copy(f"COPY {_INCOMING} ({_COLUMN_LIST}) FROM STDIN") as copy:
                for row in _source_rows(reader, wanted):
                    copy.write_row(row)
            return int(self._conn.execute(_MERGE).rowcount)

    def _open_source(self, source: str | Path) -> ResponseStore | PgResponseStore:
        if is_database_url(source):
            return PgResponseStore(str(source), read_only=True, password_env=self._password_env)
        path = Path(source)
        if not path.is_file():
            raise StoreUnreadable(path, "no such response store", "check the path")
        return ResponseStore(path, read_only=True)

    def execute(self, query: str, parameters: Iterable[object] = ()) -> list[tuple[object, ...]]:
        """Run one SQL statement written for the SQLite store (``?`` placeholders, see :func:`to_postgres`); its rows.

        For modules that keep their own tables in the store (``providers.batch.ledger``). Failures are
        :class:`StoreError` naming the store.
        """
        statement = to_postgres(query)
        with self._named_errors():
            cursor = self._conn.execute(statement, tuple(parameters))
            return list(cursor.fetchall()) if cursor.description is not None else []

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Make the statements run in the block (through :meth:`execute`) one commit: all or nothing."""
        with self._named_errors(), self._conn.transaction():
            yield

    def has_table(self, name: str) -> bool:
        """Whether the store has table ``name`` (on the connection's search path)."""
        rows = self.execute("SELECT pg_catalog.to_regclass(quote_ident(?)) IS NOT NULL", (name,))
        return bool(rows and rows[0][0])

    def has_results(self) -> bool:
        """Whether any result is stored."""
        return bool(self.execute("SELECT 1 FROM responses LIMIT 1"))

    def get_many(self, fingerprints: Iterable[str]) -> dict[str, CallResult]:
        """The stored results for these fingerprints (missing ones are absent from the dict)."""
        wanted = list(dict.fromkeys(fingerprints))
        found: dict[str, CallResult] = {}
        select = select_results(self.schema_version).replace(" IN ", " = ANY(%s)")
        with self._named_errors():
            for start in range(0, len(wanted), _BATCH):
                for row in self._conn.execute(select, (wanted[start : start + _BATCH],)):
                    found[row[0]] = CallResult.from_row(row[1:])
        return found

    def get_meta(self, key: str) -> str | None:
        """A run-level value recorded earlier (e.g. when the batch was first created)."""
        rows = self.execute("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def setdefault_meta(self, key: str, value: str) -> str:
        """Record ``value`` under ``key`` unless one is there already; return the value in force."""
        self.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value))
        stored = self.get_meta(key)
        assert stored is not None
        return stored


def _source_rows(reader: ResponseStore | PgResponseStore, wanted: set[str] | None) -> Iterator[tuple[object, ...]]:
    """Every row of ``reader``'s responses (of the ``wanted`` prompts), read a page at a time."""
    columns = readable_columns(reader.schema_version)
    first, following = _FIRST_PAGE.format(columns=columns), _NEXT_PAGE.format(columns=columns)
    rows = reader.execute(first, (_BATCH,))
    while rows:
        for row in rows:
            if wanted is None or row[2] in wanted:
                yield tuple(_storable(value) for value in row)
        if len(rows) < _BATCH:
            return
        rows = reader.execute(following, (rows[-1][0], _BATCH))


# ------------------------------------------------------------------------------------ one run per batch


@dataclass
class _HeldLock:
    connection: psycopg.Connection[tuple[Any, ...]]
    depth: int


_held: dict[tuple[str, str], _HeldLock] = {}
_HOLDER = re.compile(r"^rlhf-orchestrator pid (\d+) host (\S+)$")


def batch_lock_id(key: str) -> int:
    """The advisory lock key of batch ``key`` (``<project>/<batch>/<shard>``): a 64-bit hash."""
    return _lock_id(f"rlhf-orchestrator batch: {key}")


@contextmanager
def hold_pg_batch(url: str, key: str, *, password_env: str | None = None) -> Iterator[None]:
    """Hold batch ``key`` of the database store at ``url`` for the block; :class:`BatchBusy` at once if another
    session has it.

    A session-level advisory lock on its own connection, kept open for the block: the server releases it
    when that connection ends, so a killed holder never leaves it behind. Re-entrant within a process.
    """
    display = _checked_url(url)
    ident = (display, key)
    held = _held.get(ident)
    if held is None:
        held = _held[ident] = _HeldLock(_acquire(url, display, key, password_env), 0)
    held.depth += 1
    try:
        yield
    finally:
        held.depth -= 1
        if held.depth == 0:
            del _held[ident]
            held.connection.close()  # ending the session releases the lock


def _acquire(url: str, display: str, key: str, password_env: str | None) -> psycopg.Connection[tuple[Any, ...]]:
    _require_driver(display)
    import psycopg

    name = f"rlhf-orchestrator pid {os.getpid()} host {socket.gethostname()}"[:63]
    connection = _connect(url, display, password_env, application_name=name)
    lock = batch_lock_id(key)
    try:
        row = connection.execute("SELECT pg_try_advisory_lock(%s)", (lock,)).fetchone()
        if row is None or not row[0]:
            raise BatchBusy(cast(Path, f"{display} (batch {key})"), _holder(connection, lock))
    except psycopg.Error as exc:
        connection.close()
        raise _operation_error(display, exc, _secrets(password_env)) from None
    except BaseException:
        connection.close()
        raise
    return connection


def _holder(connection: psycopg.Connection[tuple[Any, ...]], lock: int) -> dict[str, object]:
    """Who holds the lock, as far as the server lets this role see (best effort)."""
    unsigned = lock & 0xFFFF_FFFF_FFFF_FFFF
    row = connection.execute(
        "SELECT a.application_name, a.backend_start FROM pg_catalog.pg_locks l "
        "JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) "
        "AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid",
        (unsigned >> 32, unsigned & 0xFFFF_FFFF),
    ).fetchone()
    if row is None:
        return {}
    holder: dict[str, object] = {}
    match = _HOLDER.match(str(row[0] or ""))
    if match:
        holder.update(pid=int(match.group(1)), host=match.group(2))
    if row[1] is not None:
        holder["started_at"] = row[1].isoformat(timespec="seconds").replace("+00:00", "Z")
    return holder
