"""Build the provider object for a config: the registry of provider classes by kind."""

from __future__ import annotations

from collections.abc import Callable

from providers.anthropic_provider import AnthropicProvider
from providers.base import Provider
from providers.config import ProviderConfig
from providers.limits import RateGovernor
from providers.openai_provider import OpenAIProvider

PROVIDERS: dict[str, type[Provider]] = {cls.kind.name: cls for cls in (OpenAIProvider, AnthropicProvider)}
"""The provider class of every kind (``providers.kinds.KINDS``), by kind name."""


async def open_provider(
    config: ProviderConfig, should_stop: Callable[[], bool] = lambda: False, governor: RateGovernor | None = None
) -> Provider:
    """The provider for ``config.kind``, its key read from the environment or its Prefect Secret block.

    ``governor``: the rate governor it shares with its ``rate_limit_group`` (default: its own).
    Raises :class:`~providers.config.MissingApiKey` (a ``KeyError``) when the key cannot be read.
    """
    return PROVIDERS[config.kind](config, await config.api_key(), should_stop, governor)
