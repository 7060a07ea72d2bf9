"""Provider kinds, registered in one place: each kind is one class here, owning what the configuration needs.

A kind declares its name (the ``kind:`` of a provider config), its public endpoint, the environment
variable its key is read from by default, which ``params`` it refuses, and how ``params`` translate to
its API's request fields. The provider class that speaks its wire format (``openai_provider``,
``anthropic_provider``) names its kind, and ``providers.factory`` builds providers by it.

This module imports no HTTP client and no provider class, so the configuration (``providers.config``)
can read the kinds without loading a client stack.

Adding a kind: a :class:`Kind` subclass here (it registers itself in :data:`KINDS`, and ``ProviderKind``
follows), and a ``Provider`` subclass naming it, listed in ``providers.factory``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

KINDS: dict[str, type[Kind]] = {}
"""Every provider kind by name, in the order the classes are defined."""


class Kind:
    """One provider kind. Subclasses set the class attributes and register themselves in :data:`KINDS`."""

    name: ClassVar[str]
    default_base_url: ClassVar[str]
    default_key_env: ClassVar[str]
    # The provider's batch API limits per batch (``mode: batch``): requests, and bytes of what is uploaded.
    batch_max_requests: ClassVar[int]
    batch_max_bytes: ClassVar[int]
    # Prompt-cache prices as fractions of the input price, for a ``price`` that does not give them: what
    # the vendor charges for input read from its cache, and for input written to it.
    cache_read_factor: ClassVar[float] = 1.0
    cache_write_factor: ClassVar[float] = 1.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name in KINDS:
            raise TypeError(f"provider kind '{cls.name}' is registered twice")
        KINDS[cls.name] = cls

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` for ``params`` this kind cannot send (none, unless the kind says so)."""

    @classmethod
    def wire_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` as the kind's API expects them (a new dict; by default, as given)."""
        return dict(params)


class OpenAIKind(Kind):
    """OpenAI's Chat Completions and every OpenAI-compatible server: ``params`` are sent as given."""

    name = "openai"
    default_base_url = "https://api.openai.com/v1"
    default_key_env = "OPENAI_API_KEY"
    batch_max_requests = 50_000  # the Batch API's input file: at most 50,000 requests and 200 MB
    batch_max_bytes = 200 * 1024 * 1024
    # OpenAI's discount on cached input differs by model (50% to 90%): without a configured
    # ``cached_input_per_million`` cached input is priced as input, so a cost is never under-estimated.
    # Cache writes cost nothing extra.


class AnthropicKind(Kind):
    """Anthropic's Messages API: ``max_tokens`` is required and ``stop`` is ``stop_sequences``."""

    name = "anthropic"
    default_base_url = "https://api.anthropic.com"
    default_key_env = "ANTHROPIC_API_KEY"
    batch_max_requests = 100_000  # a Message Batch: at most 100,000 requests and 256 MB
    batch_max_bytes = 256 * 1024 * 1024
    default_max_tokens: ClassVar[int] = 1024
    # Anthropic's prompt caching: reads at 0.1x the input price, (5-minute) writes at 1.25x.
    cache_read_factor = 0.1
    cache_write_factor = 1.25

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        if "max_tokens" in params and "max_completion_tokens" in params:
            raise ValueError("give max_tokens or max_completion_tokens, not both")

    @classmethod
    def wire_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        wire = dict(params)
        if "max_completion_tokens" in wire:
            wire["max_tokens"] = wire.pop("max_completion_tokens")
        wire.setdefault("max_tokens", cls.default_max_tokens)
        if "stop" in wire:
            stop = wire.pop("stop")
            wire["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        return wire


if TYPE_CHECKING:
    ProviderKind = str
else:
    # The ``kind:`` a provider config accepts: the registered names (pydantic reports them when one is wrong).
    ProviderKind = Literal[tuple(KINDS)]
