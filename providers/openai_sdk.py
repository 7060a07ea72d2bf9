"""The ``openai`` SDK as the HTTP exchange of OpenAI-kind providers (``http_client: default``)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
from pydantic import SecretStr

from providers.config import ProviderConfig
from providers.errors import ProviderError, connection_error, timeout_error
from providers.http import JsonExchange, RawResponse, status_error


class SdkExchange(JsonExchange):
    """Posts through ``AsyncOpenAI`` (aiohttp transport, the SDK's own retries off).

    Requests go through the SDK's client (base URL, auth, headers, timeouts, its error classes), but
    not through ``chat.completions.create``: that re-walks every request against the SDK's typed
    parameter definitions and builds a typed model of every answer, ~1.4 ms of CPU per call, half
    of the SDK's cost (bench/RESULTS.md).
    """

    def __init__(self, config: ProviderConfig, api_key: SecretStr, path: str) -> None:
        self._path = path
        self._timeout_s = config.timeout_s
        self._client = openai.AsyncOpenAI(
            api_key=api_key.get_secret_value(),
            base_url=config.effective_base_url,
            max_retries=0,
            timeout=config.timeout_s,
            http_client=openai.DefaultAioHttpClient(timeout=config.timeout_s),
        )
        self._post = self._client.post

    async def post(self, body: dict[str, Any]) -> RawResponse:
        started = time.monotonic()
        try:
            # cast_to=httpx.Response: the SDK's documented way to get the raw response (the SDK's
            # status errors are still raised); openai 3.x also accepts it while httpx is imported.
            raw = await self._post(self._path, body=body, cast_to=httpx.Response)
        except openai.APIStatusError as exc:
            response = exc.response
            raise status_error(exc.status_code, response.headers, response.content, response.reason_phrase) from None
        except openai.APITimeoutError as exc:
            raise timeout_error(time.monotonic() - started, self._timeout_s, _cause(exc)) from None
        except openai.APIConnectionError as exc:
            raise connection_error(_cause(exc)) from None
        except openai.APIResponseValidationError as exc:
            raise ProviderError(f"malformed response: {exc.message}", error_type="malformed") from None
        return RawResponse(raw.status_code, raw.headers, raw.content)

    async def aclose(self) -> None:
        await self._client.close()


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{type(cause).__name__}" if cause else type(exc).__name__
