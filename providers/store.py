"""The response store: every finished call, committed as it finishes, keyed by request fingerprint.

SQLite in WAL mode with ``synchronous=NORMAL``: a committed row survives the process being killed at
any moment (only an operating-system crash can lose the last commits), readers never block the writer,
and the file is one place to look at what a run has paid for.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from providers.result import CallResult

SCHEMA = """
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
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_RESULT_COLUMNS = (
    "ok", "text", "model", "finish_reason", "input_tokens", "output_tokens", "request_id",
    "latency_ms", "attempts", "error_type", "error", "status_code", "created_at",
)
_INSERT = (
    "INSERT OR REPLACE INTO responses (fingerprint, source_id, prompt_id, "
    + ", ".join(_RESULT_COLUMNS)
    + ") VALUES (" + ", ".join("?" * (3 + len(_RESULT_COLUMNS))) + ")"
)
_SELECT = "SELECT fingerprint, " + ", ".join(_RESULT_COLUMNS) + " FROM responses WHERE fingerprint IN "
_BATCH = 500


class ResponseStore:
    """A single-writer view of the store file (one per process; SQLite serialises writers across them)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> "ResponseStore":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def put(self, fingerprint: str, source_id: str, prompt_id: str, result: CallResult) -> None:
        """Commit one finished call (an answer or a final error). An answer is never replaced by an error."""
        if not result.ok and self._has_answer(fingerprint):
            return
        values = (fingerprint, source_id, prompt_id) + tuple(getattr(result, c) for c in _RESULT_COLUMNS)
        self._db.execute(_INSERT, values)

    def _has_answer(self, fingerprint: str) -> bool:
        row = self._db.execute("SELECT 1 FROM responses WHERE fingerprint = ? AND ok = 1", (fingerprint,)).fetchone()
        return row is not None

    def get_many(self, fingerprints: Iterable[str]) -> dict[str, CallResult]:
        """The stored results for these fingerprints (missing ones are absent from the dict)."""
        wanted = list(dict.fromkeys(fingerprints))
        found: dict[str, CallResult] = {}
        for start in range(0, len(wanted), _BATCH):
            part = wanted[start : start + _BATCH]
            query = _SELECT + "(" + ",".join("?" * len(part)) + ")"
            for row in self._db.execute(query, part):
                found[row[0]] = CallResult(*((bool(row[1]),) + tuple(row[2:])))
        return found

    def get_meta(self, key: str) -> str | None:
        """A run-level value recorded earlier (e.g. when the batch was first created)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def setdefault_meta(self, key: str, value: str) -> str:
        """Record ``value`` under ``key`` unless one is there already; return the value in force."""
        self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
        stored = self.get_meta(key)
        assert stored is not None
        return stored
