"""Provider errors, classified for the retry policy, with secrets scrubbed from their text."""

from __future__ import annotations

import email.utils
import errno
import math
import re
import socket
import ssl
import time
from collections.abc import Iterator, Mapping

import aiohttp

from common.secrets import scrub
from providers.ratelimit_headers import RateInfo

RATE_LIMITED = 429  # back-pressure, never a failure: the limiter paces, retries and the breaker ignore it
RETRYABLE_STATUS = frozenset({408, 409, RATE_LIMITED}) | frozenset(range(500, 600))
# OpenSSL's decoration of its messages: "[SSL: CERTIFICATE_VERIFY_FAILED] ... (_ssl.c:1006)".
_SSL_DECORATION = re.compile(r"^\[SSL(?:: \w+)?\] | \(_ssl\.c:\d+\)$")
# A connection the server closed or reset (TLS's own ways of saying so included).
_DROPS = (aiohttp.ServerDisconnectedError, ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


class ProviderError(Exception):
    """A failed attempt. ``error_type`` is one of ``http``, ``timeout``, ``connection``, ``tls``, ``malformed``."""

    def __init__(
        self,
        message: str,
        *,
        error_type: str,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        rate: RateInfo | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.rate = rate  # the rate-limit headers of the error response, if any

    def scrubbed(self, secrets: tuple[str, ...]) -> ProviderError:
        """A copy with ``secrets`` scrubbed from the message, and no exception chain.

        A client library's exception, which may quote the server's echo of a key, does not travel with it.
        """
        return ProviderError(
            scrub(self.message, secrets),
            error_type=self.error_type,
            status_code=self.status_code,
            retry_after_s=self.retry_after_s,
            rate=self.rate,
        )

    @property
    def retryable(self) -> bool:
        """408/409/429/5xx, timeouts, dropped connections and malformed bodies are worth another try.

        A TLS failure (an untrusted certificate, a name mismatch, a server not speaking TLS) is not:
        it will not fix itself.
        """
        if self.error_type == "http":
            return self.status_code in RETRYABLE_STATUS
        return self.error_type in {"timeout", "connection", "malformed"}

    @property
    def label(self) -> str:
        """A short reason for summaries: ``http_429``, ``timeout``, ..."""
        return f"http_{self.status_code}" if self.error_type == "http" else self.error_type


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The server's requested wait: ``retry-after-ms`` first, then ``retry-after`` (seconds or HTTP date).

    A value that is neither (``soon``, ``inf``) is ignored: the retry policy's own backoff applies.
    """
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if not raw:
            continue
        seconds: float | None
        try:
            seconds = float(raw) / scale
        except ValueError:
            seconds = _seconds_until(raw) if scale == 1.0 else None
        if seconds is not None and math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def _seconds_until(http_date: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(http_date).timestamp() - time.time()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it wraps, outermost first (``__cause__``, else ``__context__``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def transport_error(exc: BaseException, elapsed_s: float, timeout_s: float) -> ProviderError:
    """The error for an attempt that got no HTTP response, named by what actually happened.

    The client stacks wrap the real cause several times and rename it on the way (the SDK wraps
    httpx, which wraps aiohttp, which wraps the ``OSError``; httpx-aiohttp reports a refused
    connection, an unknown host, a bad certificate and a dropped connection all as a
    ``ConnectTimeout``), so the chain is searched for the cause:

    - the server closed or reset the connection: ``connection`` (``connection lost: closed by the server``);
    - a TLS failure: ``tls``, not retryable (``TLS error: certificate verify failed: ... (host:port)``);
    - an unresolvable host: ``connection`` (``cannot resolve host 'name'``);
    - a refused connection: ``connection`` (``connection refused (host:port)``);
    - a time limit: ``timeout``, but only when the attempt did run into ``timeout_s`` (0.9 of it
      at least): an earlier "timeout" is a connection failure that a client reported as one.

    ``host:port`` is the one aiohttp (under every client stack) tried to connect to, marked
    ``proxy`` when it was the proxy.
    """
    causes = list(_causes(exc))
    connector = next((c for c in causes if isinstance(c, aiohttp.ClientConnectorError)), None)
    where = ""
    if connector is not None:
        proxy = "proxy " if isinstance(connector, aiohttp.ClientProxyConnectionError) else ""
        where = f" ({proxy}{connector.host}:{connector.port})"
    for cause in reversed(causes):  # the innermost (the wrappers copy its class or text) first
        if isinstance(cause, _DROPS):
            return connection_error(f"connection lost: closed by the server{where}")
        if isinstance(cause, ssl.SSLError):
            reason = _SSL_DECORATION.sub("", str(cause)) or type(cause).__name__
            return ProviderError(f"TLS error: {reason}{where}", error_type="tls")
        if isinstance(cause, socket.gaierror):
            return connection_error("cannot resolve host" + (f" '{connector.host}'" if connector else ""))
        if isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED:
            return connection_error(f"connection refused{where}")
    if elapsed_s >= 0.9 * timeout_s and any(isinstance(cause, TimeoutError) for cause in causes):
        return ProviderError(f"timed out after {timeout_s:g} s", error_type="timeout")
    root = causes[-1]
    detail = f" ({root})" if str(root) else ""
    return connection_error(f"connection failed: {type(root).__name__}{detail}{where}")


def connection_error(message: str) -> ProviderError:
    """A connection that failed or was lost (retryable), described by ``message``."""
    return ProviderError(message, error_type="connection")
