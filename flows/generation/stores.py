"""The run's response store, wherever it is: a SQLite file next to the run, or a PostgreSQL database.

One run (or one shard) per batch at a time: a file store is held with a lock file beside it
(``providers.store_lock``), a database store with a PostgreSQL advisory lock on the batch (and shard),
so shards of a batch share one database and need no merge of stores.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flows.config import RunConfig
from providers.store_factory import StoreLike, open_store
from providers.store_lock import hold_store


def open_run_store(config: RunConfig, *, read_only: bool = False) -> StoreLike:
    """The config's response store, opened (a file store for reading must exist: see :func:`store_exists`)."""
    return open_store(config.store_location, read_only=read_only, password_env=config.output.store_password_env)


def store_exists(config: RunConfig) -> bool:
    """Whether there is a store to read: a database always is (the tool creates its tables on first write)."""
    return config.store_is_database or Path(config.store_path).is_file()


def lock_key(config: RunConfig) -> str:
    """The batch a run holds in a database store: ``<project>/<batch>``, plus ``/shard-<k>`` for one shard."""
    key = f"{config.project}/{config.batch}"
    return key if config.shard is None else f"{key}/shard-{config.shard[0]}"


@contextmanager
def hold_run_store(config: RunConfig) -> Iterator[None]:
    """Hold the run's batch for the block; ``BatchBusy`` at once if another run holds it."""
    if not config.store_is_database:
        with hold_store(config.store_path):
            yield
        return
    from providers.pg_store import hold_pg_batch

    with hold_pg_batch(str(config.store_location), lock_key(config), password_env=config.output.store_password_env):
        yield
