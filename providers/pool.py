"""The providers of one run: opened on first use, shared by every chunk, closed when the run ends.

Sharing matters: the HTTP connection pool, the rate-limit buckets and the breaker of a provider must
outlive one chunk. Prefect task parameters stay plain (a config and a run key), and the objects live
in this process-wide registry.
"""

from __future__ import annotations

from collections.abc import Callable

from providers.base import Provider
from providers.config import ProviderConfig
from providers.factory import open_provider

_pools: dict[str, "ProviderPool"] = {}


class ProviderPool:
    """The open providers of one run, by ``source_id``."""

    def __init__(self, run_key: str, should_stop: Callable[[], bool]) -> None:
        self.run_key = run_key
        self._should_stop = should_stop
        self._providers: dict[str, Provider] = {}

    async def get(self, config: ProviderConfig) -> Provider:
        """The run's provider for ``config`` (opened now if this is its first use)."""
        provider = self._providers.get(config.source_id)
        if provider is None:
            provider = self._providers[config.source_id] = await open_provider(config, self._should_stop)
        return provider

    def opened(self) -> dict[str, Provider]:
        """The providers opened so far."""
        return dict(self._providers)

    async def aclose(self) -> None:
        """Close every provider's HTTP client and forget the pool."""
        _pools.pop(self.run_key, None)
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()

    def __enter__(self) -> "ProviderPool":
        _pools[self.run_key] = self
        return self

    def __exit__(self, *_: object) -> None:
        _pools.pop(self.run_key, None)


def pool_for(run_key: str) -> ProviderPool:
    """The pool registered under ``run_key`` (raises ``KeyError`` outside its run)."""
    return _pools[run_key]
