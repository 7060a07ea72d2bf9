"""The providers of one run: opened on first use, shared by every chunk, closed when the run ends.

Sharing matters: the HTTP connection pool, the rate-limit buckets and the breaker of a provider must
outlive one chunk. Prefect task parameters stay plain (a config and a run key), and the objects live
in this process-wide registry.
"""

from __future__ import annotations

from collections.abc import Callable

from providers.base import Provider, governor_for
from providers.budget import Budget
from providers.config import ProviderConfig
from providers.factory import open_provider
from providers.limits import RateGovernor

_pools: dict[str, ProviderPool] = {}


class ProviderPool:
    """The open providers of one run, by ``source_id``."""

    def __init__(self, run_key: str, should_stop: Callable[[], bool], budget: Budget | None = None) -> None:
        self.run_key = run_key
        self._should_stop = should_stop
        self.budget = budget
        self._providers: dict[str, Provider] = {}
        self._groups: dict[str, RateGovernor] = {}

    async def get(self, config: ProviderConfig) -> Provider:
        """The run's provider for ``config`` (opened now if this is its first use)."""
        provider = self._providers.get(config.source_id)
        if provider is None:
            governor = self._group_governor(config) if config.rate_limit_group else None
            provider = await open_provider(config, self._should_stop, governor)
            if self.budget is not None:
                provider.account = self.budget.account(config.source_id)
            self._providers[config.source_id] = provider
        return provider

    def _group_governor(self, config: ProviderConfig) -> RateGovernor:
        """The governor a ``rate_limit_group`` shares: the lowest configured limits of its members."""
        assert config.rate_limit_group is not None
        governor = self._groups.get(config.rate_limit_group)
        if governor is None:
            governor = self._groups[config.rate_limit_group] = governor_for(config)
        else:
            governor.tighten(config.requests_per_minute, config.tokens_per_minute, config.burst)
        return governor

    def opened(self) -> dict[str, Provider]:
        """The providers opened so far."""
        return dict(self._providers)

    async def aclose(self) -> None:
        """Close every provider's HTTP client and forget the pool."""
        _pools.pop(self.run_key, None)
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()

    def __enter__(self) -> ProviderPool:
        _pools[self.run_key] = self
        return self

    def __exit__(self, *_: object) -> None:
        _pools.pop(self.run_key, None)


def pool_for(run_key: str) -> ProviderPool:
    """The pool registered under ``run_key`` (raises ``KeyError`` outside its run)."""
    return _pools[run_key]
