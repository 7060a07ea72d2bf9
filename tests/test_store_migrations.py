"""The store's numbered schema migrations: the version recorded in the file, stores from before the
numbering, stores from a newer release, and read-only opens that never migrate."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from providers import store as store_module
from providers.result import CallResult
from providers.store import SCHEMA_VERSION, ResponseStore, StoreUnreadable

# The schema as providers/store.py wrote it before migrations were numbered (no version recorded).
OLD_SCHEMA = """
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


def _user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def _old_store(path: Path) -> None:
    """A store as the code before numbered migrations left it: its tables, two rows, a meta value."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(OLD_SCHEMA)
    db.execute(
        "INSERT INTO responses VALUES ('fp1', 'a', 'p1', 1, 'old answer', 'm', 'stop', 3, 5, 'r1', 12.5, 1,"
        " NULL, NULL, NULL, '2025-01-01T00:00:00Z')"
    )
    db.execute(
        "INSERT INTO responses VALUES ('fp2', 'b', 'p1', 0, NULL, NULL, NULL, NULL, NULL, NULL, 0.0, 3,"
        " 'http_500', 'HTTP 500: boom', 500, '2025-01-01T00:00:01Z')"
    )
    db.execute("INSERT INTO meta VALUES ('created_at', '2025-01-01T00:00:00Z')")
    db.close()


def test_migrations_are_numbered_and_a_new_store_records_its_version(tmp_path: Path) -> None:
    assert SCHEMA_VERSION == len(store_module.MIGRATIONS) >= 1
    path = tmp_path / "s.sqlite"
    with ResponseStore(path) as store:
        store.put("fp", "a", "p", CallResult(ok=True, text="x"))
    assert _user_version(path) == SCHEMA_VERSION


def test_a_store_from_before_numbered_migrations_opens_as_version_1_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _old_store(path)
    assert _user_version(path) == 0
    with ResponseStore(path, read_only=True) as reader:  # read as it is: the tables of version 1
        assert reader.get_many(["fp1"])["fp1"].text == "old answer"
    assert _user_version(path) == 0  # reading never writes
    with ResponseStore(path) as store:
        found = store.get_many(["fp1", "fp2"])
        assert found["fp1"] == CallResult(
            ok=True,
            text="old answer",
            model="m",
            finish_reason="stop",
            input_tokens=3,
            output_tokens=5,
            request_id="r1",
            latency_ms=12.5,
            attempts=1,
            created_at="2025-01-01T00:00:00Z",
        )
        assert found["fp2"].error_type == "http_500" and found["fp2"].status_code == 500
        assert store.get_meta("created_at") == "2025-01-01T00:00:00Z"
    assert _user_version(path) == SCHEMA_VERSION
    with ResponseStore(path) as store:  # opening again changes nothing
        assert sorted(store.get_many(["fp1", "fp2"])) == ["fp1", "fp2"]
    assert _user_version(path) == SCHEMA_VERSION


def test_migrations_run_in_order_from_the_recorded_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.sqlite"
    with ResponseStore(path) as store:
        store.put("fp", "a", "p", CallResult(ok=True, text="kept"))
    applied: list[str] = []

    def add_notes(db: sqlite3.Connection) -> None:
        applied.append("added")
        db.execute("CREATE TABLE notes (fingerprint TEXT PRIMARY KEY, note TEXT)")

    new_version = SCHEMA_VERSION + 1
    monkeypatch.setattr(store_module, "MIGRATIONS", (*store_module.MIGRATIONS, add_notes))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", new_version)
    with ResponseStore(path, read_only=True) as reader:  # read as it is: the new table is only an addition
        assert reader.schema_version == SCHEMA_VERSION and not reader.has_table("notes")
    monkeypatch.setattr(store_module, "READABLE_FROM", new_version)
    with pytest.raises(StoreUnreadable, match="older than"):  # a migration readers cannot do without
        ResponseStore(path, read_only=True)
    with ResponseStore(path) as store:
        assert store.get_many(["fp"])["fp"].text == "kept"
    with ResponseStore(path) as store:
        pass
    assert applied == ["added"] and _user_version(path) == new_version
    with ResponseStore(path, read_only=True) as reader:
        assert reader.get_many(["fp"])["fp"].text == "kept" and reader.has_table("notes")


def test_a_failed_migration_leaves_the_store_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.sqlite"
    with ResponseStore(path) as store:
        store.put("fp", "a", "p", CallResult(ok=True, text="kept"))

    def broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("boom")

    monkeypatch.setattr(store_module, "MIGRATIONS", (*store_module.MIGRATIONS, broken))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(store_module.StoreError):
        ResponseStore(path)
    assert _user_version(path) == SCHEMA_VERSION
    db = sqlite3.connect(path)
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchone() is None
    db.close()


@pytest.mark.parametrize("read_only", [False, True])
def test_a_store_newer_than_the_code_is_refused_untouched(tmp_path: Path, read_only: bool) -> None:
    path = tmp_path / "s.sqlite"
    with ResponseStore(path) as store:
        store.put("fp", "a", "p", CallResult(ok=True, text="x"))
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreUnreadable) as raised:
        ResponseStore(path, read_only=read_only)
    message = str(raised.value)
    assert str(path) in message and f"version {SCHEMA_VERSION + 1}" in message and "newer" in message
    assert "upgrade rlhf-orchestrator" in message
    assert path.read_bytes() == before


def test_copy_refuses_a_source_newer_than_the_code(tmp_path: Path) -> None:
    source, target = tmp_path / "src.sqlite", tmp_path / "dst.sqlite"
    with ResponseStore(source) as store:
        store.put("fp", "a", "p", CallResult(ok=True, text="x"))
    db = sqlite3.connect(source)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with ResponseStore(target) as store:
        with pytest.raises(StoreUnreadable, match="newer"):
            store.copy_results_from(source)
        assert store.get_many(["fp"]) == {}
        store.put("fp2", "a", "p", CallResult(ok=True, text="still writable"))  # the source was detached


def test_copy_reads_a_store_from_before_numbered_migrations(tmp_path: Path) -> None:
    source, target = tmp_path / "old.sqlite", tmp_path / "dst.sqlite"
    _old_store(source)
    with ResponseStore(target) as store:
        assert store.copy_results_from(source) == 2
        assert store.get_many(["fp1"])["fp1"].text == "old answer"
    assert _user_version(source) == 0  # the source is only read
