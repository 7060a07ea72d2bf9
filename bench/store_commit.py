"""Commit cost per answer: the SQLite response store against the PostgreSQL one.

Each ``put`` is one committed answer (what a run does as each call finishes): wall time per put, best of
``--repeats``, for an answer of ``--chars`` characters. SQLite is the default store (WAL,
``synchronous=NORMAL``); PostgreSQL is a server on loopback TCP with its defaults (``fsync`` and
``synchronous_commit`` on). Give a database with ``--pg-url`` (its password in ``PGPASSWORD``), or let
the script start a throwaway server the way the tests do (``tests/pg_server.py``: needs PostgreSQL's
binaries and, as root, a ``postgres`` or ``nobody`` account).

    .venv/bin/python bench/store_commit.py            # prints a markdown table
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import markdown_table  # noqa: E402

from providers.result import CallResult  # noqa: E402
from providers.store_factory import StoreLike, open_store  # noqa: E402


def _result(chars: int) -> CallResult:
    return CallResult(ok=True, text="x" * chars, model="m", input_tokens=20, output_tokens=chars // 4, attempts=1)


def per_put_us(store: StoreLike, puts: int, repeats: int, chars: int) -> float:
    """Best-of-``repeats`` microseconds per committed ``put`` (fresh fingerprints every time)."""
    result = _result(chars)
    best = float("inf")
    for round_ in range(repeats):
        started = time.perf_counter()
        for i in range(puts):
            store.put(f"fp-{round_}-{i}", "src", f"p-{i}", result)
        best = min(best, (time.perf_counter() - started) / puts * 1e6)
    return best


@contextmanager
def _throwaway_postgres() -> Iterator[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from pg_server import PASSWORD, PgServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL binaries (apt-get install postgresql), or give --pg-url")
    server = PgServer(bin_dir).start()
    os.environ["PGPASSWORD"] = PASSWORD
    try:
        yield server.new_database()
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--puts", type=int, default=2000, help="answers committed per round")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chars", type=int, default=800, help="characters of each answer")
    parser.add_argument("--pg-url", help="an existing empty database (password in PGPASSWORD)")
    args = parser.parse_args()

    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as scratch, open_store(Path(scratch) / "responses.sqlite") as sqlite:
        us = per_put_us(sqlite, args.puts, args.repeats, args.chars)
        rows.append(["SQLite (WAL, synchronous=NORMAL)", f"{us:.0f}"])
    database = _given(args.pg_url) if args.pg_url else _throwaway_postgres()
    with database as url, open_store(url) as pg:
        us = per_put_us(pg, args.puts, args.repeats, args.chars)
        rows.append(["PostgreSQL (loopback TCP, fsync on)", f"{us:.0f}"])
    print(markdown_table(["store", "µs per committed answer"], rows))
    return 0


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    sys.exit(main())
