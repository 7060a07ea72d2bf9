"""Unit tests of the store's rules, the breaker, the answer keeper and the batch lock (no Prefect, no HTTP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from providers.breaker import Breaker
from providers.rescue import AnswerKeeper, recover_rescued
from providers.result import CallResult
from providers.store import ResponseStore, StoreUnreadable, StoreUnwritable
from providers.store_lock import BatchBusy, hold_store, lock_path

ANSWER = CallResult(ok=True, text="an answer", model="m", created_at="2026-01-01T00:00:00Z")
ERROR_500 = CallResult(ok=False, error_type="http_500", error="HTTP 500: boom", status_code=500)


def test_put_never_replaces_an_answer_with_an_error(tmp_path: Path) -> None:
    with ResponseStore(tmp_path / "s.sqlite") as store:
        store.put("fp", "a", "p1", ERROR_500)
        assert store.get_many(["fp"])["fp"].error_type == "http_500"
        store.put("fp", "a", "p1", ANSWER)  # an answer replaces an error
        store.put("fp", "a", "p1", ERROR_500)  # an error never replaces an answer
        assert store.get_many(["fp"])["fp"].text == "an answer"
        second = CallResult(ok=True, text="a newer answer")
        store.put("fp", "a", "p1", second)
        assert store.get_many(["fp"])["fp"].text == "a newer answer"


def test_discard_errors_removes_only_that_status_of_those_slots(tmp_path: Path) -> None:
    error_400 = CallResult(ok=False, error_type="http_400", error="HTTP 400: bad key", status_code=400)
    with ResponseStore(tmp_path / "s.sqlite") as store:
        store.put("f1", "gw", "p1", error_400)
        store.put("f2", "gw", "p2", error_400)
        store.put("f3", "gw", "p3", ERROR_500)
        store.put("f4", "other", "p1", error_400)
        store.put("f5", "gw", "p4", ANSWER)
        assert store.discard_errors(["gw"], 400) == 2
        assert sorted(store.get_many(["f1", "f2", "f3", "f4", "f5"])) == ["f3", "f4", "f5"]


def test_read_only_store_reads_beside_a_writer_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with ResponseStore(path) as writer:
        writer.put("fp", "a", "p", ANSWER)
        writer._db.execute("BEGIN IMMEDIATE")  # a run in the middle of a commit
        writer._db.execute("INSERT INTO meta VALUES ('k', 'v')")
        with ResponseStore(path, read_only=True) as reader:
            assert reader.get_many(["fp"])["fp"].text == "an answer"
            with pytest.raises(StoreUnwritable):
                reader.put("fp2", "a", "p", ANSWER)
        writer._db.execute("COMMIT")


def test_a_file_that_is_not_a_store_is_named_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"not sqlite at all " * 500)
    with pytest.raises(StoreUnreadable) as raised:
        ResponseStore(path)
    assert str(path) in str(raised.value) and "move it aside" in str(raised.value)


def test_copy_results_keeps_the_put_rule_and_copies_only_the_prompts_asked(tmp_path: Path) -> None:
    source, target = tmp_path / "src.sqlite", tmp_path / "dst.sqlite"
    with ResponseStore(source) as store:
        store.put("answered-there", "a", "p1", ANSWER)
        store.put("answered-here", "a", "p1", ERROR_500)  # an error never replaces the target's answer
        store.put("failed-here", "a", "p2", ANSWER)  # an answer replaces the target's error
        store.put("new", "b", "p2", ERROR_500)
        store.put("other-prompt", "a", "p3", ANSWER)
    with ResponseStore(target) as store:
        store.put("answered-here", "a", "p1", CallResult(ok=True, text="kept"))
        store.put("failed-here", "a", "p2", ERROR_500)
        assert store.copy_results_from(source, ["p1", "p2", "p1"]) == 3
        found = store.get_many(["answered-there", "answered-here", "failed-here", "new", "other-prompt"])
        assert sorted(found) == ["answered-here", "answered-there", "failed-here", "new"]
        assert found["answered-here"].text == "kept" and found["failed-here"].text == "an answer"
        assert found["answered-there"] == ANSWER and found["new"] == ERROR_500
        assert store.copy_results_from(source) == 4  # all prompts; again, the target's answer stays
        assert store.get_many(["answered-here"])["answered-here"].text == "kept"
        assert store.has_results()
    with ResponseStore(tmp_path / "empty.sqlite") as empty:
        assert not empty.has_results()


def test_copy_from_a_file_that_is_not_a_store_names_that_file(tmp_path: Path) -> None:
    source = tmp_path / "src.sqlite"
    source.write_bytes(b"not sqlite at all " * 500)
    with ResponseStore(tmp_path / "dst.sqlite") as store:
        with pytest.raises(StoreUnreadable) as raised:
            store.copy_results_from(source)
        assert str(source) in str(raised.value)
        with pytest.raises(StoreUnreadable):
            store.copy_results_from(tmp_path / "missing.sqlite")
        store.put("fp", "a", "p", ANSWER)  # still usable


# --------------------------------------------------------------------------------------------- breaker


def test_breaker_opens_after_consecutive_provider_failures_and_an_answer_resets() -> None:
    breaker = Breaker(3)
    breaker.record(False, "timeout", None, "timed out")
    breaker.record(False, "http_503", 503, "HTTP 503")
    breaker.record(True, None, None, None)
    breaker.record(False, "connection", None, "connection refused")
    breaker.record(False, "connection", None, "connection refused")
    assert not breaker.is_open
    breaker.record(False, "connection", None, "connection refused")
    assert breaker.is_open and "3 consecutive" in (breaker.reason or "")
    assert breaker.discard_status is None  # provider-level failures are final as they are


def test_breaker_leaves_prompt_errors_alone_but_cuts_off_a_run_of_the_same_4xx() -> None:
    mixed = Breaker(3)
    for status in (400, 422, 400, 413, 400):
        mixed.record(False, f"http_{status}", status, f"HTTP {status}")
    assert not mixed.is_open  # different client errors: the prompts' own problems

    gateway = Breaker(3)
    gateway.record(False, "http_400", 400, "HTTP 400: Authentication Error, Invalid proxy server token")
    gateway.record(True, None, None, None)  # an answer in between resets the run
    for _ in range(3):
        gateway.record(False, "http_400", 400, "HTTP 400: Authentication Error, Invalid proxy server token")
    assert gateway.is_open and gateway.discard_status == 400
    assert "Invalid proxy server token" in (gateway.reason or "")


def test_breaker_threshold_zero_never_opens() -> None:
    breaker = Breaker(0)
    for _ in range(50):
        breaker.record(False, "http_401", 401, "HTTP 401")
    assert not breaker.is_open


# ----------------------------------------------------------------------------------------- rescue


def test_keeper_rescues_after_the_first_failed_commit_and_the_next_run_reads_it_back(tmp_path: Path) -> None:
    path, rescue_dir = tmp_path / "s.sqlite", tmp_path / "rescue"
    store = ResponseStore(path)
    keeper = AnswerKeeper(store, rescue_dir)
    keeper.keep("f1", "a", "p1", ANSWER)
    store._db.execute("PRAGMA query_only = ON")  # from here on every commit fails, as on a full disk
    keeper.keep("f2", "a", "p2", ANSWER)
    keeper.keep("f3", "a", "p3", ERROR_500)
    keeper.close()
    store.close()
    assert keeper.failed and (keeper.counts.kept, keeper.counts.rescued, keeper.counts.lost) == (1, 2, 0)
    assert "1 are in the store, 2 were rescued" in str(keeper.failure())

    other = rescue_dir / "rlhf-rescue-other.jsonl"  # another store's rescue file is left alone
    other.write_text(json.dumps({"rescue_of": "/elsewhere/responses.sqlite"}) + "\n")
    with ResponseStore(path) as reopened:
        assert recover_rescued(reopened, rescue_dir).results == 2
        found = reopened.get_many(["f1", "f2", "f3"])
        assert found["f2"].text == "an answer" and found["f3"].status_code == 500
    assert sorted(p.name for p in rescue_dir.iterdir()) == ["rlhf-rescue-other.jsonl"]


def test_a_rescue_file_cut_short_gives_up_its_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    rescue = tmp_path / "rlhf-rescue-x.jsonl"
    line = json.dumps({"fingerprint": "f1", "source_id": "a", "prompt_id": "p1", "result": ANSWER.to_dict()})
    rescue.write_text(json.dumps({"rescue_of": str(path.resolve())}) + "\n" + line + "\n" + line[:20])
    with ResponseStore(path) as store:
        assert recover_rescued(store, tmp_path).results == 1
        assert store.get_many(["f1"])["f1"].ok


def test_keeper_counts_lost_answers_when_the_rescue_dir_cannot_be_written(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    store = ResponseStore(tmp_path / "s.sqlite")
    keeper = AnswerKeeper(store, blocked / "rescue")  # a directory under a regular file cannot exist
    store._db.execute("PRAGMA query_only = ON")
    keeper.keep("f1", "a", "p1", ANSWER)
    store.close()
    assert (keeper.counts.kept, keeper.counts.rescued, keeper.counts.lost) == (0, 0, 1)
    message = str(keeper.failure())
    assert "1 lost" in message and "none lost" not in message


# ------------------------------------------------------------------------------------------- lock


@pytest.mark.slow
def test_lock_is_reentrant_in_a_process_and_refuses_a_second_process(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    probe = textwrap.dedent(f"""
        import sys
        from providers.store_lock import BatchBusy, hold_store
        try:
            with hold_store({str(store)!r}):
                print("acquired")
        except BatchBusy as exc:
            print("busy:", exc)
    """)
    root = str(Path(__file__).resolve().parent.parent)

    def other_process() -> str:
        env = {**os.environ, "PYTHONPATH": root}
        return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60).stdout

    with hold_store(store):
        with hold_store(store):  # the CLI holds it, then the flow takes it again
            pass
        answer = other_process()
        assert answer.startswith("busy:") and f"pid {os.getpid()}" in answer
        holder = json.loads(lock_path(store).read_text())
        assert holder["pid"] == os.getpid()
    assert other_process().strip() == "acquired"


@pytest.mark.slow
def test_lock_of_a_killed_holder_is_free(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    root = str(Path(__file__).resolve().parent.parent)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import time
            from providers.store_lock import hold_store
            with hold_store({str(store)!r}):
                print("held", flush=True)
                time.sleep(600)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": root},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(BatchBusy), hold_store(store):
            pass
        holder.kill()
        holder.wait(timeout=30)
        with hold_store(store):  # no stale lock: the kernel released it with the process
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
