"""The ``openai`` SDK as the HTTP exchange of OpenAI-kind providers (``http_client: default``)."""

from __future__ import annotations

from typing import Any

import httpx
import openai
from pydantic import SecretStr

from providers.config import ProviderConfig
from providers.errors import MalformedAnswer
from providers.http import JsonExchange, RawResponse, status_error


class SdkExchange(JsonExchange):
    """Posts through ``AsyncOpenAI`` (aiohttp transport, the SDK's own retries off).

    Requests go through the SDK's client (base URL, auth, headers, its error classes), but not
    through ``chat.completions.create``: that re-walks every request against the SDK's typed
    parameter definitions and builds a typed model of every answer, ~1.4 ms of CPU per call, half
    of the SDK's cost (bench/RESULTS.md). The SDK's timeouts are per read; ``timeout_s`` bounds
    the whole attempt in :meth:`JsonExchange.post`.
    """

    # The SDK reports every transport failure (timeouts included) as an APIConnectionError.
    _transport_errors = (*JsonExchange._transport_errors, openai.APIConnectionError)

    def __init__(self, config: ProviderConfig, api_key: SecretStr, path: str, secrets: tuple[str, ...]) -> None:
        super().__init__(config.timeout_s, secrets)
        self._path = path
        self._client = openai.AsyncOpenAI(
            api_key=api_key.get_secret_value(),
            base_url=config.effective_base_url,
            max_retries=0,
            timeout=config.timeout_s,
            http_client=openai.DefaultAioHttpClient(timeout=config.timeout_s),
        )
        self._client_post = self._client.post

    async def _post(self, body: dict[str, Any]) -> RawResponse:
        try:
            # cast_to=httpx.Response: the SDK's documented way to get the raw response (the SDK's
            # status errors are still raised); openai 3.x also accepts it while httpx is imported.
            raw = await self._client_post(self._path, body=body, cast_to=httpx.Response)
        except openai.APIStatusError as exc:
            response = exc.response
            raise status_error(exc.status_code, response.headers, response.content, response.reason_phrase) from None
        except openai.APIResponseValidationError as exc:
            raise MalformedAnswer(f"malformed response: {exc.message}") from None
        return RawResponse(raw.status_code, raw.headers, raw.content)

    async def aclose(self) -> None:
        await self._client.close()
