"""Build the provider object for a config."""

from __future__ import annotations

from providers.anthropic_provider import AnthropicProvider
from providers.base import Provider
from providers.config import ProviderConfig
from providers.openai_provider import OpenAIProvider


def make_provider(config: ProviderConfig) -> Provider:
    """The provider for ``config.kind``, with its key read from the environment."""
    if config.kind == "anthropic":
        return AnthropicProvider(config, config.api_key())
    return OpenAIProvider(config, config.api_key())
