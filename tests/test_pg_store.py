"""The response store on a real PostgreSQL (``tests/pg_server.py``): the SQLite store's rules, the batch
ledger on it, migrations, read-only opens, concurrent writers, the advisory batch lock, and errors that
name the store but never its password."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

import pytest
from conftest import closed_port_url
from pg_server import PASSWORD, PASSWORD_ENV, ROLE, PgServer

from providers import pg_store
from providers.batch.ledger import COLLECTED, PREPARED, SUBMITTED, BatchLedger, LedgerRequest
from providers.pg_store import INSTALL_HINT, PgResponseStore, hold_pg_batch, is_database_url, mask_url, to_postgres
from providers.result import CallResult
from providers.store import SCHEMA_VERSION, ResponseStore, StoreError, StoreUnreadable, StoreUnwritable
from providers.store_factory import open_store
from providers.store_lock import BatchBusy

ROOT = Path(__file__).resolve().parent.parent
ANSWER = CallResult(ok=True, text="an answer", model="m", created_at="2026-01-01T00:00:00Z")
ERROR_500 = CallResult(ok=False, error_type="http_500", error="HTTP 500: boom", status_code=500)
FULL = CallResult(
    ok=True,
    text="Ünïcödé answer — with 'quotes', %s, ? and 100% of a \"ledger\"",
    model="gpt-4o-2024-08-06",
    finish_reason="stop",
    input_tokens=2**40,
    output_tokens=7,
    request_id="req_123",
    latency_ms=1234.5678901234,
    attempts=3,
    error_type=None,
    error=None,
    status_code=None,
    created_at="2026-01-01T00:00:00.123Z",
)
FULL_ERROR = CallResult(
    ok=False,
    latency_ms=0.25,
    attempts=5,
    error_type="http_422",
    error="HTTP 422: unprocessable",
    status_code=422,
    created_at="2026-01-02T00:00:00Z",
)


def open_pg(url: str, *, read_only: bool = False) -> PgResponseStore:
    """The store at ``url`` with the test role's password from its environment variable."""
    return PgResponseStore(url, read_only=read_only, password_env=PASSWORD_ENV)


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def database_state(server: PgServer, url: str) -> dict[str, object]:
    """The tables of the database, its recorded versions and row counts (to check that nothing changed)."""
    with server.admin(url.rsplit("/", 1)[1]) as db:
        tables = sorted(r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
        state: dict[str, object] = {"tables": tables}
        for table in tables:
            state[table] = db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
    return state


# ------------------------------------------------------------------------------------- without a server


def test_database_urls_are_told_from_paths() -> None:
    assert is_database_url("postgresql://u@h:5432/db") and is_database_url("POSTGRES://u@h/db")
    assert not is_database_url("responses.sqlite") and not is_database_url(Path("postgresql://u@h/db"))
    assert not is_database_url("mysql://u@h/db")


@pytest.mark.parametrize(
    "url",
    ["postgresql://rlhf:s3cret-pw@127.0.0.1:1/db", "postgres://rlhf@127.0.0.1:1/db?sslmode=disable&password=s3cret-pw"],
)
def test_a_url_with_a_password_is_refused_and_masked(url: str) -> None:
    with pytest.raises(StoreUnreadable) as raised:
        PgResponseStore(url)
    message = str(raised.value)
    assert "s3cret-pw" not in message and "***" in message
    assert "PGPASSWORD" in message and "pgpass" in message and "password_env" in message
    with pytest.raises(StoreUnreadable) as raised_lock, hold_pg_batch(url, "p/b/0"):
        pass
    assert "s3cret-pw" not in str(raised_lock.value)
    assert mask_url("postgresql://u:pw@h:1/db?password=x&a=b") == "postgresql://u:***@h:1/db?password=***&a=b"
    assert mask_url("postgresql://u@h:1/db") == "postgresql://u@h:1/db"


def test_without_psycopg_a_database_store_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now raises ImportError
    url = "postgresql://rlhf@127.0.0.1:1/db"
    for attempt in (lambda: open_store(url), lambda: hold_pg_batch(url, "p/b/0").__enter__()):
        with pytest.raises(StoreUnreadable) as raised:
            attempt()
        assert INSTALL_HINT in str(raised.value) and url in str(raised.value)


def test_statements_for_the_sqlite_store_translate_for_psycopg() -> None:
    assert to_postgres("SELECT x FROM t WHERE a = ? AND b IN (?,?)") == "SELECT x FROM t WHERE a = %s AND b IN (%s,%s)"
    assert to_postgres("SELECT '?', \"a?\" FROM t WHERE c LIKE '10%' AND d = ?") == (
        "SELECT '?', \"a?\" FROM t WHERE c LIKE '10%%' AND d = %s"
    )
    assert to_postgres("insert or ignore into meta (key, value) values (?, ?);") == (
        "INSERT INTO meta (key, value) values (%s, %s) ON CONFLICT DO NOTHING"
    )
    with pytest.raises(ValueError, match="ON CONFLICT"):
        to_postgres("INSERT OR REPLACE INTO meta VALUES (?, ?)")


def test_open_store_gives_a_sqlite_store_for_a_path(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.sqlite", password_env="IGNORED") as store:
        assert isinstance(store, ResponseStore)
        store.put("fp", "a", "p", ANSWER)
    with open_store(str(tmp_path / "s.sqlite"), read_only=True) as store:
        assert store.get_many(["fp"])["fp"] == ANSWER


def test_a_password_env_that_is_not_set_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLHF_NO_SUCH_PASSWORD", raising=False)
    with pytest.raises(StoreUnreadable, match="RLHF_NO_SUCH_PASSWORD"):
        PgResponseStore("postgresql://rlhf@127.0.0.1:1/db", password_env="RLHF_NO_SUCH_PASSWORD")


# ---------------------------------------------------------------------------------------- the store's rules


@pytest.mark.slow
def test_every_field_of_a_result_round_trips(postgres_url: str) -> None:
    with open_store(postgres_url, password_env=PASSWORD_ENV) as store:
        assert isinstance(store, PgResponseStore) and store.path == postgres_url
        assert not store.has_results()
        store.put("f-answer", "src", "p1", FULL)
        store.put("f-error", "src", "p1", FULL_ERROR)
        store.put("f-nul", "src", "p2", CallResult(ok=True, text="before\x00after"))
        found = store.get_many(["f-answer", "f-error", "f-nul", "missing", "f-answer"])
        assert found == {
            "f-answer": FULL,
            "f-error": FULL_ERROR,
            "f-nul": CallResult(ok=True, text="before\ufffdafter"),
        }
        assert store.has_results()
        many = [f"bulk-{i}" for i in range(1200)]  # more than one query's worth
        for fingerprint in many:
            store.put(fingerprint, "src", "p3", ANSWER)
        assert len(store.get_many(many)) == 1200


@pytest.mark.slow
def test_put_never_replaces_an_answer_with_an_error(postgres_url: str) -> None:
    with open_pg(postgres_url) as store:
        store.put("fp", "a", "p1", ERROR_500)
        assert store.get_many(["fp"])["fp"].error_type == "http_500"
        store.put("fp", "a", "p1", ANSWER)  # an answer replaces an error
        store.put("fp", "a", "p1", ERROR_500)  # an error never replaces an answer
        assert store.get_many(["fp"])["fp"].text == "an answer"
        store.put("fp", "a", "p1", CallResult(ok=True, text="a newer answer"))
        assert store.get_many(["fp"])["fp"].text == "a newer answer"
        error_400 = CallResult(ok=False, error_type="http_400", status_code=400)
        store.put("e", "a", "p1", ERROR_500)
        store.put("e", "a", "p1", error_400)  # an error replaces an error
        assert store.get_many(["e"])["e"].status_code == 400


@pytest.mark.slow
def test_meta_is_set_once_and_discard_errors_removes_only_that_status(postgres_url: str) -> None:
    error_400 = CallResult(ok=False, error_type="http_400", error="HTTP 400: bad key", status_code=400)
    with open_pg(postgres_url) as store:
        assert store.get_meta("created_at") is None
        assert store.setdefault_meta("created_at", "t1") == "t1"
        assert store.setdefault_meta("created_at", "t2") == "t1"
        store.put("f1", "gw", "p1", error_400)
        store.put("f2", "gw", "p2", error_400)
        store.put("f3", "gw", "p3", ERROR_500)
        store.put("f4", "other", "p1", error_400)
        store.put("f5", "gw", "p4", ANSWER)
        assert store.discard_errors(["gw"], 400) == 2
        assert store.discard_errors([], 400) == 0
        assert sorted(store.get_many(["f1", "f2", "f3", "f4", "f5"])) == ["f3", "f4", "f5"]


@pytest.mark.slow
def test_two_processes_write_at_once_without_losing_a_result(postgres_url: str) -> None:
    """Both open a new database together (the migration race), then write 500 results each; 100 keys are
    written by both, one with answers and one with errors: the answers stay."""
    code = textwrap.dedent("""
        import sys
        from providers.pg_store import PgResponseStore
        from providers.result import CallResult
        url, name, env, ok = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "answers"
        sys.stdin.readline()
        with PgResponseStore(url, password_env=env) as store:
            for i in range(500):
                if i % 5 == 0:
                    result = CallResult(ok=True, text=f"shared {i}") if ok else CallResult(ok=False, error="boom", status_code=500)
                    store.put(f"shared-{i // 5}", "both", "p", result)
                else:
                    store.put(f"{name}-{i}", name, "p", CallResult(ok=True, text=f"{name} {i}", attempts=i))
        print("done")
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", code, postgres_url, name, PASSWORD_ENV, kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name, kind in (("a", "answers"), ("b", "errors"))
    ]
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()
    for writer in writers:
        out, err = writer.communicate(timeout=180)
        assert writer.returncode == 0 and out.strip() == "done", err
    with open_pg(postgres_url, read_only=True) as store:
        own = {f"{name}-{i}" for name in "ab" for i in range(500) if i % 5}
        shared = {f"shared-{k}" for k in range(100)}
        found = store.get_many(own | shared)
        assert set(found) == own | shared
        assert all(found[f].ok and found[f].text == f"shared {int(f[7:]) * 5}" for f in shared)
        assert found["b-499"] == CallResult(ok=True, text="b 499", attempts=499)
        versions = store.execute("SELECT version FROM schema_version ORDER BY version")
        assert versions == [(n,) for n in range(1, SCHEMA_VERSION + 1)]


# ------------------------------------------------------------------------------------------- migrations


@pytest.mark.slow
def test_migrations_are_recorded_and_reopening_changes_nothing(postgres_server: PgServer, postgres_url: str) -> None:
    assert pg_store.SCHEMA_VERSION == SCHEMA_VERSION == len(pg_store.MIGRATIONS)  # in step with SQLite
    with open_pg(postgres_url) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert all(store.has_table(t) for t in ("responses", "meta", "batch_jobs", "batch_requests"))
        assert not store.has_table("notes")
        store.put("fp", "a", "p", ANSWER)
    before = database_state(postgres_server, postgres_url)
    assert [row[0] for row in before["schema_version"]] == list(range(1, SCHEMA_VERSION + 1))
    with open_pg(postgres_url):
        pass
    assert database_state(postgres_server, postgres_url) == before


@pytest.mark.slow
def test_migrations_run_in_order_from_the_recorded_version(
    postgres_url: str, postgres_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_pg(postgres_url) as store:
        store.put("fp", "a", "p", CallResult(ok=True, text="kept"))
    new_version = SCHEMA_VERSION + 1
    monkeypatch.setattr(
        pg_store,
        "MIGRATIONS",
        (*pg_store.MIGRATIONS, ("CREATE TABLE notes (fingerprint TEXT PRIMARY KEY, note TEXT)",)),
    )
    monkeypatch.setattr(pg_store, "SCHEMA_VERSION", new_version)
    with open_pg(postgres_url, read_only=True) as reader:  # read as it is: the new table is only an addition
        assert reader.schema_version == SCHEMA_VERSION and not reader.has_table("notes")
    monkeypatch.setattr(pg_store, "READABLE_FROM", new_version)
    with pytest.raises(StoreUnreadable, match="older than"):
        open_pg(postgres_url, read_only=True)
    with open_pg(postgres_url) as store:
        assert store.schema_version == new_version and store.get_many(["fp"])["fp"].text == "kept"
    with open_pg(postgres_url, read_only=True) as reader:
        assert reader.has_table("notes") and reader.schema_version == new_version
    state = database_state(postgres_server, postgres_url)
    assert [row[0] for row in state["schema_version"]] == list(range(1, new_version + 1))


@pytest.mark.slow
def test_a_failed_migration_leaves_the_store_as_it_was(
    postgres_url: str, postgres_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_pg(postgres_url) as store:
        store.put("fp", "a", "p", CallResult(ok=True, text="kept"))
    before = database_state(postgres_server, postgres_url)
    monkeypatch.setattr(
        pg_store, "MIGRATIONS", (*pg_store.MIGRATIONS, ("CREATE TABLE half_done (x int)", "SELECT 1/0"))
    )
    monkeypatch.setattr(pg_store, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="division by zero"):
        open_pg(postgres_url)
    assert database_state(postgres_server, postgres_url) == before


@pytest.mark.slow
@pytest.mark.parametrize("read_only", [False, True])
def test_a_store_newer_than_the_code_is_refused_untouched(
    postgres_url: str, postgres_server: PgServer, read_only: bool
) -> None:
    with open_pg(postgres_url) as store:
        store.put("fp", "a", "p", ANSWER)
    with postgres_server.admin(postgres_url.rsplit("/", 1)[1]) as db:
        db.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    before = database_state(postgres_server, postgres_url)
    with pytest.raises(StoreUnreadable) as raised:
        open_pg(postgres_url, read_only=read_only)
    message = str(raised.value)
    assert postgres_url in message and f"version {SCHEMA_VERSION + 1}" in message and "newer" in message
    assert "upgrade rlhf-orchestrator" in message
    assert database_state(postgres_server, postgres_url) == before


# -------------------------------------------------------------------------------------------- read-only


@pytest.mark.slow
def test_read_only_refuses_a_database_without_a_store_and_creates_nothing(
    postgres_url: str, postgres_server: PgServer
) -> None:
    with pytest.raises(StoreUnreadable, match="not a response store") as raised:
        open_pg(postgres_url, read_only=True)
    assert postgres_url in str(raised.value)
    assert database_state(postgres_server, postgres_url) == {"tables": []}


@pytest.mark.slow
def test_read_only_reads_beside_a_writer_and_writes_nothing(postgres_url: str, postgres_server: PgServer) -> None:
    with open_pg(postgres_url) as writer:
        writer.put("fp", "a", "p", ANSWER)
        writer.setdefault_meta("created_at", "t0")
        with writer.transaction():  # a run in the middle of a commit
            writer.execute("INSERT INTO meta VALUES (?, ?)", ("k", "v"))
            with open_pg(postgres_url, read_only=True) as reader:
                assert reader.get_many(["fp"])["fp"] == ANSWER and reader.get_meta("k") is None
                before = database_state(postgres_server, postgres_url)
                for write in (
                    lambda: reader.put("fp2", "a", "p", ANSWER),
                    lambda: reader.setdefault_meta("other", "x"),
                    lambda: reader.discard_errors(["a"], 500),
                    lambda: BatchLedger(reader).prepare("j", "a", [LedgerRequest("c", "a", "p")]),
                    lambda: reader.copy_results_from(postgres_url),
                ):
                    with pytest.raises(StoreUnwritable, match="read-only"):
                        write()
                assert reader.execute("SHOW default_transaction_read_only") == [("on",)]
                assert reader.get_meta("created_at") == "t0"  # still usable after the refusals
                assert database_state(postgres_server, postgres_url) == before
    with open_pg(postgres_url, read_only=True) as reader:
        assert reader.get_meta("k") == "v"


@pytest.mark.slow
def test_a_role_without_rights_gets_a_named_write_error(postgres_server: PgServer, postgres_url: str) -> None:
    from psycopg import sql

    with postgres_server.admin() as db:
        db.execute(sql.SQL("CREATE ROLE rlhf_guest LOGIN PASSWORD {}").format(sql.Literal(PASSWORD)))
    guest_url = postgres_url.replace(f"{ROLE}@", "rlhf_guest@")
    with pytest.raises(StoreUnwritable) as raised:
        open_pg(guest_url)  # may not create tables in the owner's database
    assert guest_url in str(raised.value) and "permission denied" in str(raised.value) and "grant" in str(raised.value)


# ------------------------------------------------------------------------------------------- the ledger


@pytest.mark.slow
def test_the_batch_ledger_works_on_a_database_store(postgres_url: str) -> None:
    with open_pg(postgres_url) as store:
        ledger = BatchLedger(store)
        assert ledger.open_jobs() == [] and ledger.known_remote_ids() == set()
        requests = [LedgerRequest(f"fp-{i}", "gpt", f"p-{i}") for i in range(700)]
        job = ledger.prepare("job-1", "gpt", requests)
        other = ledger.prepare("job-2", "claude", [LedgerRequest("fp-x", "claude", "p-x")])
        assert job.state == PREPARED and job.request_count == 700
        assert ledger.pending([f"fp-{i}" for i in range(0, 800, 7)] + ["fp-x"]) == {
            f"fp-{i}" for i in range(0, 700, 7)
        } | {"fp-x"}
        assert ledger.requests("job-1")["fp-3"] == LedgerRequest("fp-3", "gpt", "p-3")
        with pytest.raises(StoreUnwritable):  # a request is in at most one unfinished batch
            ledger.prepare("job-3", "gpt", [LedgerRequest("fp-9", "gpt", "p-9")])
        assert [j.job_id for j in ledger.open_jobs()] == ["job-1", "job-2"]  # job-3 left nothing behind
        ledger.submitted(job, "batch_abc")
        ledger.observed(job, "in_progress", {"done": 3, "total": 700})
        reread = BatchLedger(store).open_jobs("gpt")
        assert len(reread) == 1 and reread[0].state == SUBMITTED and reread[0].remote_id == "batch_abc"
        assert reread[0].counts == {"done": 3, "total": 700} and reread[0].remote_status == "in_progress"
        assert ledger.known_remote_ids() == {"batch_abc"}
        ledger.finish(job)
        assert job.state == COLLECTED and ledger.pending(["fp-0"]) == set()
        assert [j.job_id for j in ledger.open_jobs()] == ["job-2"]
        ledger.drop(other)
        assert ledger.open_jobs() == [] and ledger.pending(["fp-x"]) == set()
        assert store.execute("SELECT state FROM batch_jobs") == [(COLLECTED,)]


# ------------------------------------------------------------------------------------------------ copy


@pytest.mark.slow
def test_copy_from_a_sqlite_store_keeps_the_put_rule(tmp_path: Path, postgres_url: str) -> None:
    source = tmp_path / "src.sqlite"
    with ResponseStore(source) as store:
        store.put("answered-there", "a", "p1", FULL)
        store.put("answered-here", "a", "p1", ERROR_500)  # an error never replaces the target's answer
        store.put("failed-here", "a", "p2", ANSWER)  # an answer replaces the target's error
        store.put("new", "b", "p2", FULL_ERROR)
        store.put("other-prompt", "a", "p3", ANSWER)
        for i in range(1100):  # more than one page
            store.put(f"bulk-{i:04d}", "c", "p4", CallResult(ok=True, text=f"t{i}", latency_ms=i / 3))
    with open_pg(postgres_url) as target:
        target.put("answered-here", "a", "p1", CallResult(ok=True, text="kept"))
        target.put("failed-here", "a", "p2", ERROR_500)
        assert target.copy_results_from(source, ["p1", "p2", "p1"]) == 3
        found = target.get_many(["answered-there", "answered-here", "failed-here", "new", "other-prompt"])
        assert sorted(found) == ["answered-here", "answered-there", "failed-here", "new"]
        assert found["answered-here"].text == "kept" and found["failed-here"] == ANSWER
        assert found["answered-there"] == FULL and found["new"] == FULL_ERROR
        assert target.copy_results_from(source) == 4 + 1100  # all prompts; again, the target's answer stays
        assert target.get_many(["answered-here"])["answered-here"].text == "kept"
        assert target.get_many(["bulk-1099"])["bulk-1099"] == CallResult(ok=True, text="t1099", latency_ms=1099 / 3)
        not_a_store = tmp_path / "junk.sqlite"
        not_a_store.write_bytes(b"not sqlite at all " * 500)
        for bad in (not_a_store, tmp_path / "missing.sqlite"):
            with pytest.raises(StoreUnreadable) as raised:
                target.copy_results_from(bad)
            assert str(bad) in str(raised.value)
        target.put("fp", "a", "p", ANSWER)  # still usable


# ------------------------------------------------------------------------------------------------- lock


HOLDER = """
    import sys, time
    from providers.pg_store import hold_pg_batch
    with hold_pg_batch(sys.argv[1], sys.argv[2], password_env=sys.argv[3]):
        print("held", flush=True)
        time.sleep(600)
"""
PROBE = """
    import sys
    from providers.pg_store import hold_pg_batch
    from providers.store_lock import BatchBusy
    try:
        with hold_pg_batch(sys.argv[1], sys.argv[2], password_env=sys.argv[3]):
            print("acquired")
    except BatchBusy as exc:
        print("busy:", exc)
"""


@pytest.mark.slow
def test_the_batch_lock_is_reentrant_and_refuses_another_session(postgres_url: str) -> None:
    key = "project/b1/0"
    with hold_pg_batch(postgres_url, key, password_env=PASSWORD_ENV):
        with hold_pg_batch(postgres_url, key, password_env=PASSWORD_ENV):  # the CLI, then the flow
            pass
        answer = run_python(PROBE, postgres_url, key, PASSWORD_ENV).stdout
        assert answer.startswith("busy:") and f"pid {os.getpid()}" in answer and postgres_url in answer, answer
        assert run_python(PROBE, postgres_url, "project/b1/1", PASSWORD_ENV).stdout.strip() == "acquired"
    assert run_python(PROBE, postgres_url, key, PASSWORD_ENV).stdout.strip() == "acquired"


@pytest.mark.slow
def test_the_batch_lock_of_a_killed_holder_is_free(postgres_url: str) -> None:
    key = "project/b1/0"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), postgres_url, key, PASSWORD_ENV],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(BatchBusy) as raised, hold_pg_batch(postgres_url, key, password_env=PASSWORD_ENV):
            pass
        assert raised.value.holder.get("pid") == holder.pid
        holder.kill()  # SIGKILL: no chance to unlock
        holder.wait(timeout=30)
        deadline = time.monotonic() + 30
        while True:  # the server ends the session when it sees the connection close
            try:
                with hold_pg_batch(postgres_url, key, password_env=PASSWORD_ENV):
                    break
            except BatchBusy:
                assert time.monotonic() < deadline, "the lock of a killed holder was not released"
                time.sleep(0.05)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


# ------------------------------------------------------------------------------------------------ errors


def _full_text(exc: BaseException) -> str:
    return str(exc) + "".join(traceback.format_exception(exc))


@pytest.mark.slow
def test_a_wrong_password_is_named_but_never_shown(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLHF_WRONG_PASSWORD", "wrong-Pw-4f9c1")
    with pytest.raises(StoreUnreadable) as raised:
        PgResponseStore(postgres_url, password_env="RLHF_WRONG_PASSWORD")
    message = _full_text(raised.value)
    assert "wrong-Pw-4f9c1" not in message and PASSWORD not in message
    assert postgres_url in message and "password authentication failed" in message and "PGPASSWORD" in message
    monkeypatch.setenv("PGPASSWORD", "wrong-Pgpassword-77")
    with pytest.raises(StoreUnreadable) as raised:
        PgResponseStore(postgres_url)
    assert "wrong-Pgpassword-77" not in _full_text(raised.value)
    with pytest.raises(StoreUnreadable) as raised_lock, hold_pg_batch(postgres_url, "p/b/0"):
        pass
    assert "wrong-Pgpassword-77" not in _full_text(raised_lock.value)


@pytest.mark.slow
def test_libpq_finds_the_password_in_pgpassfile(
    postgres_url: str, postgres_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{postgres_server.port}:*:{ROLE}:{PASSWORD}\n")
    passfile.chmod(0o600)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    with PgResponseStore(postgres_url) as store:
        store.put("fp", "a", "p", ANSWER)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    monkeypatch.delenv("PGPASSFILE")
    with PgResponseStore(postgres_url, read_only=True) as store:
        assert store.get_many(["fp"])["fp"] == ANSWER


@pytest.mark.slow
def test_an_unreachable_server_is_named_with_advice(postgres_server: PgServer) -> None:
    url = postgres_server.url("store_x", port=int(closed_port_url().rsplit(":", 1)[1]))
    with pytest.raises(StoreUnreadable) as raised:
        open_pg(url)
    message = _full_text(raised.value)
    assert url in message and "cannot connect" in message and "PostgreSQL is running" in message
    assert PASSWORD not in message
    with pytest.raises(StoreUnreadable, match="cannot connect"), hold_pg_batch(url, "p/b/0", password_env=PASSWORD_ENV):
        pass
    missing = postgres_server.url("no_such_database")
    with pytest.raises(StoreUnreadable, match="does not exist") as raised:
        open_pg(missing)
    assert PASSWORD not in _full_text(raised.value)
