"""The HTTP exchange under a provider: one JSON POST to one endpoint, failures as ``ProviderError``.

A provider kind owns its wire format (request body, answer JSON); the exchange owns the bytes on the
wire. Two exchanges exist for every kind (``http_client`` in the provider config):

- ``default``: the official client stack — the ``openai`` SDK for OpenAI-kind providers, ``httpx``
  for Anthropic-kind providers, both on the aiohttp transport (see ``openai_sdk`` and
  ``anthropic_provider``).
- ``aiohttp``: :class:`AiohttpExchange`, one ``aiohttp.ClientSession`` per provider posting the
  same JSON with the same headers. It skips the SDK's request building and httpx's model layer,
  ~1 ms of CPU per call on this project's benchmark machine (bench/RESULTS.md), which is what caps
  a single event loop's request rate once many calls are in flight.

Both report the same outcomes: the same status codes and server error messages, ``Retry-After``,
timeouts, dropped connections and unreachable hosts as the same error types (tests/test_providers.py
runs every fault against both). :meth:`JsonExchange.post` is where they meet: it bounds the whole
attempt by ``timeout_s``, names a transport failure by its cause (``providers.errors.transport_error``)
and scrubs the provider's key from every error.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import json
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import certifi
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from providers.errors import HttpStatusError, ProviderError, http_error, retry_after_seconds, transport_error
from providers.ratelimit_headers import rate_info

USER_AGENT = "rlhf-orchestrator"


@dataclass(slots=True)
class RawResponse:
    """A successful (status < 400) response: its headers and undecoded body."""

    status: int
    headers: Mapping[str, str]
    content: bytes


class JsonExchange(abc.ABC):
    """POSTs a JSON body to one endpoint. Raises :class:`ProviderError` for every failure.

    A client stack implements :meth:`_post` and lists the exceptions its transport raises in
    ``_transport_errors``; :meth:`post` does the rest, the same way for every stack.
    """

    _transport_errors: tuple[type[BaseException], ...] = (OSError, aiohttp.ClientError)  # TimeoutError is an OSError

    def __init__(self, timeout_s: float, secrets: tuple[str, ...]) -> None:
        self._timeout_s = timeout_s
        self._secrets = secrets

    async def post(self, body: dict[str, Any]) -> RawResponse:
        """Send ``body``; return the response, or raise for a status >= 400, a timeout or a failed connection.

        ``timeout_s`` bounds the whole attempt: connecting, sending and receiving the full body (the
        client libraries' own timeouts are per read, so a server trickling bytes would never time
        out). The raised error's text has the secrets scrubbed, and it carries no exception chain.
        """
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._post(body)
        except ProviderError as exc:
            error = exc
        except self._transport_errors as exc:
            error = transport_error(exc, time.monotonic() - started, self._timeout_s)
        raise error.scrubbed(self._secrets)  # outside the except blocks: no __context__

    @abc.abstractmethod
    async def _post(self, body: dict[str, Any]) -> RawResponse:
        """Send ``body``; raise :class:`ProviderError` for a status >= 400 or a malformed answer and let
        transport failures (``_transport_errors``) through."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the connections."""


def error_message(content: bytes, fallback: str) -> str:
    """The server's error message from an OpenAI- or Anthropic-style error body (``{"error": {"message"}}``)."""
    try:
        data = json.loads(content)
    except ValueError:
        return fallback
    if isinstance(data, dict):
        inner = data.get("error", data)
        message = inner.get("message") if isinstance(inner, dict) else None
        if isinstance(message, str):
            return message
    return fallback


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The CA bundle httpx (and so the SDK) verifies against: ``SSL_CERT_FILE``/``SSL_CERT_DIR`` if set, else certifi's.

    Built once per process (it costs milliseconds), so both paths trust the same servers.
    """
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    return ssl.create_default_context(cafile=certifi.where())


def status_error(status: int, headers: Mapping[str, str] | None, content: bytes, reason: str | None) -> HttpStatusError:
    """The error for an HTTP status >= 400, with the server's message and its requested wait."""
    return http_error(
        status,
        f"HTTP {status}: {error_message(content, reason or 'error')}",
        retry_after_seconds(headers),
        rate_info(headers) if headers else None,
    )


class AiohttpExchange(JsonExchange):
    """The lean exchange: one ``aiohttp.ClientSession`` per provider, created in the running loop.

    The proxy comes from the environment (``HTTPS_PROXY``/``HTTP_PROXY``, ``NO_PROXY``), as with the
    SDK and httpx, but is looked up once: aiohttp's ``trust_env`` would look up the proxy and
    ``~/.netrc`` in a thread for every request, which costs more than the request itself. Cookies
    are not kept (the APIs do not use them). TLS verifies against the same CA bundle as httpx.
    The session has no time limits of its own: :meth:`JsonExchange.post` bounds each attempt.
    """

    def __init__(
        self, url: str, headers: Mapping[str, str], timeout_s: float, max_connections: int, secrets: tuple[str, ...]
    ) -> None:
        super().__init__(timeout_s, secrets)
        self._url = URL(url)
        self._headers = {**headers, "Content-Type": "application/json", "User-Agent": USER_AGENT}
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._proxy: URL | None = None
        self._proxy_auth: aiohttp.BasicAuth | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Never size the pool to exactly the concurrency: waiters queueing for a connection are slow.
        tls: ssl.SSLContext | bool = tls_context() if self._url.scheme == "https" else True
        connector = aiohttp.TCPConnector(limit=self._max_connections * 2, ssl=tls)
        try:
            self._proxy, self._proxy_auth = get_env_proxy_for_url(self._url)
        except LookupError:  # no proxy for this URL
            self._proxy, self._proxy_auth = None, None
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(),  # none: post() bounds the whole attempt
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def _post(self, body: dict[str, Any]) -> RawResponse:
        session = self._session or self._open()
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        async with session.post(self._url, data=data, proxy=self._proxy, proxy_auth=self._proxy_auth) as response:
            content = await response.read()
            status, headers, reason = response.status, response.headers, response.reason
        if status >= 400:
            raise status_error(status, headers, content, reason)
        return RawResponse(status, headers, content)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
