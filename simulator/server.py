"""The simulator HTTP server (aiohttp.web): OpenAI and Anthropic endpoints plus a control API."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import socket
import sys
import time
import uuid
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from simulator.answers import Answer, approx_tokens, compose_answer, scripted_answer
from simulator.batches import BatchApi, BatchState
from simulator.faults import (
    MALFORMED_BODY,
    FaultEngine,
    echoed_key_message,
    error_body,
    retry_after_headers,
)
from simulator.ratelimit import Admission, RateLimitWindows, TokenBuckets, retry_after
from simulator.settings import STATUS_FAULTS, ApiName, FaultRule, SimulatorSettings
from simulator.shapes import render
from simulator.stats import ModelStats, Stats, fingerprint
from simulator.structured import InvalidDraws, structured_answer
from simulator.wire import ParsedRequest, RequestError, parse_anthropic, parse_openai

JSON_CONTENT_TYPE = "application/json"
# Seconds a dropped request's handler waits for the connection-lost cancellation.
_DROP_WAIT_S = 5.0
# How long shutdown waits for in-progress handlers (e.g. "hang" faults) before cancelling them.
SHUTDOWN_TIMEOUT_S = 0.05


class Simulator:
    """State and request handlers of one simulator instance (one event loop).

    All methods must run on the event loop that serves the app; other threads go through
    :class:`simulator.harness.RunningSimulator`, which schedules calls onto that loop.
    """

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.stats = Stats()
        self.faults = FaultEngine(settings.faults, settings.seed)
        self.limits = RateLimitWindows(
            settings.rate_limit_requests, settings.rate_limit_tokens, settings.rate_limit_window_s
        )
        self.buckets = TokenBuckets(
            settings.rate_limit_requests,
            settings.rate_limit_tokens,
            settings.rate_limit_window_s,
            settings.rate_limit_burst,
        )
        self.buckets.header_mode = settings.rate_limit_header_mode
        self._jitter_rng = random.Random(settings.seed)
        self.invalid_draws = InvalidDraws(settings.seed)
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(5).hex()
        self._models_seen: dict[str, int] = {}
        self.batches = BatchState()

    # ----------------------------------------------------------------- control
    def configure(self, patch: dict[str, Any]) -> SimulatorSettings:
        """Apply partial settings; fault counters restart only when faults or seed change."""
        patch = dict(patch)
        if "faults" in patch and patch["faults"] is not None:
            patch["faults"] = [rule.model_dump() if isinstance(rule, FaultRule) else rule for rule in patch["faults"]]
        old = self.settings
        new = old.merged(patch)
        self.settings = new
        if _bucket_params(new) != _bucket_params(old):  # new limits: every bucket starts full
            self.buckets.configure(
                new.rate_limit_requests, new.rate_limit_tokens, new.rate_limit_window_s, new.rate_limit_burst
            )
        self.buckets.header_mode = new.rate_limit_header_mode
        if "faults" in patch or "seed" in patch:
            self.faults = FaultEngine(new.faults, new.seed)
        if "seed" in patch:
            self._jitter_rng = random.Random(new.seed)
            self.invalid_draws = InvalidDraws(new.seed)
        self.limits.request_limit = new.rate_limit_requests
        self.limits.token_limit = new.rate_limit_tokens
        self.limits.window_s = new.rate_limit_window_s
        return new

    def reset(self) -> None:
        """Clear statistics, fault-rule counters, rate-limit windows and buckets, batches and files;
        re-seed the RNGs."""
        self.stats = Stats()
        self.batches = BatchState()
        self.faults.reset()
        self.invalid_draws.reset()
        self.limits.clear()
        self.buckets.clear()
        self._jitter_rng = random.Random(self.settings.seed)

    def snapshot(self) -> dict[str, Any]:
        """Statistics in the ``GET /_sim/stats`` shape."""
        return self.stats.snapshot(rate_limited=self.settings.rate_limit_enforce)

    # ----------------------------------------------------------------- helpers
    def _next_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):014x}"

    async def _latency(self) -> None:
        settings = self.settings
        if settings.latency_ms <= 0 and settings.latency_jitter_ms <= 0:
            return
        jitter = 0.0
        if settings.latency_jitter_ms > 0:
            jitter = self._jitter_rng.uniform(0.0, settings.latency_jitter_ms)
        await asyncio.sleep((settings.latency_ms + jitter) / 1000.0)

    def _request_id_headers(self, api: ApiName, uid: str) -> dict[str, str]:
        """Content-Type and the request id header chosen by ``settings.request_id_header``."""
        headers = {"Content-Type": JSON_CONTENT_TYPE}
        choice = self.settings.request_id_header
        if choice == "provider":
            headers["x-request-id" if api == "openai" else "request-id"] = f"req_{uid}"
        elif choice == "gateway":
            headers["x-litellm-call-id"] = str(uuid.UUID(uid.rjust(32, "0")))
        return headers

    def _error(
        self,
        api: ApiName,
        kind: str,
        uid: str,
        ms: ModelStats | None,
        message: str | None = None,
        extra_headers: dict[str, str] | None = None,
        fault_kind: str | None = None,
    ) -> web.Response:
        self.stats.error(ms, fault_kind)
        headers = self._request_id_headers(api, uid)
        if extra_headers:
            headers.update(extra_headers)
        return web.Response(status=int(kind), body=error_body(api, kind, message), headers=headers)

    def _invalid_request_headers(self, api: ApiName, api_key: str, body: Any) -> dict[str, str] | None:
        """Rate-limit headers of a 400 for an invalid OpenAI request naming a model: OpenAI sends the
        key's current limits on it (curator reads them from an empty-``messages`` probe), charging nothing."""
        settings = self.settings
        model = body.get("model") if isinstance(body, dict) else None
        if api != "openai" or not (settings.rate_limit_enforce and settings.rate_limit_headers):
            return None
        if not isinstance(model, str) or not model:
            return None
        return self.buckets.headers(api, self.buckets.peek(api_key, model))

    def _compose(self, parsed: ParsedRequest) -> Answer:
        """The answer to a request: a scripted answer (text, also for a structured-output request),
        else the structured answer when the request asks for one (made invalid with
        ``structured_invalid_probability``), else the answer text of the mode. Called once per request:
        the invalid draw is per request."""
        answer = None
        settings = self.settings
        if settings.scripted:
            answer = scripted_answer(settings.scripted, parsed.model, parsed.prompt_text)
        if answer is None and parsed.schema is not None:
            invalid = self.invalid_draws.draw(settings.structured_invalid_probability, parsed.tool_name is not None)
            answer = structured_answer(parsed, invalid)
        if answer is None:
            answer = compose_answer(parsed.model, parsed.prompt_text, parsed.max_tokens, settings.mode)
        return answer

    def _answer(
        self,
        api: ApiName,
        parsed: ParsedRequest,
        uid: str,
        arrival: float,
        *,
        rule: FaultRule | None = None,
        answer: Answer | None = None,
        limit_headers: dict[str, str] | None = None,
    ) -> web.Response:
        """A 200 answer: the normal one, or the one a 200-kind fault ``rule`` asks for (``empty``,
        ``no_choices``, an answer shape; see :func:`simulator.shapes.render`). ``limit_headers``: the
        enforced buckets' headers; without them, the advertised windows count this answer's true tokens
        and add theirs (unless rate-limit headers are off)."""
        if answer is None:
            answer = self._compose(parsed)
        settings = self.settings
        window_headers = limit_headers is None and settings.rate_limit_headers and not settings.rate_limit_enforce
        rendered = render(api, parsed, answer, uid, int(time.time()), rule)
        headers = self._request_id_headers(api, uid)
        if limit_headers is not None:
            headers.update(limit_headers)
        elif window_headers:
            windows = self.limits.openai_headers if api == "openai" else self.limits.anthropic_headers
            headers.update(windows(parsed.model, rendered.total_tokens))
        if api == "openai":
            headers["openai-processing-ms"] = str(int((time.monotonic() - arrival) * 1000))
        return web.Response(body=json.dumps(rendered.payload).encode(), headers=headers)

    def _refuse(
        self,
        api: ApiName,
        model: str,
        admission: Admission,
        uid: str,
        ms: ModelStats | None,
        limit_headers: dict[str, str] | None,
    ) -> web.Response:
        """The rate limiter's 429: the API's body, the buckets' headers and the retry headers."""
        self.stats.rate_limited(ms)
        headers = self._request_id_headers(api, uid)
        if limit_headers:
            headers.update(limit_headers)
        headers.update(retry_after(self.settings.rate_limit_retry_after, admission.wait_s))
        return web.Response(status=429, body=self.buckets.refusal_body(api, model, admission), headers=headers)

    async def _fault(
        self,
        api: ApiName,
        rule: FaultRule,
        parsed: ParsedRequest,
        uid: str,
        arrival: float,
        request: web.Request,
        ms: ModelStats | None,
        limit_headers: dict[str, str] | None = None,
        answer: Answer | None = None,
    ) -> web.StreamResponse:
        """Apply fault ``rule``; ``answer``: the request's answer if it was already composed."""
        kind = rule.kind
        if kind in STATUS_FAULTS:
            extra = retry_after_headers(rule)
            if limit_headers:
                extra = {**limit_headers, **extra}
            return self._error(api, kind, uid, ms, extra_headers=extra, fault_kind=kind)
        if kind == "echo_key":
            message = echoed_key_message(api, received_key(request, api), rule.echo, rule.echo_chars)
            return self._error(api, rule.echo_status, uid, ms, message, extra_headers=limit_headers, fault_kind=kind)
        self.stats.error(ms, kind)
        if kind == "drop":
            if request.transport is not None:
                request.transport.close()
            # The server runs with handler_cancellation, so connection loss cancels us here.
            await asyncio.sleep(_DROP_WAIT_S)
            raise ConnectionResetError("connection dropped by simulator fault")
        if kind == "hang":
            await asyncio.sleep(rule.hang_s)
            return self._answer(api, parsed, uid, arrival, answer=answer, limit_headers=limit_headers)
        await self._latency()
        if kind == "malformed":
            headers = self._request_id_headers(api, uid)
            if limit_headers:
                headers.update(limit_headers)
            return web.Response(body=MALFORMED_BODY, headers=headers)
        # empty, no_choices and the answer shapes: a 200 in the shape the rule asks for.
        return self._answer(api, parsed, uid, arrival, rule=rule, answer=answer, limit_headers=limit_headers)

    # ---------------------------------------------------------------- handlers
    async def _chat(self, request: web.Request, api: ApiName) -> web.StreamResponse:
        arrival = time.monotonic()
        uid = self._next_id()
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        stats = self.stats
        api_key = received_key(request, api)
        has_key = bool(api_key)
        if body is None:
            stats.arrive(None, None, arrival, has_key)
            return self._error(api, "400", uid, None, "Could not parse the JSON body of your request.")
        model = body.get("model") if isinstance(body, dict) else None
        fp = fingerprint(api, body)
        ms = stats.arrive(model if isinstance(model, str) and model else None, fp, arrival, has_key)
        try:
            if self.settings.require_api_key and not has_key:
                message = "You didn't provide an API key." if api == "openai" else "x-api-key header is required"
                return self._error(api, "401", uid, ms, message)
            if api == "anthropic" and not request.headers.get("anthropic-version"):
                return self._error(api, "400", uid, ms, "anthropic-version: header is required")
            try:
                parsed = parse_openai(body) if api == "openai" else parse_anthropic(body)
            except RequestError as exc:
                return self._error(api, "400", uid, ms, str(exc), self._invalid_request_headers(api, api_key, body))
            self._models_seen.setdefault(parsed.model, int(time.time()))
            if ms is not None:
                for tag in parsed.images:
                    ms.images[tag] = ms.images.get(tag, 0) + 1
            settings = self.settings
            answer: Answer | None = None
            limit_headers: dict[str, str] | None = None
            if settings.rate_limit_enforce:
                # Cost at admission: input tokens plus max_tokens (OpenAI reserves max_tokens up
                # front); without max_tokens, the answer's own tokens.
                output_tokens = parsed.max_tokens
                if output_tokens is None:
                    answer = self._compose(parsed)
                    output_tokens = approx_tokens(answer.text)
                admission = self.buckets.admit(api_key, parsed.model, parsed.input_tokens + output_tokens)
                if settings.rate_limit_headers:
                    limit_headers = self.buckets.headers(api, admission)
                if admission.refused is not None:
                    return self._refuse(api, parsed.model, admission, uid, ms, limit_headers)
            rule = self.faults.select(api, parsed.model, parsed.prompt_text)
            if rule is not None:
                return await self._fault(api, rule, parsed, uid, arrival, request, ms, limit_headers, answer)
            await self._latency()
            response = self._answer(api, parsed, uid, arrival, answer=answer, limit_headers=limit_headers)
            stats.ok(ms, fp)
            return response
        finally:
            if ms is not None:
                ms.in_flight -= 1

    async def openai_chat(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions``."""
        return await self._chat(request, "openai")

    async def anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/messages``."""
        return await self._chat(request, "anthropic")

    async def list_models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: models requested so far, in OpenAI's list shape."""
        data = [
            {"id": model, "object": "model", "created": created, "owned_by": "simulator"}
            for model, created in self._models_seen.items()
        ]
        return web.json_response({"object": "list", "data": data})

    async def get_stats(self, request: web.Request) -> web.Response:
        """``GET /_sim/stats``."""
        return web.json_response(self.snapshot())

    async def post_reset(self, request: web.Request) -> web.Response:
        """``POST /_sim/reset``."""
        self.reset()
        return web.json_response({"ok": True})

    async def get_settings(self, request: web.Request) -> web.Response:
        """``GET /_sim/settings``."""
        return web.json_response(self.settings.model_dump(mode="json"))

    async def put_settings(self, request: web.Request) -> web.Response:
        """``PUT /_sim/settings`` with partial settings JSON; returns the new settings."""
        try:
            patch = await request.json()
            if not isinstance(patch, dict):
                raise ValueError("settings body must be a JSON object")
            new = self.configure(patch)
        except (ValueError, ValidationError) as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        return web.json_response(new.model_dump(mode="json"))

    async def health(self, request: web.Request) -> web.Response:
        """``GET /_sim/health``."""
        return web.json_response({"ok": True})


def _bucket_params(settings: SimulatorSettings) -> tuple[object, ...]:
    return (
        settings.rate_limit_enforce,
        settings.rate_limit_requests,
        settings.rate_limit_tokens,
        settings.rate_limit_window_s,
        settings.rate_limit_burst,
    )


def received_key(request: web.Request, api: ApiName) -> str:
    """The API key a request carries (``Authorization: Bearer`` or ``x-api-key``), ``""`` if none."""
    if api == "openai":
        auth = request.headers.get("Authorization", "")
        return auth[7:].strip() if auth.startswith("Bearer ") else ""
    return request.headers.get("x-api-key", "").strip()


SIMULATOR_KEY: web.AppKey[Simulator] = web.AppKey("simulator", Simulator)


def build_app(settings: SimulatorSettings | None = None) -> web.Application:
    """Build the aiohttp application; its :class:`Simulator` is ``app[SIMULATOR_KEY]``."""
    sim = Simulator(settings or SimulatorSettings())
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[SIMULATOR_KEY] = sim
    app.router.add_post("/v1/chat/completions", sim.openai_chat)
    app.router.add_post("/v1/messages", sim.anthropic_messages)
    app.router.add_get("/v1/models", sim.list_models)
    app.router.add_get("/_sim/stats", sim.get_stats)
    app.router.add_post("/_sim/reset", sim.post_reset)
    app.router.add_get("/_sim/settings", sim.get_settings)
    app.router.add_put("/_sim/settings", sim.put_settings)
    app.router.add_get("/_sim/health", sim.health)
    BatchApi(sim).add_routes(app)
    return app


def make_runner(app: web.Application) -> web.AppRunner:
    """An AppRunner for the simulator: no access log, handler cancellation on disconnect."""
    return web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT_S)


def bind_socket(host: str, port: int) -> socket.socket:
    """Create a listening TCP socket on (host, port); port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def _serve_async(host: str, port: int, settings: SimulatorSettings) -> None:
    runner = make_runner(build_app(settings))
    await runner.setup()
    sock = bind_socket(host, port)
    real_port = sock.getsockname()[1]
    site = web.SockSite(runner, sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            pass
    try:
        await site.start()
        display_host = f"[{host}]" if ":" in host else host
        sys.stdout.write(f"simulator listening on http://{display_host}:{real_port}\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await runner.cleanup()
        sock.close()


def serve(host: str, port: int, settings: SimulatorSettings) -> None:
    """Run the simulator until SIGINT/SIGTERM (blocking).

    Prints ``simulator listening on http://HOST:PORT`` (with the real port when ``port`` is 0)
    to stdout once ready.
    """
    asyncio.run(_serve_async(host, port, settings))
