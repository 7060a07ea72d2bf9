"""The batch APIs: OpenAI's Batch API with its Files API, and Anthropic's Message Batches API.

OpenAI: upload a JSONL input file (``POST /v1/files``, purpose ``batch``), create a batch from it
(``POST /v1/batches``), poll it (``GET /v1/batches/{id}``), then download its output and error files
(``GET /v1/files/{id}/content``). Anthropic: create a batch with the requests inline
(``POST /v1/messages/batches``), poll it, then read ``results_url`` (JSONL).

Like the real services, a batch is answered over time: request i of n is done at
``created + batch_completion_s * (i + 1) / n``. Nothing runs in the background; a batch is brought up
to date whenever it is read. Each request is answered like an online request to the same API (fault
rules -- answer shapes included, see :mod:`simulator.shapes` --, scripted answers and the answer mode
apply), but it counts only in the ``batches`` section of
the statistics, not against the online rate limits or counters.

As with the real APIs, OpenAI validates the input file's lines after ``POST /v1/batches`` has
answered (a bad file makes a ``failed`` batch with ``errors``), and both APIs validate each request's
body only when they run it (a bad body makes an errored result); Anthropic refuses a malformed
request list (custom ids, limits) at once.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from aiohttp import BodyPartReader, web

from simulator.answers import Answer
from simulator.faults import FaultEngine, error_body
from simulator.settings import STATUS_FAULTS, ApiName, SimulatorSettings
from simulator.shapes import render
from simulator.stats import Stats
from simulator.wire import ParsedRequest, RequestError, parse_anthropic, parse_openai

OPENAI_MAX_REQUESTS = 50_000
OPENAI_MAX_BYTES = 200 * 1024 * 1024
ANTHROPIC_MAX_REQUESTS = 100_000
ANTHROPIC_MAX_BYTES = 256 * 1024 * 1024
COMPLETION_WINDOW_S = 24 * 3600
BATCH_FILE_TTL_S = 30 * 24 * 3600
CHAT_ENDPOINT = "/v1/chat/completions"
# Endpoints the real Batch API accepts; the simulator runs only chat completions.
OPENAI_BATCH_ENDPOINTS = frozenset(
    {
        "/v1/responses",
        CHAT_ENDPOINT,
        "/v1/embeddings",
        "/v1/completions",
        "/v1/moderations",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/videos",
    }
)
FILE_PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
CUSTOM_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
METADATA_MAX_PAIRS = 16
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512
# Validation errors reported per failed batch (the real API reports a bounded number too).
MAX_VALIDATION_ERRORS = 100
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
CANCELLED_MESSAGE = "This request was not executed because the batch was cancelled."
# Fault kinds without an HTTP status (a dropped connection, a hang, a malformed body) become a
# server error inside a batch: there is no connection of its own to drop.
TRANSPORT_FAULTS = frozenset({"drop", "hang", "malformed"})

OutcomeKind = Literal["succeeded", "errored", "expired", "canceled"]


class BatchHost(Protocol):
    """What the batch handlers need of :class:`simulator.server.Simulator` (no import: no cycle)."""

    settings: SimulatorSettings
    stats: Stats
    faults: FaultEngine
    batches: BatchState

    def _compose(self, parsed: ParsedRequest) -> Answer: ...

    def _next_id(self) -> str: ...


class BatchError(Exception):
    """A request to a batch endpoint is refused; rendered in the API's error shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None, error_type: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.error_type = error_type


@dataclass(slots=True)
class Outcome:
    """How one batch request ended: its answer (or error body) or why it never ran."""

    kind: OutcomeKind
    status: int = 0
    body: dict[str, Any] | None = None
    uid: str = ""
    # A succeeded request's true token counts (its body's usage may be a shape fault's lie).
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(slots=True)
class BatchItem:
    """One request of a batch: its custom id, body, due time and, once done, its outcome."""

    custom_id: str
    body: Any
    due: float
    expires: bool
    outcome: Outcome | None = None


@dataclass(slots=True)
class StoredFile:
    """A file of the OpenAI Files API (uploaded, or a batch's output or error file)."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int


@dataclass
class Batch:
    """State of one batch of either API. ``validation_errors``: the OpenAI input file failed."""

    api: ApiName
    id: str
    created: float
    duration: float
    items: list[BatchItem]
    endpoint: str = ""
    input_file_id: str = ""
    completion_window: str = ""
    metadata: dict[str, str] | None = None
    model: str | None = None
    validation_errors: list[dict[str, Any]] | None = None
    cancel_at: float | None = None
    ended_at: float | None = None
    next_index: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0

    def tally(self) -> dict[str, int]:
        """Requests per outcome, plus ``processing`` (not done yet)."""
        counts = {"succeeded": 0, "errored": 0, "expired": 0, "canceled": 0}
        for item in self.items:
            if item.outcome is not None:
                counts[item.outcome.kind] += 1
        counts["processing"] = len(self.items) - sum(counts.values())
        return counts


@dataclass
class BatchState:
    """All batches and files of one simulator (cleared by ``Simulator.reset``)."""

    files: dict[str, StoredFile] = field(default_factory=dict)
    batches: dict[str, Batch] = field(default_factory=dict)


# --------------------------------------------------------------------------- running requests


def _errored(api: ApiName, kind: str, uid: str, message: str | None = None) -> Outcome:
    """An errored outcome with the API's error body for HTTP status ``kind``."""
    body = json.loads(error_body(api, kind, message))
    if api == "anthropic":
        body["request_id"] = f"req_{uid}"
    return Outcome("errored", int(kind), body, uid)


def execute(host: BatchHost, api: ApiName, body: Any, now: float) -> Outcome:
    """Answer one batch request as the online endpoint would (parse, fault rules, answer; structured
    output included: ``host._compose`` makes it)."""
    uid = host._next_id()
    try:
        parsed = parse_openai(body) if api == "openai" else parse_anthropic(body)
    except RequestError as exc:
        return _errored(api, "400", uid, str(exc))
    rule = host.faults.select(api, parsed.model, parsed.prompt_text)
    kind = rule.kind if rule is not None else None
    if rule is not None and kind in STATUS_FAULTS:
        return _errored(api, rule.kind, uid)
    if rule is not None and kind == "echo_key":  # the batch keeps no key to echo
        return _errored(api, rule.echo_status, uid)
    if kind in TRANSPORT_FAULTS:
        return _errored(api, "500", uid)
    answer = host._compose(parsed)
    # empty, no_choices and the answer shapes render as they do online (simulator.shapes).
    rendered = render(api, parsed, answer, uid, int(now), rule)
    return Outcome("succeeded", 200, rendered.payload, uid, rendered.input_tokens, rendered.output_tokens)


def _record(host: BatchHost, batch: Batch, outcome: Outcome) -> None:
    """Count a request's outcome in the statistics and its tokens in the batch's usage."""
    stats = host.stats.batches
    if outcome.kind == "succeeded":
        stats.requests_succeeded += 1
        batch.input_tokens += outcome.input_tokens
        batch.output_tokens += outcome.output_tokens
    elif outcome.kind == "errored":
        stats.requests_errored += 1
    elif outcome.kind == "expired":
        stats.requests_expired += 1
    else:
        stats.requests_cancelled += 1


def advance(host: BatchHost, batch: Batch, now: float) -> None:
    """Run the requests due by ``now`` (in order); end the batch once none is left to run."""
    if batch.ended_at is not None or batch.validation_errors is not None:
        return
    items = batch.items
    while batch.next_index < len(items) and items[batch.next_index].due <= now:
        item = items[batch.next_index]
        if not item.expires:
            item.outcome = execute(host, batch.api, item.body, now)
            _record(host, batch, item.outcome)
        batch.next_index += 1
    if batch.next_index == len(items):
        finish(host, batch, items[-1].due if items else batch.created, "expired")


def finish(host: BatchHost, batch: Batch, ended_at: float, leftover: Literal["expired", "canceled"]) -> None:
    """End a batch: requests without an outcome get ``leftover``; OpenAI's result files are written."""
    missing = [item for item in batch.items if item.outcome is None]
    for item in missing:
        item.outcome = Outcome(leftover, uid=host._next_id())
        _record(host, batch, item.outcome)
    batch.ended_at = ended_at
    if missing and leftover == "expired":
        host.stats.batches.expired += 1
    if batch.api == "openai":
        _write_result_files(host, batch)


def _openai_result_line(item: BatchItem, outcome: Outcome) -> dict[str, Any]:
    """One line of an output or error file for a request that has an outcome."""
    line: dict[str, Any] = {"id": f"batch_req_{outcome.uid}", "custom_id": item.custom_id}
    if outcome.kind in ("succeeded", "errored"):
        line["response"] = {"status_code": outcome.status, "request_id": f"req_{outcome.uid}", "body": outcome.body}
        line["error"] = None
    else:
        expired = outcome.kind == "expired"
        line["response"] = None
        line["error"] = {
            "code": "batch_expired" if expired else "batch_cancelled",
            "message": EXPIRED_MESSAGE if expired else CANCELLED_MESSAGE,
        }
    return line


def _jsonl(lines: Iterable[dict[str, Any]]) -> bytes:
    """JSON Lines bytes, one object per line."""
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _write_result_files(host: BatchHost, batch: Batch) -> None:
    """The output file (successful requests) and the error file (the rest), each only if not empty."""
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for item in batch.items:
        if item.outcome is not None:
            (good if item.outcome.kind == "succeeded" else bad).append(_openai_result_line(item, item.outcome))
    if good:
        batch.output_file_id = _store_file(host, f"{batch.id}_output.jsonl", "batch_output", _jsonl(good)).id
    if bad:
        batch.error_file_id = _store_file(host, f"{batch.id}_error.jsonl", "batch_output", _jsonl(bad)).id


def _store_file(host: BatchHost, filename: str, purpose: str, data: bytes) -> StoredFile:
    """Keep a new file (uploaded or written by a batch) and return it."""
    stored = StoredFile(f"file-{host._next_id()}", filename, purpose, data, int(time.time()))
    host.batches.files[stored.id] = stored
    return stored


def cancel(host: BatchHost, batch: Batch, now: float) -> None:
    """Cancel a running batch: what is due by now is done, everything else is cancelled."""
    advance(host, batch, now)
    if batch.ended_at is not None or batch.validation_errors is not None:
        raise BatchError(400, f"Cannot cancel batch {batch.id}: it has already ended.")
    batch.cancel_at = now
    host.stats.batches.cancelled += 1
    finish(host, batch, now, "canceled")


def due_times(created: float, duration: float, count: int) -> list[float]:
    """When each of ``count`` requests is done: linear over ``duration`` seconds."""
    return [created + duration * (i + 1) / count for i in range(count)]


def _expires(host: BatchHost, api: ApiName, body: Any) -> bool:
    """Whether a request is never processed (its prompt holds ``batch_expire_prompt_contains``)."""
    marker = host.settings.batch_expire_prompt_contains
    if marker is None:
        return False
    try:
        parsed = parse_openai(body) if api == "openai" else parse_anthropic(body)
    except RequestError:
        return False
    return marker in parsed.prompt_text


def new_batch(host: BatchHost, api: ApiName, requests: list[tuple[str, Any]], **fields: Any) -> Batch:
    """Register a batch of (custom_id, body) requests created now and count it."""
    now = time.time()
    duration = host.settings.batch_completion_s
    dues = due_times(now, duration, len(requests))
    items = [
        BatchItem(custom_id, body, due, _expires(host, api, body)) for (custom_id, body), due in zip(requests, dues)
    ]
    prefix = "batch_" if api == "openai" else "msgbatch_01"
    batch = Batch(api, f"{prefix}{host._next_id()}", now, duration, items, **fields)
    host.batches.batches[batch.id] = batch
    stats = host.stats.batches
    if api == "openai":
        stats.openai_batches_created += 1
    else:
        stats.anthropic_batches_created += 1
    if batch.validation_errors is None:
        stats.submitted(api, [custom_id for custom_id, _ in requests])
    else:
        stats.openai_batches_failed += 1
    return batch


# --------------------------------------------------------------------------- rendering


def _unix(value: float | None) -> int | None:
    """Whole Unix seconds, or None."""
    return None if value is None else int(value)


def _rfc3339(value: float | None) -> str | None:
    """An RFC 3339 UTC timestamp (``…Z``), or None."""
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")


def openai_status(batch: Batch) -> str:
    """The Batch API status of a batch brought up to date."""
    if batch.validation_errors is not None:
        return "failed"
    if batch.ended_at is None:
        return "in_progress"
    if batch.cancel_at is not None:
        return "cancelled"
    if any(item.outcome is not None and item.outcome.kind == "expired" for item in batch.items):
        return "expired"
    return "completed"


def render_openai(batch: Batch, status: str | None = None) -> dict[str, Any]:
    """A Batch object; ``status`` overrides the computed one (``validating`` on create,
    ``cancelling`` on cancel, as the real API answers those calls)."""
    status = status or openai_status(batch)
    failed = batch.validation_errors is not None
    ended = batch.ended_at if status in ("completed", "expired", "cancelled") else None
    counts = batch.tally()
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "model": batch.model,
        "errors": {"object": "list", "data": batch.validation_errors} if status == "failed" else None,
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": status,
        "output_file_id": batch.output_file_id if ended is not None else None,
        "error_file_id": batch.error_file_id if ended is not None else None,
        "created_at": int(batch.created),
        "in_progress_at": None if failed or status == "validating" else int(batch.created),
        "expires_at": int(batch.created + COMPLETION_WINDOW_S),
        "finalizing_at": _unix(ended) if status in ("completed", "expired") else None,
        "completed_at": _unix(ended) if status == "completed" else None,
        "failed_at": int(batch.created) if status == "failed" else None,
        "expired_at": _unix(ended) if status == "expired" else None,
        "cancelling_at": _unix(batch.cancel_at),
        "cancelled_at": _unix(ended) if status == "cancelled" else None,
        "request_counts": {
            "total": 0 if failed else len(batch.items),
            "completed": counts["succeeded"],
            "failed": counts["errored"],
        },
        "metadata": batch.metadata,
        "usage": {
            "input_tokens": batch.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": batch.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": batch.input_tokens + batch.output_tokens,
        },
    }


def anthropic_status(batch: Batch, canceling: bool = False) -> str:
    """The Message Batches ``processing_status`` of a batch brought up to date."""
    if batch.ended_at is not None and not canceling:
        return "ended"
    return "canceling" if batch.cancel_at is not None else "in_progress"


def render_anthropic(batch: Batch, base_url: str, canceling: bool = False) -> dict[str, Any]:
    """A MessageBatch object; ``canceling`` renders the answer to the cancel call itself."""
    status = anthropic_status(batch, canceling)
    ended = status == "ended"
    counts = batch.tally()
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": {
            "processing": counts["processing"],
            "succeeded": counts["succeeded"],
            "errored": counts["errored"],
            "canceled": counts["canceled"],
            "expired": counts["expired"],
        },
        "ended_at": _rfc3339(batch.ended_at) if ended else None,
        "created_at": _rfc3339(batch.created),
        "expires_at": _rfc3339(batch.created + COMPLETION_WINDOW_S),
        "archived_at": None,
        "cancel_initiated_at": _rfc3339(batch.cancel_at),
        "results_url": f"{base_url}/v1/messages/batches/{batch.id}/results" if ended else None,
    }


def _anthropic_result_line(item: BatchItem) -> dict[str, Any]:
    """One line of a Message Batch's results."""
    outcome = item.outcome
    assert outcome is not None
    result: dict[str, Any] = {"type": outcome.kind}
    if outcome.kind == "succeeded":
        result["message"] = outcome.body
    elif outcome.kind == "errored":
        result["error"] = outcome.body
    return {"custom_id": item.custom_id, "result": result}


def render_file(stored: StoredFile) -> dict[str, Any]:
    """A File object."""
    return {
        "id": stored.id,
        "object": "file",
        "bytes": len(stored.data),
        "created_at": stored.created_at,
        "filename": stored.filename,
        "purpose": stored.purpose,
        "status": "processed",
        "expires_at": stored.created_at + BATCH_FILE_TTL_S if stored.purpose == "batch" else None,
        "status_details": None,
    }


def summaries(host: BatchHost) -> list[dict[str, Any]]:
    """Every batch (oldest first) brought up to date: api, id, status, counts, metadata."""
    now = time.time()
    result = []
    for batch in host.batches.batches.values():
        advance(host, batch, now)
        result.append(
            {
                "api": batch.api,
                "id": batch.id,
                "status": openai_status(batch) if batch.api == "openai" else anthropic_status(batch),
                "total": len(batch.items),
                "request_counts": batch.tally(),
                "custom_ids": [item.custom_id for item in batch.items],
                "metadata": batch.metadata,
            }
        )
    return result


# --------------------------------------------------------------------------- validation


def _openai_line_error(code: str, line: int | None, message: str, param: str | None = None) -> dict[str, Any]:
    """One entry of a failed batch's ``errors.data``."""
    return {"code": code, "line": line, "message": message, "param": param}


def _check_openai_line(raw: str, number: int, endpoint: str) -> tuple[str, Any] | dict[str, Any]:
    """(custom_id, body) of one input line, or the line's validation error."""
    try:
        request = json.loads(raw)
    except ValueError:
        return _openai_line_error("invalid_json_line", number, "This line is not parseable as valid JSON.")
    if not isinstance(request, dict):
        return _openai_line_error("invalid_json_line", number, "This line is not a JSON object.")
    for name in ("custom_id", "method", "url", "body"):
        if name not in request:
            return _openai_line_error(
                "missing_required_parameter", number, f"Missing required parameter: '{name}'.", name
            )
    custom_id = request["custom_id"]
    if not isinstance(custom_id, str) or not custom_id:
        return _openai_line_error("invalid_value", number, "'custom_id' must be a non-empty string.", "custom_id")
    if request["method"] != "POST":
        return _openai_line_error("invalid_value", number, "Only the POST method is supported.", "method")
    if request["url"] != endpoint:
        return _openai_line_error(
            "url_mismatch",
            number,
            f"The URL provided for this request ({request['url']!r}) does not match the batch endpoint {endpoint!r}.",
            "url",
        )
    body = request["body"]
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
        return _openai_line_error(
            "missing_required_parameter", number, "Missing required parameter: 'body.model'.", "body.model"
        )
    return custom_id, body


def validate_openai_file(data: bytes, endpoint: str, max_requests: int) -> tuple[list[tuple[str, Any]], list[dict]]:
    """Parse a batch input file: its requests, and the validation errors that fail the batch."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [], [_openai_line_error("invalid_file_format", None, "The input file is not valid UTF-8 text.")]
    requests: list[tuple[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    model: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        checked = _check_openai_line(raw, number, endpoint)
        if isinstance(checked, dict):
            errors.append(checked)
            continue
        custom_id, body = checked
        if custom_id in seen:
            errors.append(
                _openai_line_error(
                    "duplicate_custom_id",
                    number,
                    f"The custom_id {custom_id!r} is a duplicate of another request. "
                    "The custom_id parameter must be unique for each request in a batch.",
                    "custom_id",
                )
            )
            continue
        seen.add(custom_id)
        model = model or body["model"]
        if body["model"] != model:
            message = f"The model {body['model']!r} differs from the batch's model {model!r}; a batch input file can only include requests to a single model."
            errors.append(_openai_line_error("model_mismatch", number, message, "body.model"))
            continue
        requests.append((custom_id, body))
    if not requests and not errors:
        errors.append(_openai_line_error("empty_file", None, "The batch input file is empty."))
    if len(requests) + len(errors) > max_requests:
        message = f"The batch input file has more than the maximum of {max_requests} requests."
        errors.append(_openai_line_error("too_many_tasks", None, message))
    return requests, errors[:MAX_VALIDATION_ERRORS]


def _check_metadata(metadata: Any) -> dict[str, str] | None:
    """The batch ``metadata`` (at most 16 string pairs) or BatchError (400)."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > METADATA_MAX_PAIRS:
        raise BatchError(400, "metadata: an object of at most 16 key-value pairs is expected.", param="metadata")
    for key, value in metadata.items():
        if len(key) > METADATA_KEY_MAX or not isinstance(value, str) or len(value) > METADATA_VALUE_MAX:
            raise BatchError(
                400,
                "metadata: keys are strings of at most 64 characters, values strings of at most 512.",
                param="metadata",
            )
    return dict(metadata)


def _check_anthropic_requests(body: Any, max_requests: int) -> list[tuple[str, Any]]:
    """The (custom_id, params) pairs of a create request, or BatchError (400)."""
    if not isinstance(body, dict) or "requests" not in body:
        raise BatchError(400, "requests: Field required")
    entries = body["requests"]
    if not isinstance(entries, list) or not entries:
        raise BatchError(400, "requests: a non-empty array is required")
    if len(entries) > max_requests:
        raise BatchError(400, f"requests: a batch can hold at most {max_requests} requests, got {len(entries)}.")
    requests: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise BatchError(400, f"requests.{index}: Input should be a valid dictionary")
        custom_id = entry.get("custom_id")
        if not isinstance(custom_id, str) or not CUSTOM_ID_PATTERN.match(custom_id):
            raise BatchError(400, f"requests.{index}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        if custom_id in seen:
            raise BatchError(400, f"requests.{index}.custom_id: duplicate custom_id {custom_id!r} in the batch.")
        seen.add(custom_id)
        params = entry.get("params")
        if not isinstance(params, dict):
            raise BatchError(400, f"requests.{index}.params: Input should be a valid dictionary")
        requests.append((custom_id, params))
    return requests


# --------------------------------------------------------------------------- HTTP


def _has_key(request: web.Request, api: ApiName) -> bool:
    """Whether the request carries an API key in the API's header."""
    if api == "openai":
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and bool(auth[7:].strip())
    return bool(request.headers.get("x-api-key", "").strip())


def _error_response(api: ApiName, error: BatchError) -> web.Response:
    """A refused request in the API's error shape."""
    if api == "openai":
        payload: dict[str, Any] = {
            "error": {
                "message": error.message,
                "type": error.error_type or "invalid_request_error",
                "param": error.param,
                "code": None,
            }
        }
    else:
        default_type = {401: "authentication_error", 404: "not_found_error", 413: "request_too_large"}
        error_type = error.error_type or default_type.get(error.status, "invalid_request_error")
        payload = {"type": "error", "error": {"type": error_type, "message": error.message}}
    return web.json_response(payload, status=error.status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BatchApi:
    """The HTTP handlers of both batch APIs, over a :class:`BatchHost` (the simulator)."""

    def __init__(self, host: BatchHost) -> None:
        self.host = host

    def _guard(self, api: ApiName, family: str, handler: Handler) -> Handler:
        """Wrap a handler: count it, check the API key and headers, render BatchError."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            host = self.host
            host.stats.batches.http(family)
            try:
                if host.settings.require_api_key and not _has_key(request, api):
                    message = "You didn't provide an API key." if api == "openai" else "x-api-key header is required"
                    raise BatchError(401, message)
                if api == "anthropic" and not request.headers.get("anthropic-version"):
                    raise BatchError(400, "anthropic-version: header is required")
                return await handler(request)
            except BatchError as exc:
                return _error_response(api, exc)

        return wrapped

    def add_routes(self, app: web.Application) -> None:
        """Register every batch and file endpoint, and ``GET /_sim/batches``."""
        router = app.router
        files: tuple[ApiName, str] = ("openai", "openai_files")
        batches: tuple[ApiName, str] = ("openai", "openai_batches")
        messages: tuple[ApiName, str] = ("anthropic", "anthropic_batches")
        routes: list[tuple[str, str, tuple[ApiName, str], Handler]] = [
            ("POST", "/v1/files", files, self.upload_file),
            ("GET", "/v1/files", files, self.list_files),
            ("GET", "/v1/files/{file_id}", files, self.get_file),
            ("DELETE", "/v1/files/{file_id}", files, self.delete_file),
            ("GET", "/v1/files/{file_id}/content", files, self.file_content),
            ("POST", "/v1/batches", batches, self.create_openai),
            ("GET", "/v1/batches", batches, self.list_openai),
            ("GET", "/v1/batches/{batch_id}", batches, self.get_openai),
            ("POST", "/v1/batches/{batch_id}/cancel", batches, self.cancel_openai),
            ("POST", "/v1/messages/batches", messages, self.create_anthropic),
            ("GET", "/v1/messages/batches", messages, self.list_anthropic),
            ("GET", "/v1/messages/batches/{batch_id}", messages, self.get_anthropic),
            ("POST", "/v1/messages/batches/{batch_id}/cancel", messages, self.cancel_anthropic),
            ("GET", "/v1/messages/batches/{batch_id}/results", messages, self.anthropic_results),
            ("DELETE", "/v1/messages/batches/{batch_id}", messages, self.delete_anthropic),
        ]
        for method, path, (api, family), handler in routes:
            router.add_route(method, path, self._guard(api, family, handler))
        router.add_get("/_sim/batches", self.sim_batches)

    # ------------------------------------------------------------------ shared
    def _batch(self, request: web.Request, api: ApiName) -> Batch:
        """The batch named in the path, brought up to date; 404 if this API has none by that id."""
        batch_id = request.match_info["batch_id"]
        batch = self.host.batches.batches.get(batch_id)
        if batch is None or batch.api != api:
            message = (
                f"No batch found with id '{batch_id}'."
                if api == "openai"
                else f"No message batch found with id '{batch_id}'."
            )
            raise BatchError(404, message)
        advance(self.host, batch, time.time())
        return batch

    def _settle_all(self) -> None:
        """Bring every batch up to date (so finished batches have their files)."""
        now = time.time()
        for batch in self.host.batches.batches.values():
            advance(self.host, batch, now)

    def _file(self, request: web.Request) -> StoredFile:
        """The file named in the path; 404 if there is none."""
        file_id = request.match_info["file_id"]
        self._settle_all()
        stored = self.host.batches.files.get(file_id)
        if stored is None:
            raise BatchError(404, f"No such File object: {file_id}", param="id")
        return stored

    @staticmethod
    async def _json_body(request: web.Request) -> Any:
        """The request's JSON body, or BatchError (400)."""
        try:
            return json.loads(await request.read())
        except ValueError:
            raise BatchError(400, "Could not parse the JSON body of your request.") from None

    @staticmethod
    def _limit(request: web.Request, default: int, maximum: int) -> int:
        """The ``limit`` query parameter, between 1 and ``maximum``; 400 otherwise."""
        raw = request.query.get("limit")
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if not 1 <= value <= maximum:
            raise BatchError(400, f"limit: must be an integer between 1 and {maximum}.", param="limit")
        return value

    def _newest_first(self, api: ApiName) -> list[Batch]:
        """This API's batches, brought up to date, newest first."""
        now = time.time()
        found = [batch for batch in self.host.batches.batches.values() if batch.api == api]
        for batch in found:
            advance(self.host, batch, now)
        return found[::-1]

    # ------------------------------------------------------------------ OpenAI files
    async def upload_file(self, request: web.Request) -> web.Response:
        """``POST /v1/files`` (multipart ``file`` and ``purpose``)."""
        settings = self.host.settings
        try:
            reader = await request.multipart()
        except (AssertionError, ValueError, KeyError):
            raise BatchError(400, "The request must be multipart/form-data.") from None
        purpose: str | None = None
        filename: str | None = None
        data: bytes | None = None
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "purpose":
                purpose = (await part.read()).decode(errors="replace").strip()
            elif part.name == "file":
                filename = part.filename or "upload"
                data = bytes(await part.read())
        if data is None or filename is None:
            raise BatchError(400, "Missing required parameter: 'file'.", param="file")
        if purpose is None:
            raise BatchError(400, "Missing required parameter: 'purpose'.", param="purpose")
        if purpose not in FILE_PURPOSES:
            raise BatchError(400, f"'{purpose}' is not one of {sorted(FILE_PURPOSES)} - 'purpose'", param="purpose")
        if purpose == "batch":
            if not filename.endswith(".jsonl"):
                raise BatchError(400, "Invalid file format for Batch API. Must be .jsonl", param="file")
            max_bytes = settings.batch_max_bytes or OPENAI_MAX_BYTES
            if len(data) > max_bytes:
                message = f"File is too large: {len(data)} bytes; batch input files can be at most {max_bytes} bytes."
                raise BatchError(400, message, param="file")
        stored = _store_file(self.host, filename, purpose, data)
        self.host.stats.batches.openai_files_uploaded += 1
        return web.json_response(render_file(stored))

    async def list_files(self, request: web.Request) -> web.Response:
        """``GET /v1/files?purpose=&limit=&after=&order=`` (newest first by default)."""
        self._settle_all()
        limit = self._limit(request, 10_000, 10_000)
        purpose = request.query.get("purpose")
        files = [f for f in self.host.batches.files.values() if purpose is None or f.purpose == purpose]
        if request.query.get("order", "desc") == "desc":
            files.reverse()
        return web.json_response(_cursor_page([render_file(f) for f in files], request.query.get("after"), limit))

    async def get_file(self, request: web.Request) -> web.Response:
        """``GET /v1/files/{file_id}``."""
        return web.json_response(render_file(self._file(request)))

    async def delete_file(self, request: web.Request) -> web.Response:
        """``DELETE /v1/files/{file_id}``."""
        stored = self._file(request)
        del self.host.batches.files[stored.id]
        return web.json_response({"id": stored.id, "object": "file", "deleted": True})

    async def file_content(self, request: web.Request) -> web.Response:
        """``GET /v1/files/{file_id}/content``: the raw bytes."""
        stored = self._file(request)
        return web.Response(body=stored.data, content_type="application/octet-stream")

    # ------------------------------------------------------------------ OpenAI batches
    async def create_openai(self, request: web.Request) -> web.Response:
        """``POST /v1/batches``: parameters are checked now (400), the input file's lines afterwards."""
        body = await self._json_body(request)
        if not isinstance(body, dict):
            raise BatchError(400, "Request body must be a JSON object.")
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(body.get(name), str):
                raise BatchError(400, f"Missing required parameter: '{name}'.", param=name)
        endpoint, window = body["endpoint"], body["completion_window"]
        if endpoint not in OPENAI_BATCH_ENDPOINTS:
            raise BatchError(
                400,
                f"Invalid value: {endpoint!r}. Supported values are: {sorted(OPENAI_BATCH_ENDPOINTS)}.",
                param="endpoint",
            )
        if endpoint != CHAT_ENDPOINT:
            raise BatchError(400, f"The simulator runs only {CHAT_ENDPOINT} batches, not {endpoint}.", param="endpoint")
        if window != "24h":
            raise BatchError(
                400, f"Invalid value: {window!r}. Supported values are: ['24h'].", param="completion_window"
            )
        metadata = _check_metadata(body.get("metadata"))
        stored = self.host.batches.files.get(body["input_file_id"])
        if stored is None:
            raise BatchError(400, f"No such File object: {body['input_file_id']}", param="input_file_id")
        if stored.purpose != "batch":
            raise BatchError(
                400, f"The input file must have purpose 'batch', not {stored.purpose!r}.", param="input_file_id"
            )
        max_requests = self.host.settings.batch_max_requests or OPENAI_MAX_REQUESTS
        requests, errors = validate_openai_file(stored.data, endpoint, max_requests)
        batch = new_batch(
            self.host,
            "openai",
            [] if errors else requests,
            endpoint=endpoint,
            input_file_id=stored.id,
            completion_window=window,
            metadata=metadata,
            model=None if errors else requests[0][1]["model"],
            validation_errors=errors or None,
        )
        return web.json_response(render_openai(batch, status="validating"))

    async def get_openai(self, request: web.Request) -> web.Response:
        """``GET /v1/batches/{batch_id}``."""
        return web.json_response(render_openai(self._batch(request, "openai")))

    async def cancel_openai(self, request: web.Request) -> web.Response:
        """``POST /v1/batches/{batch_id}/cancel``: answers ``cancelling``; it is ``cancelled`` after."""
        batch = self._batch(request, "openai")
        cancel(self.host, batch, time.time())
        return web.json_response(render_openai(batch, status="cancelling"))

    async def list_openai(self, request: web.Request) -> web.Response:
        """``GET /v1/batches?limit=&after=`` (newest first)."""
        limit = self._limit(request, 20, 100)
        data = [render_openai(batch) for batch in self._newest_first("openai")]
        return web.json_response(_cursor_page(data, request.query.get("after"), limit))

    # ------------------------------------------------------------------ Anthropic
    def _base_url(self, request: web.Request) -> str:
        """``scheme://host:port`` the client used (for ``results_url``)."""
        return str(request.url.origin())

    async def create_anthropic(self, request: web.Request) -> web.Response:
        """``POST /v1/messages/batches`` with ``{requests: [{custom_id, params}]}``."""
        settings = self.host.settings
        raw = await request.read()
        max_bytes = settings.batch_max_bytes or ANTHROPIC_MAX_BYTES
        if len(raw) > max_bytes:
            raise BatchError(413, f"Request exceeds the maximum allowed number of bytes ({max_bytes}).")
        try:
            body = json.loads(raw)
        except ValueError:
            raise BatchError(400, "Could not parse the JSON body of your request.") from None
        requests = _check_anthropic_requests(body, settings.batch_max_requests or ANTHROPIC_MAX_REQUESTS)
        batch = new_batch(self.host, "anthropic", requests)
        return web.json_response(render_anthropic(batch, self._base_url(request)))

    async def get_anthropic(self, request: web.Request) -> web.Response:
        """``GET /v1/messages/batches/{batch_id}``."""
        return web.json_response(render_anthropic(self._batch(request, "anthropic"), self._base_url(request)))

    async def cancel_anthropic(self, request: web.Request) -> web.Response:
        """``POST /v1/messages/batches/{batch_id}/cancel``: answers ``canceling``; ``ended`` after."""
        batch = self._batch(request, "anthropic")
        cancel(self.host, batch, time.time())
        return web.json_response(render_anthropic(batch, self._base_url(request), canceling=True))

    async def list_anthropic(self, request: web.Request) -> web.Response:
        """``GET /v1/messages/batches?limit=&after_id=&before_id=`` (newest first)."""
        limit = self._limit(request, 20, 1000)
        after_id, before_id = request.query.get("after_id"), request.query.get("before_id")
        if after_id and before_id:
            raise BatchError(400, "after_id and before_id cannot both be given.")
        base = self._base_url(request)
        data = [render_anthropic(batch, base) for batch in self._newest_first("anthropic")]
        if before_id:
            ids = [item["id"] for item in data]
            end = ids.index(before_id) if before_id in ids else 0
            start = max(0, end - limit)
            page, has_more = data[start:end], start > 0
        else:
            cursor = _cursor_page(data, after_id, limit)
            page, has_more = cursor["data"], cursor["has_more"]
        return web.json_response(
            {
                "data": page,
                "has_more": has_more,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            }
        )

    async def anthropic_results(self, request: web.Request) -> web.Response:
        """``GET /v1/messages/batches/{batch_id}/results``: JSONL, once the batch has ended."""
        batch = self._batch(request, "anthropic")
        if batch.ended_at is None:
            raise BatchError(400, f"Message batch {batch.id} has not ended yet; its results are not available.")
        body = _jsonl(_anthropic_result_line(item) for item in batch.items)
        return web.Response(body=body, content_type="application/binary")

    async def delete_anthropic(self, request: web.Request) -> web.Response:
        """``DELETE /v1/messages/batches/{batch_id}`` (an ended batch only; cancel it first)."""
        batch = self._batch(request, "anthropic")
        if batch.ended_at is None:
            raise BatchError(400, f"Message batch {batch.id} is still in progress; cancel it before deleting it.")
        del self.host.batches.batches[batch.id]
        return web.json_response({"id": batch.id, "type": "message_batch_deleted"})

    # ------------------------------------------------------------------ control
    async def sim_batches(self, request: web.Request) -> web.Response:
        """``GET /_sim/batches``: :func:`summaries` of every batch."""
        return web.json_response(summaries(self.host))


def _cursor_page(data: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    """OpenAI's list page: the ``limit`` items after the item ``after`` (from the start without)."""
    start = 0
    if after:
        ids = [item["id"] for item in data]
        start = ids.index(after) + 1 if after in ids else len(data)
    page = data[start : start + limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": start + limit < len(data),
    }
