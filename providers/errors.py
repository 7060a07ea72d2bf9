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
from typing import ClassVar

import aiohttp

from common.secrets import scrub
from providers.ratelimit_headers import RateInfo

RATE_LIMITED = 429  # back-pressure, never a failure: the limiter paces, retries and the breaker ignore it
# The classification of an HTTP status, in one place: worth another try, the provider's fault (the breaker
# counts it), the server asking to slow down (the limiter backs off: 429, and Anthropic's 529 "overloaded").
RETRYABLE_STATUS = frozenset({408, 409, RATE_LIMITED}) | frozenset(range(500, 600))
PROVIDER_FAILURE_STATUSES = frozenset({401, 403, 404, 408, 409}) | frozenset(range(500, 600))
SLOW_DOWN_STATUSES = frozenset({RATE_LIMITED, 529})
# Any other 4xx (400, 413, 422, ...) is normally the prompt's problem: one of them never trips the
# breaker (providers/breaker.py cuts off a run of the same one).
# OpenSSL's decoration of its messages: "[SSL: CERTIFICATE_VERIFY_FAILED] ... (_ssl.c:1006)".
_SSL_DECORATION = re.compile(r"^\[SSL(?:: \w+)?\] | \(_ssl\.c:\d+\)$")
# A connection the server closed or reset (TLS's own ways of saying so included).
_DROPS = (aiohttp.ServerDisconnectedError, ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


class ProviderError(Exception):
    """A failed attempt, of one of the kinds below; never raised as itself.

    Each kind says, once, what the retry policy (``retryable``, ``rate_limited``), the breaker
    (``provider_failure``) and the limiter (``slow_down``) make of it:

    - :class:`TimedOut` (``timeout``), :class:`TransportError` (``connection``: refused, unknown host,
      dropped) and :class:`MalformedAnswer` (``malformed``): retried, and the provider's failure;
    - :class:`TlsError` (``tls``): the provider's failure, not retried (it will not fix itself);
    - :class:`HttpStatusError` (``http``): by its status (``RETRYABLE_STATUS``,
      ``PROVIDER_FAILURE_STATUSES``, ``SLOW_DOWN_STATUSES``);
    - :class:`RateLimited` (``http``, 429): back-pressure; retried through the limiter without using up
      ``max_retries``, and never a failure.

    ``error_type`` is the stored and reported string (``label`` adds the status: ``http_503``).
    """

    error_type: ClassVar[str]
    retryable: bool = False
    """Worth another attempt."""
    provider_failure: bool = False
    """Says something about the provider, not one prompt: the breaker counts it."""
    rate_limited: bool = False
    """Back-pressure: retried through the limiter without using up ``max_retries``, never a failure."""
    slow_down: bool = False
    """The server asks for fewer requests: the limiter backs off."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        rate: RateInfo | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.rate = rate  # the rate-limit headers of the error response, if any

    def scrubbed(self, secrets: tuple[str, ...]) -> ProviderError:
        """A copy (of the same kind) with ``secrets`` scrubbed from the message, and no exception chain.

        A client library's exception, which may quote the server's echo of a key, does not travel with it.
        """
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.message = scrub(self.message, secrets)
        copy.args = (copy.message,)
        return copy

    @property
    def label(self) -> str:
        """A short reason for summaries: ``http_429``, ``timeout``, ..."""
        return self.error_type


class TimedOut(ProviderError):
    """The attempt ran into its time limit (``timeout_s``)."""

    error_type = "timeout"
    retryable = True
    provider_failure = True


class TransportError(ProviderError):
    """No HTTP response: the connection was refused, the host unknown, the connection lost."""

    error_type = "connection"
    retryable = True
    provider_failure = True


class TlsError(TransportError):
    """A TLS failure (an untrusted certificate, a name mismatch, a server not speaking TLS): it will not
    fix itself, so it is not retried."""

    error_type = "tls"
    retryable = False


class MalformedAnswer(ProviderError):
    """A 2xx whose body is not the answer the API promises (not JSON, no choices, empty content)."""

    error_type = "malformed"
    retryable = True
    provider_failure = True


class InternalError(ProviderError):
    """An exception nobody foresaw while building a request, exchanging it or reading the answer (a bug,
    or a client library failing in a new way): stored as a failed call with reason ``internal`` and the
    exception's type and message; not retried (it would fail the same way), and the breaker counts it, so
    a run of them stops the provider instead of paying for answers that cannot be read."""

    error_type = "internal"
    provider_failure = True

    @classmethod
    def of(cls, exc: BaseException) -> InternalError:
        """The error for exception ``exc``: its type and message."""
        return cls(f"{type(exc).__name__}: {exc}")


class HttpStatusError(ProviderError):
    """An HTTP status >= 400; what it means for retries and the breaker follows from the status."""

    error_type = "http"
    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        retry_after_s: float | None = None,
        rate: RateInfo | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, retry_after_s=retry_after_s, rate=rate)
        self.retryable = status_code in RETRYABLE_STATUS
        self.provider_failure = status_code in PROVIDER_FAILURE_STATUSES
        self.rate_limited = status_code == RATE_LIMITED
        self.slow_down = status_code in SLOW_DOWN_STATUSES

    @property
    def label(self) -> str:
        return f"http_{self.status_code}"


class RateLimited(HttpStatusError):
    """A 429: back-pressure, not a failure."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int = RATE_LIMITED,
        retry_after_s: float | None = None,
        rate: RateInfo | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, retry_after_s=retry_after_s, rate=rate)


def http_error(
    status: int, message: str, retry_after_s: float | None = None, rate: RateInfo | None = None
) -> HttpStatusError:
    """The error for an HTTP ``status`` >= 400: :class:`RateLimited` for a 429, else :class:`HttpStatusError`."""
    kind = RateLimited if status == RATE_LIMITED else HttpStatusError
    return kind(message, status_code=status, retry_after_s=retry_after_s, rate=rate)


ERROR_TYPES: dict[str, type[ProviderError]] = {
    kind.error_type: kind
    for kind in (TimedOut, TransportError, TlsError, MalformedAnswer, InternalError, HttpStatusError)
}
"""The kind of error behind each stored ``error_type``."""


def is_provider_failure(error_type: str | None, status_code: int | None) -> bool:
    """Whether a final error, as stored (``error_type`` or its label, and the status), is the provider's
    fault: the status's classification for an HTTP error, else its kind's."""
    if status_code is not None:
        return status_code in PROVIDER_FAILURE_STATUSES
    kind = ERROR_TYPES.get(error_type or "")
    return kind is not None and kind.provider_failure


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
            return TlsError(f"TLS error: {reason}{where}")
        if isinstance(cause, socket.gaierror):
            return connection_error("cannot resolve host" + (f" '{connector.host}'" if connector else ""))
        if isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED:
            return connection_error(f"connection refused{where}")
    if elapsed_s >= 0.9 * timeout_s and any(isinstance(cause, TimeoutError) for cause in causes):
        return TimedOut(f"timed out after {timeout_s:g} s")
    root = causes[-1]
    detail = f" ({root})" if str(root) else ""
    return connection_error(f"connection failed: {type(root).__name__}{detail}{where}")


def connection_error(message: str) -> TransportError:
    """A connection that failed or was lost (retryable), described by ``message``."""
    return TransportError(message)
