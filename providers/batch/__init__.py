"""Batch mode (``mode: batch``): a provider's batch API instead of one call per request.

``ledger`` keeps which requests are in which provider batch (in the response store), ``api`` is what a
kind's batch API offers (``openai_batches``, ``anthropic_batches``), ``runner`` submits, follows and
collects one provider's batches, and :func:`open_batch_api` builds the kind's API for a provider.
"""

from __future__ import annotations

from providers.batch.api import BatchApi
from providers.config import ProviderConfig


async def open_batch_api(config: ProviderConfig) -> BatchApi:
    """The batch API of ``config``'s kind, its key read as for online calls (``MissingApiKey`` if none)."""
    api_key = await config.api_key()
    if config.kind == "anthropic":
        from providers.batch.anthropic_batches import AnthropicBatches

        return AnthropicBatches(config, api_key)
    from providers.batch.openai_batches import OpenAIBatches

    return OpenAIBatches(config, api_key)
