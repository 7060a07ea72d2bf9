"""Open a response store by where it is: a SQLite file (a path) or a PostgreSQL database (a URL).

:func:`open_store` gives a :class:`providers.store.ResponseStore` for a path and a
:class:`providers.pg_store.PgResponseStore` for ``postgresql://`` or ``postgres://``. Both have the
methods of :class:`StoreLike`, which type hints name when either will do.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from providers.pg_store import PgResponseStore, is_database_url
from providers.result import CallResult
from providers.store import ResponseStore

__all__ = ["StoreLike", "is_database_url", "open_store"]


class StoreLike(Protocol):
    """What callers use of a response store, whichever database holds it."""

    @property
    def path(self) -> Path | str:
        """The store's file, or its URL with any password masked: the name in its errors."""
        ...

    @property
    def schema_version(self) -> int:
        """The number of schema migrations the store has (as it was read, for a read-only store)."""
        ...

    def close(self) -> None:
        """Close the store."""
        ...

    def __enter__(self) -> StoreLike: ...

    def __exit__(self, *_: object) -> None: ...

    def put(self, fingerprint: str, source_id: str, prompt_id: str, result: CallResult) -> None:
        """Commit one finished call; an answer is never replaced by an error."""
        ...

    def get_many(self, fingerprints: Iterable[str]) -> dict[str, CallResult]:
        """The stored results for these fingerprints."""
        ...

    def get_meta(self, key: str) -> str | None:
        """A run-level value recorded earlier."""
        ...

    def setdefault_meta(self, key: str, value: str) -> str:
        """Record ``value`` under ``key`` unless one is there already; the value in force."""
        ...

    def discard_errors(self, source_ids: Iterable[str], status_code: int) -> int:
        """Forget the stored errors with this status for these answer slots; rows removed."""
        ...

    def copy_results_from(self, source: str | Path, prompt_ids: Iterable[str] | None = None) -> int:
        """Copy another store's results in (the put rule holds); rows copied."""
        ...

    def has_results(self) -> bool:
        """Whether any result is stored."""
        ...

    def execute(self, query: str, parameters: Iterable[object] = ()) -> list[tuple[object, ...]]:
        """Run one SQL statement with ``?`` placeholders; its rows."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """A block whose statements are one commit."""
        ...

    def has_table(self, name: str) -> bool:
        """Whether the store has table ``name``."""
        ...


def open_store(location: str | Path, *, read_only: bool = False, password_env: str | None = None) -> StoreLike:
    """The response store at ``location``: a SQLite file, or a PostgreSQL database for a ``postgresql://`` URL.

    ``password_env`` names the environment variable holding a database store's password (without it libpq
    looks in ``PGPASSWORD`` and ``~/.pgpass``); a file store has no password and ignores it. Raises
    :class:`providers.store.StoreError` (naming the file, or the URL with any password masked).
    """
    if is_database_url(location):
        return PgResponseStore(str(location), read_only=read_only, password_env=password_env)
    return ResponseStore(location, read_only=read_only)
