"""Rate limits of the simulator, in two modes.

* Advertised only (``rate_limit_enforce=False``, the default): :class:`RateLimitWindows` counts
  requests and tokens per model in fixed windows and reports them in headers; nothing is refused.
* Enforced (``rate_limit_enforce=True``): :class:`TokenBuckets` keeps a request bucket and a token
  bucket per (API key, model), each refilled continuously (a token bucket, as OpenAI and Anthropic
  describe theirs); a request the buckets cannot pay for gets a 429 in the API's own shape, and every
  response reports the buckets' state in the API's rate-limit headers, the way ``header_mode`` says
  (exactly; as a minute's allowance; with truncated or "next request" resets; Azure's remaining only).
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

from simulator.settings import ApiName, RateLimitHeaderMode, RetryAfterMode

WINDOW_S = 60.0  # default window length


def _openai_duration(seconds: float) -> str:
    """Format a reset delay like OpenAI does: ``"20ms"``, ``"8.64s"``, ``"1m30s"``."""
    if seconds < 1.0:
        return f"{max(0, int(seconds * 1000))}ms"
    if seconds < 60.0:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s"


class RateLimitWindows:
    """Counts requests and tokens per model in fixed windows of ``window_s`` seconds (default a minute)."""

    def __init__(self, request_limit: int, token_limit: int, window_s: float = WINDOW_S) -> None:
        self.request_limit = request_limit
        self.token_limit = token_limit
        self.window_s = window_s
        self._windows: dict[str, list[float]] = {}  # model -> [window_start, requests, tokens]
        self._rfc3339_resets: dict[str, str] = {}  # model -> formatted end of its current window

    def clear(self) -> None:
        """Forget all windows."""
        self._windows.clear()
        self._rfc3339_resets.clear()

    def _consume(self, model: str, tokens: int) -> tuple[int, int, float]:
        now = time.monotonic()
        window = self._windows.get(model)
        if window is None or now - window[0] >= self.window_s:
            window = self._windows[model] = [now, 0.0, 0.0]
            self._rfc3339_resets.pop(model, None)
        window[1] += 1
        window[2] += tokens
        remaining_requests = max(0, self.request_limit - int(window[1]))
        remaining_tokens = max(0, self.token_limit - int(window[2]))
        return remaining_requests, remaining_tokens, max(0.0, window[0] + self.window_s - now)

    def openai_headers(self, model: str, tokens: int) -> dict[str, str]:
        """``x-ratelimit-*`` headers after counting one request of ``tokens`` tokens."""
        requests_left, tokens_left, reset_s = self._consume(model, tokens)
        reset = _openai_duration(reset_s)
        return {
            "x-ratelimit-limit-requests": str(self.request_limit),
            "x-ratelimit-remaining-requests": str(requests_left),
            "x-ratelimit-reset-requests": reset,
            "x-ratelimit-limit-tokens": str(self.token_limit),
            "x-ratelimit-remaining-tokens": str(tokens_left),
            "x-ratelimit-reset-tokens": reset,
        }

    def anthropic_headers(self, model: str, tokens: int) -> dict[str, str]:
        """``anthropic-ratelimit-*`` headers (reset as RFC 3339) after counting one request."""
        requests_left, tokens_left, reset_s = self._consume(model, tokens)
        reset = self._rfc3339_resets.get(model)
        if reset is None:  # computed once per window: the window's end does not move
            reset_at = datetime.now(UTC) + timedelta(seconds=math.ceil(reset_s))
            reset = self._rfc3339_resets[model] = reset_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "anthropic-ratelimit-requests-limit": str(self.request_limit),
            "anthropic-ratelimit-requests-remaining": str(requests_left),
            "anthropic-ratelimit-requests-reset": reset,
            "anthropic-ratelimit-tokens-limit": str(self.token_limit),
            "anthropic-ratelimit-tokens-remaining": str(tokens_left),
            "anthropic-ratelimit-tokens-reset": reset,
        }


# ---------------------------------------------------------------------------------- enforced


def go_duration(seconds: float) -> str:
    """A delay the way OpenAI writes it (Go's duration format), rounded up to the millisecond:
    ``"0s"``, ``"120ms"``, ``"1s"``, ``"8.64s"``, ``"6m0s"``, ``"1h2m3.5s"``."""
    ms = math.ceil(seconds * 1000.0 - 1e-6)
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    text = f"{whole}s" if frac == 0 else f"{whole}.{frac:03d}".rstrip("0") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


# What a refusal was for: the request bucket, the token bucket, or a request whose token cost
# exceeds the token bucket's capacity (it can never be admitted).
RefusalKind = Literal["requests", "tokens", "too_large"]


class Admission:
    """The outcome of :meth:`TokenBuckets.admit`: the buckets' levels after it, and why it was refused.

    ``refused`` is None for an admitted request; ``wait_s`` is how long until the buckets could pay
    for the same request (0 when admitted, ``inf`` when it can never fit).
    """

    __slots__ = ("cost", "refused", "requests_level", "tokens_level", "wait_s")

    def __init__(
        self, refused: RefusalKind | None, requests_level: float, tokens_level: float, cost: int, wait_s: float
    ) -> None:
        self.refused = refused
        self.requests_level = requests_level
        self.tokens_level = tokens_level
        self.cost = cost
        self.wait_s = wait_s


class TokenBuckets:
    """Request and token buckets per (API key, model), refilled continuously, for enforced limits.

    The request bucket holds ``burst`` (default ``requests``) and refills at ``requests / window_s``
    per second; the token bucket holds ``tokens`` and refills at ``tokens / window_s`` per second.
    Buckets start full. A request is admitted when its request bucket holds at least 1 and its token
    bucket at least the request's cost; it then takes 1 and the cost. A refused request takes nothing.
    Each request costs O(1): one dict lookup and a few float operations. Event-loop use only.
    API keys are kept as their ``hash()``, never as values.
    """

    def __init__(self, requests: int, tokens: int, window_s: float, burst: int | None = None) -> None:
        self._buckets: dict[tuple[int, str], list[float]] = {}  # (hash(key), model) -> [requests, tokens, t]
        self._stamps: dict[int, str] = {}  # whole epoch second -> RFC 3339 text
        self.header_mode: RateLimitHeaderMode = "bucket"
        self.configure(requests, tokens, window_s, burst)

    def configure(self, requests: int, tokens: int, window_s: float, burst: int | None = None) -> None:
        """Set the limits; every bucket starts full again."""
        self.requests = requests
        self.window_s = window_s
        self.request_capacity = float(burst if burst is not None else requests)
        self.request_rate = requests / window_s
        self.token_capacity = float(tokens)
        self.token_rate = tokens / window_s
        self._request_limit_text = str(burst if burst is not None else requests)
        self._token_limit_text = str(tokens)
        # Quantized enforcement ("per_minute" headers): a minute's allowance is announced. A bucket of a
        # minute's size refilled at the same rate and charged the same admissions is short of full by
        # exactly as much as the enforced one, so its remaining is the enforced level plus the difference.
        minute_requests = round(self.request_rate * 60.0)
        minute_tokens = round(self.token_rate * 60.0)
        self._minute_request_extra = max(0.0, minute_requests - self.request_capacity)
        self._minute_token_extra = max(0.0, minute_tokens - self.token_capacity)
        self._minute_request_text = str(max(minute_requests, int(self.request_capacity)))
        self._minute_token_text = str(max(minute_tokens, int(self.token_capacity)))
        self._buckets.clear()

    def clear(self) -> None:
        """Refill every bucket (forget them)."""
        self._buckets.clear()

    def _refilled(self, api_key: str, model: str, now: float | None) -> list[float]:
        """The (key, model) buckets, refilled to ``now`` (monotonic; default the current time)."""
        if now is None:
            now = time.monotonic()
        rcap, tcap = self.request_capacity, self.token_capacity
        key = (hash(api_key), model)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [rcap, tcap, now]
        else:
            elapsed = now - bucket[2]
            if elapsed > 0.0:
                level = bucket[0] + elapsed * self.request_rate
                bucket[0] = level if level < rcap else rcap
                level = bucket[1] + elapsed * self.token_rate
                bucket[1] = level if level < tcap else tcap
                bucket[2] = now
        return bucket

    def peek(self, api_key: str, model: str, now: float | None = None) -> Admission:
        """The (key, model) buckets' state now, charging nothing: what a response that was never
        admitted (a 400 for an invalid request) reports in its rate-limit headers."""
        bucket = self._refilled(api_key, model, now)
        return Admission(None, bucket[0], bucket[1], 0, 0.0)

    def admit(self, api_key: str, model: str, cost: int, now: float | None = None) -> Admission:
        """Refill the (key, model) buckets to ``now`` (monotonic), then admit or refuse one request."""
        bucket = self._refilled(api_key, model, now)
        tcap = self.token_capacity
        requests_level, tokens_level = bucket[0], bucket[1]
        if requests_level >= 1.0 and tokens_level >= cost:
            bucket[0] = requests_level - 1.0
            bucket[1] = tokens_level - cost
            return Admission(None, bucket[0], bucket[1], cost, 0.0)
        if cost > tcap:
            return Admission("too_large", requests_level, tokens_level, cost, math.inf)
        request_wait = (1.0 - requests_level) / self.request_rate if requests_level < 1.0 else 0.0
        token_wait = (cost - tokens_level) / self.token_rate if tokens_level < cost else 0.0
        refused: RefusalKind = "requests" if requests_level < 1.0 else "tokens"
        return Admission(refused, requests_level, tokens_level, cost, max(request_wait, token_wait))

    # --------------------------------------------------------------------------- headers
    def _resets(self, admission: Admission) -> tuple[float, float]:
        """Seconds until the request bucket and the token bucket are full again (in "next_request"
        mode: until they could admit the next request, one request or this request's cost)."""
        if self.header_mode == "next_request":
            return (
                max(0.0, 1.0 - admission.requests_level) / self.request_rate,
                max(0.0, admission.cost - admission.tokens_level) / self.token_rate,
            )
        return (
            (self.request_capacity - admission.requests_level) / self.request_rate,
            (self.token_capacity - admission.tokens_level) / self.token_rate,
        )

    def _announced(self, admission: Admission) -> tuple[str, str, str, str]:
        """(request limit, requests remaining, token limit, tokens remaining) as the headers state them."""
        if self.header_mode == "per_minute":
            return (
                self._minute_request_text,
                str(int(admission.requests_level + self._minute_request_extra)),
                self._minute_token_text,
                str(int(admission.tokens_level + self._minute_token_extra)),
            )
        return (
            self._request_limit_text,
            str(int(admission.requests_level)),
            self._token_limit_text,
            str(int(admission.tokens_level)),
        )

    def openai_headers(self, admission: Admission) -> dict[str, str]:
        """``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` from the buckets' state."""
        request_reset, token_reset = self._resets(admission)
        request_limit, requests_left, token_limit, tokens_left = self._announced(admission)
        return {
            "x-ratelimit-limit-requests": request_limit,
            "x-ratelimit-remaining-requests": requests_left,
            "x-ratelimit-reset-requests": go_duration(request_reset),
            "x-ratelimit-limit-tokens": token_limit,
            "x-ratelimit-remaining-tokens": tokens_left,
            "x-ratelimit-reset-tokens": go_duration(token_reset),
        }

    def azure_headers(self, admission: Admission) -> dict[str, str]:
        """Azure OpenAI's ``x-ratelimit-remaining-{requests,tokens}``: no limits, no resets."""
        return {
            "x-ratelimit-remaining-requests": str(int(admission.requests_level)),
            "x-ratelimit-remaining-tokens": str(int(admission.tokens_level)),
        }

    def _rfc3339_in(self, seconds: float) -> str:
        """RFC 3339 UTC time ``seconds`` from now, rounded up to the whole second (cached per second);
        in "truncated" mode cut to the whole second instead, as some servers and gateways do."""
        moment = time.time() + seconds
        epoch = math.floor(moment) if self.header_mode == "truncated" else math.ceil(moment)
        text = self._stamps.get(epoch)
        if text is None:
            if len(self._stamps) > 256:
                self._stamps.clear()
            text = self._stamps[epoch] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
        return text

    def anthropic_headers(self, admission: Admission) -> dict[str, str]:
        """``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}``.

        The simulator has one token bucket, so ``tokens`` (the most restrictive token limit, as
        Anthropic defines it), ``input-tokens`` and ``output-tokens`` all report it.
        """
        request_reset, token_reset = self._resets(admission)
        request_limit, requests_left, limit, tokens_left = self._announced(admission)
        tokens_reset = self._rfc3339_in(token_reset)
        return {
            "anthropic-ratelimit-requests-limit": request_limit,
            "anthropic-ratelimit-requests-remaining": requests_left,
            "anthropic-ratelimit-requests-reset": self._rfc3339_in(request_reset),
            "anthropic-ratelimit-tokens-limit": limit,
            "anthropic-ratelimit-tokens-remaining": tokens_left,
            "anthropic-ratelimit-tokens-reset": tokens_reset,
            "anthropic-ratelimit-input-tokens-limit": limit,
            "anthropic-ratelimit-input-tokens-remaining": tokens_left,
            "anthropic-ratelimit-input-tokens-reset": tokens_reset,
            "anthropic-ratelimit-output-tokens-limit": limit,
            "anthropic-ratelimit-output-tokens-remaining": tokens_left,
            "anthropic-ratelimit-output-tokens-reset": tokens_reset,
        }

    def headers(self, api: ApiName, admission: Admission) -> dict[str, str]:
        """The rate-limit headers of ``api`` for this admission (Azure's for either API in "azure" mode)."""
        if self.header_mode == "azure":
            return self.azure_headers(admission)
        return self.openai_headers(admission) if api == "openai" else self.anthropic_headers(admission)

    # --------------------------------------------------------------------------- refusals
    def _per_window(self, what: str) -> str:
        if self.window_s == 60.0:
            return f"{what} per min ({'RPM' if what == 'requests' else 'TPM'})"
        return f"{what} per {self.window_s:g}s"

    def refusal_body(self, api: ApiName, model: str, admission: Admission) -> bytes:
        """The 429 body in ``api``'s shape, naming the limit, what was used and when to retry."""
        kind = admission.refused
        if kind == "requests":
            limit, used, requested = self._request_limit_text, self.request_capacity - int(admission.requests_level), 1
        else:
            limit, used, requested = (
                self._token_limit_text,
                self.token_capacity - int(admission.tokens_level),
                admission.cost,
            )
        what = "requests" if kind == "requests" else "tokens"
        window = self._per_window(what)
        if api == "openai":
            if kind == "too_large":
                message = (
                    f"Request too large for {model} in organization org-simulator on {window}: "
                    f"Limit {limit}, Requested {requested}. Lower the input or max_tokens to fit (simulated)."
                )
            else:
                message = (
                    f"Rate limit reached for {model} in organization org-simulator on {window}: "
                    f"Limit {limit}, Used {int(used)}, Requested {requested}. "
                    f"Please try again in {go_duration(admission.wait_s)}. (simulated)"
                )
            payload: dict[str, object] = {
                "error": {"message": message, "type": what, "param": None, "code": "rate_limit_exceeded"}
            }
        else:
            if kind == "too_large":
                message = (
                    f"This request needs {requested} tokens, more than the simulated limit of {limit} "
                    f"{window} for {model}; lower the prompt or max_tokens."
                )
            else:
                message = (
                    f"This request would go over the simulated limit of {limit} {window} for {model}. "
                    "Wait as long as the retry-after header says, or send more slowly."
                )
            payload = {"type": "error", "error": {"type": "rate_limit_error", "message": message}}
        return json.dumps(payload).encode()


def retry_after(mode: RetryAfterMode, wait_s: float) -> dict[str, str]:
    """Retry headers for a refusal: ``retry-after`` in whole seconds (rounded up), plus
    ``retry-after-ms`` in ``"ms"`` mode; none in ``"none"`` mode or when no wait helps."""
    if mode == "none" or not math.isfinite(wait_s):
        return {}
    if mode == "seconds":
        return {"retry-after": str(max(1, math.ceil(wait_s - 1e-9)))}
    return {
        "retry-after": str(max(1, math.ceil(wait_s - 1e-9))),
        "retry-after-ms": str(max(1, math.ceil(wait_s * 1000.0 - 1e-6))),
    }
