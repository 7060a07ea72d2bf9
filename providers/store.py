"""The response store: every finished call, committed as it finishes, keyed by request fingerprint.

SQLite in WAL mode with ``synchronous=NORMAL``: a committed row survives the process being killed at
any moment (only an operating-system crash can lose the last commits), readers never block the writer,
and the file is one place to look at what a run has paid for.

Every SQLite or file-system failure leaves this module as one of two errors that name the file and
say what to do: :class:`StoreUnreadable` (not a store, or damaged) and :class:`StoreUnwritable` (full
disk, read-only file or directory). A run holds its store through ``providers.store_lock``; ``rlhf
status`` opens it ``read_only`` and never writes.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from providers.result import FIELD_NAMES, CallResult

# The schema is built by numbered migrations, applied in order when a store is opened for writing; the
# number of those applied is the database's ``PRAGMA user_version`` (in the file header: read without a
# table, also on a read-only or immutable open). A store from before the numbering has version 0 and the
# tables of migration 1: it is recognised as version 1 (migration 1 creates only what is missing).
# Never edit a migration that has shipped: add the next one to MIGRATIONS.


def _create_responses_and_meta(db: sqlite3.Connection) -> None:
    """Migration 1: the responses table (one row per fingerprint) and the run-level meta table."""
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS responses (
            fingerprint   TEXT PRIMARY KEY,
            source_id     TEXT NOT NULL,
            prompt_id     TEXT NOT NULL,
            ok            INTEGER NOT NULL,
            text          TEXT,
            model         TEXT,
            finish_reason TEXT,
            input_tokens  INTEGER,
            output_tokens INTEGER,
            request_id    TEXT,
            latency_ms    REAL,
            attempts      INTEGER,
            error_type    TEXT,
            error         TEXT,
            status_code   INTEGER,
            created_at    TEXT
        )
        """
    )
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def _create_batch_ledger(db: sqlite3.Connection) -> None:
    """Migration 2: the batch ledger (``providers.batch.ledger``): provider batches and the requests in them."""
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS batch_jobs (
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
        """
    )
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS batch_requests (
            custom_id TEXT PRIMARY KEY,
            job_id    TEXT NOT NULL,
            answer_id TEXT NOT NULL,
            prompt_id TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX IF NOT EXISTS batch_requests_by_job ON batch_requests (job_id)")


# Migration 3's columns: what an answer carries besides its text (``providers.result.CallResult``).
ANSWER_PART_COLUMNS: tuple[tuple[str, str], ...] = (
    ("vendor_finish_reason", "TEXT"),
    ("refusal", "TEXT"),
    ("tool_calls", "TEXT"),
    ("reasoning", "TEXT"),
    ("reasoning_tokens", "INTEGER"),
    ("cached_input_tokens", "INTEGER"),
    ("cache_write_tokens", "INTEGER"),
    ("flags", "TEXT"),
)


def _add_answer_parts(db: sqlite3.Connection) -> None:
    """Migration 3: every part of an answer (refusal, tool calls, reasoning, cache and reasoning tokens,
    the vendor's finish reason, flags) gets a column; older rows have them NULL."""
    for name, kind in ANSWER_PART_COLUMNS:
        db.execute(f"ALTER TABLE responses ADD COLUMN {name} {kind}")


# Migration 4's columns: what a call cost and the price it was paid at (``providers.costs``).
COST_COLUMNS: tuple[tuple[str, str], ...] = (("cost_usd", "REAL"), ("price", "TEXT"))


def _add_cost(db: sqlite3.Connection) -> None:
    """Migration 4: each result's cost in USD and the price used; older rows have them NULL (their cost is then
    worked out from their tokens at the provider's current price, ``providers.costs``)."""
    for name, kind in COST_COLUMNS:
        db.execute(f"ALTER TABLE responses ADD COLUMN {name} {kind}")


Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: tuple[Migration, ...] = (_create_responses_and_meta, _create_batch_ledger, _add_answer_parts, _add_cost)
SCHEMA_VERSION = len(MIGRATIONS)
READABLE_FROM = 1
"""The oldest schema a read-only open accepts: later migrations only add tables, which readers treat as
empty, and columns, which readers of an older store read as NULL (:func:`select_results`)."""

# The result's fields, in CallResult order; with the key columns, every column of a responses row.
RESULT_COLUMNS = FIELD_NAMES
COLUMNS = ("fingerprint", "source_id", "prompt_id", *RESULT_COLUMNS)
_COLUMN_LIST = ", ".join(COLUMNS)
_INSERT = f"INSERT OR REPLACE INTO responses ({_COLUMN_LIST}) VALUES ({', '.join('?' * len(COLUMNS))})"
_ANSWER_PARTS_FROM = 3  # the schema version that has ANSWER_PART_COLUMNS
_COST_FROM = 4  # the schema version that has COST_COLUMNS


def readable_columns(schema_version: int, columns: Iterable[str] = COLUMNS) -> str:
    """``columns`` as a select list for a store of this schema version: those it does not have yet are NULL."""
    missing = {name for name, _ in ANSWER_PART_COLUMNS} if schema_version < _ANSWER_PARTS_FROM else set()
    if schema_version < _COST_FROM:
        missing |= {name for name, _ in COST_COLUMNS}
    return ", ".join("NULL" if column in missing else column for column in columns)


def select_results(schema_version: int) -> str:
    """``SELECT fingerprint, <result columns> FROM responses WHERE fingerprint IN `` for a store of this
    schema version (columns it does not have yet read as NULL)."""
    return (
        f"SELECT fingerprint, {readable_columns(schema_version, RESULT_COLUMNS)} FROM responses WHERE fingerprint IN "
    )


# The put rule in SQL, for copying rows ``s`` into ``main``: an answer is never replaced by an error.
_KEEPS_ANSWERS = (
    "(s.ok = 1 OR NOT EXISTS (SELECT 1 FROM main.responses m WHERE m.fingerprint = s.fingerprint AND m.ok = 1))"
)
_BATCH = 500


class StoreError(Exception):
    """The store file could not be used; the message names the file, the cause and what to do."""

    def __init__(self, path: Path, cause: str, advice: str) -> None:
        super().__init__(f"{path}: {cause}; {advice}")
        self.path = path


class StoreUnreadable(StoreError):
    """The file is not a response store, or is damaged (``rlhf`` exits 2)."""


class StoreRejected(StoreError):
    """One result held a value the store cannot take (a bug upstream, not a fault of the store): the store
    is fine and goes on taking results."""


class StoreUnwritable(StoreError):
    """The store cannot take writes: full disk, read-only file or directory (``rlhf`` exits 4)."""


_UNREADABLE_ADVICE = (
    "move it aside (or restore it from a backup) and run again: answers missing from it are requested again"
)
_REJECTED_ADVICE = "the result is stored as a failed call instead (reason internal)"
_UNWRITABLE_ADVICE = "free space or fix the permissions of its directory, then run again"
# SQLite reports a damaged or foreign file with these; anything else is the file system refusing writes.
_DAMAGED = ("not a database", "malformed", "corrupt")


def _store_error(path: Path, exc: BaseException) -> StoreError:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.DatabaseError) and any(word in text for word in _DAMAGED):
        return StoreUnreadable(path, f"not a readable response store ({text})", _UNREADABLE_ADVICE)
    if not os.access(path.parent, os.W_OK):
        text = f"{text}: its directory is read-only"
    elif path.exists() and not os.access(path, os.W_OK):
        text = f"{text}: the file is read-only"
    return StoreUnwritable(path, f"cannot write the response store ({text})", _UNWRITABLE_ADVICE)


def _too_new(path: Path, version: int) -> StoreUnreadable:
    return StoreUnreadable(
        path,
        f"its schema is version {version}, newer than this rlhf-orchestrator knows ({SCHEMA_VERSION}):"
        " it was written by a newer release (or is not a response store)",
        "upgrade rlhf-orchestrator to use it, or move it aside to start a new store",
    )


def _schema_version(db: sqlite3.Connection, schema: str = "main") -> int:
    """The schema version of an attached database; a store from before numbered migrations is version 1."""
    version = int(db.execute(f"PRAGMA {schema}.user_version").fetchone()[0])
    if version == 0:
        query = f"SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = 'responses'"
        if db.execute(query).fetchone() is not None:
            return 1  # the tables of migration 1, recorded before the version was
    return version


def _check_readable(path: Path, version: int) -> None:
    """Refuse a store that cannot be read as it is (reading never migrates)."""
    if version > SCHEMA_VERSION:
        raise _too_new(path, version)
    if version == 0:
        raise StoreUnreadable(path, "not a response store (no responses table)", _UNREADABLE_ADVICE)
    if version < READABLE_FROM:
        raise StoreUnreadable(
            path,
            f"its schema is version {version}, older than this rlhf-orchestrator reads ({READABLE_FROM})",
            "open it once for writing (`rlhf run` of its batch) to upgrade it, then run again",
        )


def _migrate(path: Path, db: sqlite3.Connection) -> None:
    """Apply the migrations the store has not had, in one transaction, and record its new version."""
    if int(db.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION:
        return  # the common case: nothing written
    db.execute("BEGIN IMMEDIATE")
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])  # another process may have migrated it
        if version > SCHEMA_VERSION:
            raise _too_new(path, version)
        for migration in MIGRATIONS[version:]:
            migration(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


@contextmanager
def _named_errors(path: Path) -> Iterator[None]:
    """Turn SQLite and OS errors into :class:`StoreError` naming ``path``."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise _store_error(path, exc) from None


class ResponseStore:
    """A single-writer view of the store file (one per process; SQLite serialises writers across them).

    Opening for writing applies the schema migrations the file has not had (a new file gets them all).
    ``read_only`` opens an existing store for reading only (``rlhf status``): no migration, no journal
    change, nothing written, safe beside a run that is writing; a store that would need a migration is
    refused. Either way a store of a newer schema version than this code knows is refused
    (:class:`StoreUnreadable`).
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        db: sqlite3.Connection | None = None
        try:
            db = self._open_read_only() if read_only else self._open_for_writing()
            self._check(db)
            if read_only:
                self.schema_version = _schema_version(db)
                _check_readable(self.path, self.schema_version)
            else:
                version = int(db.execute("PRAGMA user_version").fetchone()[0])
                if version > SCHEMA_VERSION:
                    raise _too_new(self.path, version)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                _migrate(self.path, db)
                self.schema_version = SCHEMA_VERSION
        except BaseException as exc:
            if db is not None:
                db.close()
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise _store_error(self.path, exc) from None
            raise
        self._db = db

    def _open_for_writing(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)

    def _open_read_only(self) -> sqlite3.Connection:
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        if not os.access(self.path.parent, os.W_OK):
            # On read-only media SQLite cannot create the WAL's index file; nobody can be writing there.
            uri += "&immutable=1"
        return sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30, isolation_level=None)

    @staticmethod
    def _check(db: sqlite3.Connection) -> None:
        """Fail now, not mid-run, on a file that is not a store or is damaged (reads each page once)."""
        row = db.execute("PRAGMA quick_check(1)").fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed: {row[0] if row else 'no result'}")

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> ResponseStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def put(self, fingerprint: str, source_id: str, prompt_id: str, result: CallResult) -> None:
        """Commit one finished call (an answer or a final error). An answer is never replaced by an error.

        Raises :class:`StoreError` if the commit failed (nothing of it is then in the store).
        """
        with _named_errors(self.path):
            if not result.ok and self._has_answer(fingerprint):
                return
            try:
                self._db.execute(_INSERT, (fingerprint, source_id, prompt_id, *result.to_row()))
            except (sqlite3.InterfaceError, sqlite3.ProgrammingError, ValueError, TypeError, OverflowError) as exc:
                cause = f"cannot store this result ({type(exc).__name__}: {exc})"
                raise StoreRejected(self.path, cause, _REJECTED_ADVICE) from None

    def discard_errors(self, source_ids: Iterable[str], status_code: int) -> int:
        """Forget the stored errors with this HTTP status for these answer slots (so a rerun makes them again).

        For failures that turned out to be the provider's, not the prompts' (the breaker's verdict on a
        run of identical client errors, e.g. a gateway's 400 for a bad key). Returns the rows removed.
        """
        ids = list(source_ids)
        query = (
            "DELETE FROM responses WHERE ok = 0 AND status_code = ? AND source_id IN (" + ",".join("?" * len(ids)) + ")"
        )
        with _named_errors(self.path):
            return self._db.execute(query, (status_code, *ids)).rowcount

    def copy_results_from(self, source: str | Path, prompt_ids: Iterable[str] | None = None) -> int:
        """Copy the results stored in ``source`` into this store (only these prompts', if given); returns rows copied.

        The rule of :meth:`put` holds: an answer is never replaced by an error. One transaction, in SQL
        (``source`` attached, rows never pass through Python): this is how whole shard stores are merged.
        ``source`` is only read; it must have this code's schema version (a run's store always has).
        """
        source = Path(source)
        if not source.is_file():
            raise StoreUnreadable(source, "no such response store", "check the path")
        with _named_errors(source):
            self._db.execute("ATTACH DATABASE ? AS src", (str(source),))
        try:
            with _named_errors(source):
                version = _schema_version(self._db, "src")
                _check_readable(source, version)
            with _named_errors(self.path):
                return self._copy_attached(prompt_ids, version)
        finally:
            with _named_errors(self.path):
                self._db.execute("DETACH DATABASE src")

    def _copy_attached(self, prompt_ids: Iterable[str] | None, version: int) -> int:
        selected = readable_columns(version)
        where = _KEEPS_ANSWERS
        self._db.execute("BEGIN")
        try:
            if prompt_ids is not None:
                self._db.execute("CREATE TEMP TABLE wanted (prompt_id TEXT PRIMARY KEY)")
                self._db.executemany("INSERT OR IGNORE INTO temp.wanted VALUES (?)", ((pid,) for pid in prompt_ids))
                where = f"s.prompt_id IN (SELECT prompt_id FROM temp.wanted) AND {where}"
            cursor = self._db.execute(
                f"INSERT OR REPLACE INTO main.responses ({_COLUMN_LIST}) "
                f"SELECT {selected} FROM src.responses s WHERE {where}"
            )
            copied = cursor.rowcount
            if prompt_ids is not None:
                self._db.execute("DROP TABLE temp.wanted")
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return copied

    def execute(self, query: str, parameters: Iterable[object] = ()) -> list[tuple[object, ...]]:
        """Run one SQL statement on the store (for modules that keep their own tables in it, such as
        ``providers.batch.ledger``); its rows. Failures are :class:`StoreError` naming the file."""
        with _named_errors(self.path):
            return self._db.execute(query, tuple(parameters)).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Make the statements run in the block (through :meth:`execute`) one commit: all or nothing."""
        with _named_errors(self.path):
            self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            with _named_errors(self.path):
                self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def has_table(self, name: str) -> bool:
        """Whether the store has table ``name`` (a store read as it is may predate a migration)."""
        return bool(self.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    def has_results(self) -> bool:
        """Whether any result is stored."""
        with _named_errors(self.path):
            return self._db.execute("SELECT 1 FROM responses LIMIT 1").fetchone() is not None

    def _has_answer(self, fingerprint: str) -> bool:
        row = self._db.execute("SELECT 1 FROM responses WHERE fingerprint = ? AND ok = 1", (fingerprint,)).fetchone()
        return row is not None

    def get_many(self, fingerprints: Iterable[str]) -> dict[str, CallResult]:
        """The stored results for these fingerprints (missing ones are absent from the dict)."""
        wanted = list(dict.fromkeys(fingerprints))
        found: dict[str, CallResult] = {}
        with _named_errors(self.path):
            self._get_into(found, wanted)
        return found

    def _get_into(self, found: dict[str, CallResult], wanted: list[str]) -> None:
        select = select_results(self.schema_version)
        for start in range(0, len(wanted), _BATCH):
            part = wanted[start : start + _BATCH]
            query = select + "(" + ",".join("?" * len(part)) + ")"
            for row in self._db.execute(query, part):
                found[row[0]] = CallResult.from_row(row[1:])

    def get_meta(self, key: str) -> str | None:
        """A run-level value recorded earlier (e.g. when the batch was first created)."""
        with _named_errors(self.path):
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def setdefault_meta(self, key: str, value: str) -> str:
        """Record ``value`` under ``key`` unless one is there already; return the value in force."""
        with _named_errors(self.path):
            self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
        stored = self.get_meta(key)
        assert stored is not None
        return stored
