"""Configuration of one provider: who to call, how, and within which limits."""

from __future__ import annotations

import os
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from typing_extensions import TypedDict

from common.config_types import ConfigFloat, ConfigInt, finite, not_bool
from common.yaml_locations import did_you_mean
from providers.kinds import KINDS, AnthropicKind, Kind, ProviderKind
from providers.prices import CONFIG, price_table

ANTHROPIC_DEFAULT_MAX_TOKENS = AnthropicKind.default_max_tokens


class MissingApiKey(KeyError):  # noqa: N818 - it is a KeyError, and callers catch it as one
    """No API key: ``args[0]`` names the environment variable (or the Prefect Secret block) that lacks it."""


ParamNumber = Annotated[Any, BeforeValidator(not_bool), BeforeValidator(finite)]
"""A numeric sampling parameter: never ``true``/``false``, finite, and sent exactly as given (``0`` stays ``0``)."""
ParamValue = Annotated[Any, BeforeValidator(finite)]
"""Any other sampling parameter: sent as given, but no NaN or infinity anywhere in it."""


class SamplingParams(TypedDict, total=False, extra_items=ParamValue):  # type: ignore[call-arg]  # PEP 728
    """``params``: sent to the API as given; the well-known numeric ones must be finite numbers."""

    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]  # other keys are ParamValue
    temperature: ParamNumber
    top_p: ParamNumber
    top_k: ParamNumber
    max_tokens: ParamNumber
    max_completion_tokens: ParamNumber
    frequency_penalty: ParamNumber
    presence_penalty: ParamNumber
    seed: ParamNumber


# Parameters some API or OpenAI-compatible server takes: never taken for a misspelling of a well-known one.
OTHER_KNOWN_PARAMS = frozenset(
    {
        "stop",
        "stop_sequences",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "metadata",
        "reasoning_effort",
        "reasoning",
        "service_tier",
        "store",
        "modalities",
        "prediction",
        "audio",
        "stream_options",
        "web_search_options",
        "verbosity",
        "thinking",
        "functions",
        "function_call",
        "suffix",
        "echo",
        "min_p",
        "top_a",
        "typical_p",
        "repetition_penalty",
        "repeat_penalty",
        "repeat_last_n",
        "length_penalty",
        "best_of",
        "use_beam_search",
        "ignore_eos",
        "min_tokens",
        "max_new_tokens",
        "do_sample",
        "num_predict",
        "num_ctx",
        "mirostat",
        "mirostat_eta",
        "mirostat_tau",
        "tfs_z",
        "skip_special_tokens",
        "spaces_between_special_tokens",
        "stop_token_ids",
        "include_stop_str_in_output",
        "guided_json",
        "guided_regex",
        "guided_choice",
        "guided_grammar",
        "guided_decoding_backend",
        "chat_template_kwargs",
        "truncate_prompt_tokens",
        "prompt_logprobs",
        "safe_prompt",
        "random_seed",
        "top_n_sigma",
        "dry_multiplier",
        "xtc_probability",
        "xtc_threshold",
        "extra_body",
        "provider",
        "transforms",
        "models",
        "route",
    }
)


class Price(BaseModel):
    """USD per million tokens, for cost estimates (``rlhf plan``, the run report)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_million: ConfigFloat = Field(ge=0)
    output_per_million: ConfigFloat = Field(ge=0)
    # Input read from / written to the provider's prompt cache; unset: the kind's rule (providers.kinds).
    cached_input_per_million: ConfigFloat | None = Field(default=None, ge=0)
    cache_write_per_million: ConfigFloat | None = Field(default=None, ge=0)

    def cost(
        self,
        input_tokens: int | float,
        output_tokens: int | float,
        cached_input_tokens: int | float = 0,
        cache_write_tokens: int | float = 0,
    ) -> float:
        """USD for this many tokens. ``input_tokens`` counts every input token, the cached ones included; those
        read from the cache and written to it are priced at their own prices (the input price when unset)."""
        cached_price = (
            self.input_per_million if self.cached_input_per_million is None else self.cached_input_per_million
        )
        write_price = self.input_per_million if self.cache_write_per_million is None else self.cache_write_per_million
        uncached = max(0, input_tokens - cached_input_tokens - cache_write_tokens)
        return (
            uncached * self.input_per_million
            + cached_input_tokens * cached_price
            + cache_write_tokens * write_price
            + output_tokens * self.output_per_million
        ) / 1_000_000

    def scaled(self, factor: float) -> Price:
        """Every price times ``factor`` (a batch discount)."""
        return Price(
            input_per_million=self.input_per_million * factor,
            output_per_million=self.output_per_million * factor,
            cached_input_per_million=None
            if self.cached_input_per_million is None
            else self.cached_input_per_million * factor,
            cache_write_per_million=None
            if self.cache_write_per_million is None
            else self.cache_write_per_million * factor,
        )


class ProviderConfig(BaseModel):
    """One model endpoint. ``source_id`` tags every answer it gives; it must be unique in a run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")
    kind: ProviderKind
    model: str = Field(min_length=1)
    base_url: str | None = None
    # Part of the request fingerprint when set (the base URL never is): names the weights behind a server whose
    # model name alone does not (two vLLM servers each serving a fine-tune as "llama-3"). Changing it asks again.
    endpoint_id: str | None = Field(default=None, min_length=1, max_length=200)
    api_key_env: str | None = None
    params: SamplingParams = Field(default_factory=lambda: SamplingParams())
    system_prompt: str | None = None
    max_concurrency: ConfigInt = Field(default=16, ge=1, le=4096)
    timeout_s: ConfigFloat = Field(default=120.0, gt=0)
    max_retries: ConfigInt = Field(default=5, ge=0, le=100)
    backoff_initial_s: ConfigFloat = Field(default=1.0, ge=0)
    backoff_max_s: ConfigFloat = Field(default=60.0, ge=0)
    max_retry_after_s: ConfigFloat = Field(default=300.0, ge=0)
    requests_per_minute: ConfigFloat | None = Field(default=None, gt=0)
    tokens_per_minute: ConfigFloat | None = Field(default=None, gt=0)
    burst: ConfigInt | None = Field(default=None, ge=1)
    max_rate_limited_s: ConfigFloat = Field(default=900.0, ge=0)
    rate_limit_group: str | None = Field(default=None, min_length=1)
    rate_share: ConfigFloat = Field(default=1.0, gt=0, le=1)
    breaker_threshold: ConfigInt = Field(default=5, ge=0)
    api_key_secret: str | None = None
    price: Price | None = None
    anthropic_version: str = "2023-06-01"
    http_client: Literal["default", "aiohttp"] = "default"
    # ``batch``: the provider's batch API (half price, answers within 24 h) instead of one call per request.
    mode: Literal["online", "batch"] = "online"
    batch_discount: ConfigFloat = Field(default=0.5, ge=0, lt=1)
    batch_max_requests: ConfigInt | None = Field(default=None, ge=1)
    batch_max_bytes: ConfigInt | None = Field(default=None, ge=1024)
    batch_poll_s: ConfigFloat = Field(default=30.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _strip_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        authority = value.split("://", 1)[1].split("/", 1)[0]
        if "@" in authority:  # the value itself is never echoed: it holds a credential
            raise ValueError(
                "must not carry credentials (user:password@host): put the API key in the environment variable "
                "that api_key_env names (it is sent as the kind's auth header and never written anywhere)"
            )
        return value

    # Keys that belong one level down: a provider-level `temperature:` is meant for `params` (the unknown-key
    # error of the config says so, common/yaml_locations.py).
    nested_key_hints: ClassVar[dict[str, tuple[str, ...]]] = {
        "params": (*SamplingParams.__annotations__, "stop"),
    }

    @field_validator("params")
    @classmethod
    def _check_params(cls, value: SamplingParams) -> SamplingParams:
        for reserved in ("model", "messages", "stream", "n"):
            if reserved in value:
                raise ValueError(f"'{reserved}' is set by the orchestrator and may not appear in params")
        # params are sent as given, so a misspelt one would reach the API (and fail every call with a 400):
        # a key that is no known parameter but a near miss of a well-known one is refused.
        well_known = (*SamplingParams.__annotations__, "stop")
        for key in value:
            if key in well_known or key in OTHER_KNOWN_PARAMS:
                continue
            suggestion = did_you_mean(key, well_known)
            if suggestion is not None:
                raise ValueError(
                    f"unknown parameter '{key}': did you mean '{suggestion}'? (params are sent to the API as given)"
                )
        return value

    @model_validator(mode="after")
    def _check_kind_params(self) -> ProviderConfig:
        self.kind_class.check_params(self.params)
        return self

    @property
    def kind_class(self) -> type[Kind]:
        """The provider kind (``providers.kinds``): its endpoint, key variable and parameter translation."""
        return KINDS[self.kind]

    @property
    def is_batch(self) -> bool:
        """Whether answers come from the provider's batch API (``mode: batch``)."""
        return self.mode == "batch"

    @property
    def known_price(self) -> Price | None:
        """The price this provider is charged at online: ``price`` from the config, else the shipped price table's
        row for its model (``providers/prices.json``), else None."""
        if self.price is not None:
            return self.price
        row = price_table().lookup(self.kind, self.model)
        if row is None:
            return None
        return Price(
            input_per_million=row.input_per_million,
            output_per_million=row.output_per_million,
            cached_input_per_million=row.cached_input_per_million,
            cache_write_per_million=row.cache_write_per_million,
        )

    @property
    def price_source(self) -> str | None:
        """Where :attr:`known_price` comes from: ``config``, ``table <date>``, or None (no price known)."""
        if self.price is not None:
            return CONFIG
        return price_table().source if price_table().lookup(self.kind, self.model) is not None else None

    @property
    def full_price(self) -> Price | None:
        """:attr:`known_price` with the prompt-cache prices filled in by the kind's rule where it leaves them out."""
        price, kind = self.known_price, self.kind_class
        if price is None:
            return None
        return price.model_copy(
            update={
                "cached_input_per_million": price.input_per_million * kind.cache_read_factor
                if price.cached_input_per_million is None
                else price.cached_input_per_million,
                "cache_write_per_million": price.input_per_million * kind.cache_write_factor
                if price.cache_write_per_million is None
                else price.cache_write_per_million,
            }
        )

    @property
    def effective_price(self) -> Price | None:
        """The price per million tokens this provider is paid at: :attr:`full_price`, less ``batch_discount`` in
        batch mode."""
        price = self.full_price
        if price is None or not self.is_batch:
            return price
        return price.scaled(1 - self.batch_discount)

    @property
    def worst_price(self) -> Price | None:
        """:attr:`effective_price` as a bound: every input token at the dearest input price (a cache write costs
        more than a plain input token, a cache read less), for reserving a request's worst case."""
        price = self.effective_price
        if price is None:
            return None
        dearest = max(price.input_per_million, price.cache_write_per_million or 0.0)
        return Price(input_per_million=dearest, output_per_million=price.output_per_million)

    @property
    def batch_limits(self) -> tuple[int, int]:
        """Requests and bytes per batch: the configured ones, else the kind's API limits."""
        kind = self.kind_class
        return (
            self.batch_max_requests or kind.batch_max_requests,
            self.batch_max_bytes or kind.batch_max_bytes,
        )

    @property
    def key_env(self) -> str:
        """The environment variable holding this provider's API key."""
        return self.api_key_env or self.kind_class.default_key_env

    @property
    def effective_base_url(self) -> str:
        """The base URL requests go to (the kind's public endpoint when none is configured)."""
        return self.base_url or self.kind_class.default_base_url

    async def api_key(self) -> SecretStr:
        """The API key: from the Prefect Secret block ``api_key_secret`` if set, else the environment.

        Raises :class:`MissingApiKey` (a ``KeyError``) naming the variable (or block) when there is no key.
        """
        if self.api_key_secret:
            from prefect.blocks.system import Secret

            try:
                block: Any = await Secret.aload(self.api_key_secret)
            except ValueError:
                raise MissingApiKey(f"Prefect Secret block '{self.api_key_secret}'") from None
            return SecretStr(str(block.get()))
        value = os.environ.get(self.key_env)
        if not value:
            raise MissingApiKey(self.key_env)
        return SecretStr(value)

    def estimated_output_tokens(self) -> int:
        """The output limit sent with each request (for the tokens-per-minute estimate)."""
        params = self.wire_params()
        return int(params.get("max_completion_tokens") or params.get("max_tokens") or 1024)

    def wire_params(self) -> dict[str, Any]:
        """Sampling parameters as this provider kind's API expects them."""
        return self.kind_class.wire_params(self.params)

    def shell_model_parameters(self) -> dict[str, Any]:
        """The ``model_parameters`` of an answer in a task shell: only the keys FORMAT.md allows."""
        params = self.wire_params()
        out: dict[str, Any] = {"model": self.model}
        for key in ("temperature", "top_p", "top_k"):
            if params.get(key) is not None:
                out[key] = params[key]
        max_tokens = params.get("max_completion_tokens", params.get("max_tokens"))
        if max_tokens is not None:
            out["max_completion_tokens"] = int(max_tokens)
        return out
