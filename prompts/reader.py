"""Stream prompt records from JSONL or CSV, rendering an optional Jinja2 template.

Each record becomes a :class:`PromptRecord`: a stable id, the chat messages to send (ending in a user
message), an optional shared system prompt and the record's metadata. Problems are reported as
:class:`~common.errors.InputProblem` with file and line; nothing is held in memory beyond one record
(and the set of ids seen, to catch duplicates). A line longer than any record within ``max_prompt_chars``
(:func:`max_line_bytes`) is refused without being read whole, and so is JSON nested deeper than
``common.bounded_json.MAX_JSON_DEPTH``.

Templates run in Jinja2's sandbox (``ImmutableSandboxedEnvironment``): a template reaches the record's
fields, never Python's internals (``{{ cycler.__init__.__globals__ }}`` is refused, and runs nothing).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox

from common import bounded_json
from common.errors import InputError, InputProblem, lone_surrogates
from common.images import identity_view
from common.storage import StorageError
from common.yaml_locations import format_loc, resolve_path, where_searched
from prompts.config import PromptsConfig
from prompts.images import ImageProblem, image_base, image_ref

PACKAGED_TEMPLATES = Path(__file__).resolve().parent.parent / "prompts" / "templates"
KNOWN_FIELDS = {"id", "prompt", "messages", "system", "metadata", "images"}
JSON_COLUMNS = ("messages", "metadata")
ROLES = {"user", "assistant"}
# Bytes a line may take beyond 16 per character of max_prompt_chars (JSON's "\ud83d\ude00" escapes take 12 per
# character): room for the record's metadata. A longer line is refused, and never held in memory whole.
LINE_SLACK_BYTES = 1 << 20
_SKIP_CHUNK = 1 << 20


def max_line_bytes(max_prompt_chars: int) -> int:
    """The longest line (in bytes) of a prompt file whose prompts hold at most ``max_prompt_chars`` characters."""
    return 16 * max_prompt_chars + LINE_SLACK_BYTES


@dataclass(slots=True)
class PromptRecord:
    """One prompt, ready to send: ``messages`` alternate user/assistant and end with a user message."""

    id: str
    messages: list[dict[str, Any]]
    system: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    line: int = 0
    context_sources: dict[int, str] = field(default_factory=dict)

    @property
    def images(self) -> list[dict[str, Any]]:
        """The image references of the final user message (``prompts.images``), in order."""
        return list(self.messages[-1].get("images", []))

    @property
    def prompt_text(self) -> str:
        """The text of the final user message."""
        return str(self.messages[-1]["content"])


@dataclass(slots=True)
class ScanReport:
    """What a full pass over a prompt file found."""

    valid: int = 0
    problems: list[InputProblem] = field(default_factory=list)


def load_template(name: str | None, base_dir: Path | None = None) -> jinja2.Template | None:
    """A Jinja2 template by path (relative to ``base_dir``, the config file's directory; default: the
    working directory), or by name from the packaged ``prompts/templates`` (``.j2`` optional)."""
    if name is None:
        return None
    base_dir = base_dir if base_dir is not None else Path(".")
    # Packaged prompt templates are the .j2 files (the .yaml files beside them are annotation templates).
    candidates = [resolve_path(base_dir, name), PACKAGED_TEMPLATES / (name if name.endswith(".j2") else f"{name}.j2")]
    for candidate in candidates:
        if candidate.is_file():
            # The sandbox: templates come from prompt authors, who are not always the operator.
            env = jinja2.sandbox.ImmutableSandboxedEnvironment(
                undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
            )
            try:
                code = env.compile(candidate.read_text(encoding="utf-8"), filename=str(candidate))
            except jinja2.TemplateSyntaxError as exc:
                raise InputError(
                    [InputProblem(str(candidate), exc.lineno, f"template syntax error: {exc.message}")]
                ) from None
            return env.template_class.from_code(env, code, env.make_globals(None))
    if candidates[0].is_dir():
        raise InputError([InputProblem(str(candidates[0]), None, "prompt template is a directory, not a file")])
    raise InputError(
        [
            InputProblem(
                name, None, f"prompt template not found ({where_searched(base_dir, name)}; and in prompts/templates/)"
            )
        ]
    )


def iter_records(config: PromptsConfig) -> Iterator[PromptRecord | InputProblem]:
    """Every record of the file in order, or the problem that makes it unusable (named by the file's URL
    when it was read from one)."""
    if not config.is_url:
        yield from _records(config)
        return
    try:
        local = str(config.file)
    except StorageError as exc:
        yield InputProblem(config.path, None, str(exc))
        return
    for item in _records(config):
        yield replace(item, file=config.path) if isinstance(item, InputProblem) and item.file == local else item


def _records(config: PromptsConfig) -> Iterator[PromptRecord | InputProblem]:
    path = config.file
    if path.is_dir():
        yield InputProblem(
            str(path), None, "prompt file is a directory, not a file (give the path of a .jsonl or .csv)"
        )
        return
    if not path.is_file():
        yield InputProblem(str(path), None, f"prompt file not found ({where_searched(config.base_dir, config.path)})")
        return
    try:
        template = load_template(config.template, config.base_dir)
    except InputError as exc:
        yield from exc.problems
        return
    fmt = config.format if config.format != "auto" else ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    max_bytes = max_line_bytes(config.max_prompt_chars)
    raw = _iter_csv(path, template is not None, max_bytes) if fmt == "csv" else _iter_jsonl(path, max_bytes)
    seen: set[str] = set()
    images = _Images(image_base(config.path, path), config.max_image_bytes, config.image_detail)
    for line, item in raw:
        if isinstance(item, InputProblem):
            yield item
            continue
        result = _to_record(str(path), line, item, template, config.max_prompt_chars, images)
        if isinstance(result, PromptRecord):
            if result.id in seen:
                yield InputProblem(str(path), line, f"duplicate id '{result.id}'", "id")
                continue
            seen.add(result.id)
        yield result


def iter_prompts(config: PromptsConfig) -> Iterator[PromptRecord]:
    """The valid records only (call :func:`scan_prompts` first to refuse a file with problems)."""
    for item in iter_records(config):
        if isinstance(item, PromptRecord):
            yield item


def scan_prompts(config: PromptsConfig) -> ScanReport:
    """Read the whole file once and collect every problem (no record is kept)."""
    report = ScanReport()
    for item in iter_records(config):
        if isinstance(item, InputProblem):
            report.problems.append(item)
        else:
            report.valid += 1
    if report.valid == 0 and not report.problems:
        report.problems.append(InputProblem(config.name, None, "the prompt file holds no prompts"))
    return report


def _decoded_lines(path: Path, max_bytes: int) -> Iterator[tuple[int, str | InputProblem]]:
    """Each line decoded, or its problem; a line over ``max_bytes`` is skipped in chunks, never read whole."""
    with path.open("rb") as handle:
        number = 0
        while raw := handle.readline(max_bytes + 1):
            number += 1
            if len(raw) > max_bytes and not raw.endswith(b"\n"):
                del raw
                while (rest := handle.readline(_SKIP_CHUNK)) and not rest.endswith(b"\n"):
                    pass
                yield (
                    number,
                    InputProblem(
                        str(path),
                        number,
                        f"line longer than {max_bytes:,} bytes, more than a record within prompts.max_prompt_chars can "
                        "take: refused unread",
                    ),
                )
                continue
            try:
                # A byte-order mark (Excel's "CSV UTF-8") is not part of the first line's content.
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                yield number, InputProblem(str(path), number, f"not valid UTF-8 (byte {exc.start} of the line)")


def _iter_jsonl(path: Path, max_bytes: int) -> Iterator[tuple[int, dict[str, Any] | InputProblem]]:
    for number, text in _decoded_lines(path, max_bytes):
        if isinstance(text, InputProblem):
            yield number, text
            continue
        if not text.strip():
            continue
        try:
            obj = bounded_json.loads(text.rstrip("\r\n"))  # else an error at the end of the line reports column 1
        except json.JSONDecodeError as exc:
            yield number, InputProblem(str(path), number, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        except ValueError as exc:
            yield number, InputProblem(str(path), number, f"invalid JSON: {exc}")
            continue
        if not isinstance(obj, dict):
            yield number, InputProblem(str(path), number, "each line must be a JSON object")
            continue
        yield number, obj


def _iter_csv(path: Path, has_template: bool, max_bytes: int) -> Iterator[tuple[int, dict[str, Any] | InputProblem]]:
    problems: list[InputProblem] = []
    record_start: list[int | None] = [None]  # first line of the record being parsed (a row may span lines)
    record_chars = [0]  # characters of that record so far: a record (a quoted cell over many lines) is bounded
    # like a line; the csv module's own cell limit (131,072 characters by default, process-wide) is raised
    # to that bound, never lowered.
    csv.field_size_limit(max(csv.field_size_limit(), max_bytes))

    def text_lines() -> Iterator[str]:
        for number, text in _decoded_lines(path, max_bytes):
            if isinstance(text, InputProblem):
                problems.append(text)
                text = "\n"
            if record_start[0] is None:
                record_chars[0] = 0
                if text.strip("\r\n"):
                    record_start[0] = number
            record_chars[0] += len(text)
            if record_chars[0] > max_bytes:
                raise _RecordTooLong(record_start[0] or number)
            yield text

    def refused(line: int, message: str) -> Iterator[tuple[int, InputProblem]]:
        """The problems found so far, then ``message``: the rest of the file cannot be split into rows."""
        for problem in problems:
            yield problem.line or line, problem
        yield line, InputProblem(str(path), line, f"{message}: the rest of the file is not read")

    reader = csv.DictReader(text_lines())
    line = 1
    header_checked = False
    rows = iter(reader)
    while True:
        try:
            if not header_checked and reader.fieldnames is not None:
                record_start[0] = None  # the header's line is not the first record's start
            row = next(rows)
        except StopIteration:
            break
        except _RecordTooLong as exc:
            yield from refused(
                exc.line,
                f"a record longer than {max_bytes:,} characters (a quote left open?), more than one within "
                "prompts.max_prompt_chars can take",
            )
            return
        except csv.Error as exc:
            yield from refused(record_start[0] or reader.line_num, f"CSV: {exc}")
            return
        if not header_checked:
            header_checked = True
            columns = set(reader.fieldnames or [])
            # With a template, the template names the columns it needs and reports the missing ones.
            if "prompt" not in columns and "messages" not in columns and not has_template:
                yield 1, InputProblem(str(path), 1, "CSV needs a 'prompt' column (or a template using its columns)")
                return
        while problems:
            problem = problems.pop(0)
            yield problem.line or line, problem
        line = record_start[0] or reader.line_num
        record_start[0] = None
        if None in row:
            yield line, InputProblem(str(path), line, "more fields than the header has columns")
            continue
        # An empty prompt cell is kept (to report "empty prompt"), unless the row gives its messages instead.
        keep_empty = () if row.get("messages") else ("prompt",)
        record: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "") or k in keep_empty}
        bad_column: InputProblem | None = None
        cell = record.get("images")
        if isinstance(cell, str) and not cell.lstrip().startswith("["):
            record["images"] = [cell.strip()]  # one image; several are a JSON list
        for column in (*JSON_COLUMNS, "images"):  # columns that hold JSON, not text
            if column in record and isinstance(record[column], str):
                try:
                    record[column] = bounded_json.loads(record[column])
                except json.JSONDecodeError as exc:
                    bad_column = InputProblem(str(path), line, f"invalid JSON in column: {exc.msg}", column)
                    break
                except ValueError as exc:
                    bad_column = InputProblem(str(path), line, f"invalid JSON in column: {exc}", column)
                    break
        yield line, bad_column or record
    for problem in problems:
        yield problem.line or line, problem


class _RecordTooLong(Exception):
    """A CSV record over the bound of a line (``line``: where it starts)."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _to_record(
    file: str, line: int, obj: dict[str, Any], template: jinja2.Template | None, max_chars: int, images: _Images
) -> PromptRecord | InputProblem:
    def problem(message: str, field_name: str | None = None) -> InputProblem:
        return InputProblem(file, line, message, field_name)

    # Text that cannot be encoded as UTF-8 (a JSON "\ud800" escape) can be neither sent nor stored.
    surrogate = next(lone_surrogates(obj), None)
    if surrogate is not None:
        return problem(surrogate[1], format_loc(surrogate[0]))
    if template is None and "prompt" in obj and "messages" in obj:
        return problem("give 'prompt' or 'messages', not both", "prompt")

    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict):
        return problem("must be an object", "metadata")
    metadata = dict(metadata)
    for key, value in obj.items():
        if key not in KNOWN_FIELDS:
            metadata.setdefault(key, value)

    system = obj.get("system")
    if system is not None and not isinstance(system, str):
        return problem("must be a string", "system")

    messages: list[dict[str, Any]] = []
    context_sources: dict[int, str] = {}
    if "messages" in obj:
        checked = _check_messages(obj["messages"], images)
        if isinstance(checked, str):
            return problem(checked, "messages")
        messages, context_sources = checked
    extra_images: list[dict[str, Any]] = []
    if "images" in obj:
        specs = obj["images"]
        if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
            return problem("must be a list of image paths or URLs", "images")
        for index, spec in enumerate(specs):
            try:
                extra_images.append(images.ref(spec))
            except ImageProblem as exc:
                return problem(str(exc), f"images[{index}]")

    if template is not None:
        try:
            rendered = template.render(obj)  # not **obj: a field named 'self' would clash with render()
        except jinja2.exceptions.SecurityError as exc:
            return problem(
                f"{_template_line(exc, template)}refused by Jinja2's sandbox (a template reaches the record's "
                f"fields, not Python's internals): {exc.message}",
                "template",
            )
        except jinja2.UndefinedError as exc:
            return problem(f"template uses a field this record does not have ({exc.message})", "template")
        except jinja2.TemplateError as exc:
            return problem(f"template failed: {exc}", "template")
        surrogate = next(lone_surrogates(rendered), None)  # from a "\ud800" literal in the template itself
        if surrogate is not None:
            return problem(surrogate[1], "template")
        if messages:
            messages[-1] = {**messages[-1], "content": rendered}
        else:
            messages = [{"role": "user", "content": rendered}]
    elif not messages:
        if "prompt" not in obj:
            return problem("missing: give 'prompt' or 'messages'", "prompt")
        if not isinstance(obj["prompt"], str):
            return problem("must be a string", "prompt")
        messages = [{"role": "user", "content": obj["prompt"]}]

    if extra_images:
        messages[-1] = {**messages[-1], "images": [*messages[-1].get("images", []), *extra_images]}
    text = messages[-1]["content"]
    if not text.strip() and not messages[-1].get("images"):
        return problem("empty prompt", "messages" if "messages" in obj else "prompt")
    total = sum(len(m["content"]) for m in messages) + len(system or "")
    if total > max_chars:
        return problem(f"prompt is {total} characters, over the limit of {max_chars} (prompts.max_prompt_chars)")

    given_id = obj.get("id")
    if given_id is not None and not isinstance(given_id, (str, int)) or given_id == "":
        return problem("must be a non-empty string or an integer", "id")
    prompt_id = str(given_id) if given_id is not None else content_id(messages, system)
    return PromptRecord(
        id=prompt_id, messages=messages, system=system, metadata=metadata, line=line, context_sources=context_sources
    )


def _template_line(exc: BaseException, template: jinja2.Template) -> str:
    """``t.j2:3: `` where in ``template``'s file ``exc`` was raised (from its traceback), or nothing."""
    found = ""
    traceback = exc.__traceback__
    while traceback is not None:
        if template.filename and traceback.tb_frame.f_code.co_filename == template.filename:
            found = f"{template.filename}:{traceback.tb_lineno}: "
        traceback = traceback.tb_next
    return found


def _check_messages(value: Any, images: _Images) -> tuple[list[dict[str, Any]], dict[int, str]] | str:
    """The messages as ``{role, content}`` (and ``images`` where a user message has image parts) plus the
    given source_id of earlier assistant turns, or a problem."""
    if not isinstance(value, list) or not value:
        return "must be a non-empty list of {role, content} objects"
    out: list[dict[str, Any]] = []
    sources: dict[int, str] = {}
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            return f"[{index}] must be an object"
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            return f"[{index}].role must be 'user' or 'assistant' (use the record's 'system' field for a system prompt)"
        refs: list[dict[str, Any]] = []
        if isinstance(content, list) and role == "user":
            parts = _content_parts(content, index, images)
            if isinstance(parts, str):
                return parts
            content, refs = parts
        if not isinstance(content, str):
            return f"[{index}].content must be a string" + (
                " or a list of text and image parts" if role == "user" else ""
            )
        expected = "user" if index % 2 == 0 else "assistant"
        if role != expected:
            article = "an" if expected == "assistant" else "a"
            return f"[{index}] must be {article} {expected} message: turns alternate, starting with the user"
        out.append({"role": role, "content": content, "images": refs} if refs else {"role": role, "content": content})
        if role == "assistant" and isinstance(message.get("source_id"), str):
            sources[index] = message["source_id"]
    if out[-1]["role"] != "user":
        return "must end with a user message"
    return out, sources


def _content_parts(parts: list[Any], index: int, images: _Images) -> tuple[str, list[dict[str, Any]]] | str:
    """A user message's content parts as its text (text parts joined by a blank line) and its image
    references (in order), or a problem."""
    texts: list[str] = []
    refs: list[dict[str, Any]] = []
    for number, part in enumerate(parts):
        where = f"[{index}].content[{number}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image":
            given = [key for key in ("path", "url") if key in part]
            if len(given) != 1:
                return f"{where}: an image part gives one of 'path' or 'url'"
            try:
                refs.append(images.ref(part[given[0]]))
            except ImageProblem as exc:
                return f"{where}: {exc}"
        else:
            return f"{where} must be {{'type': 'text', 'text': ...}} or {{'type': 'image', 'path' | 'url': ...}}"
    return "\n\n".join(texts), refs


class _Images:
    """Image references of one prompt file: its base for relative paths, its limits; each image read once."""

    def __init__(self, base: str | Path, max_bytes: int, detail: str) -> None:
        self._base, self._max_bytes, self._detail = base, max_bytes, detail
        self._seen: dict[str, dict[str, Any]] = {}

    def ref(self, spec: Any) -> dict[str, Any]:
        """The reference of the image ``spec`` names (raises :class:`ImageProblem`)."""
        if not isinstance(spec, str):
            raise ImageProblem("an image must be a path or URL (a string)")
        found = self._seen.get(spec)
        if found is None:
            found = image_ref(spec, self._base, self._max_bytes, self._detail)
            if len(self._seen) < 4096:  # a bounded memo: a file naming one image many times reads it once
                self._seen[spec] = found
        return dict(found)


def content_id(messages: list[dict[str, Any]], system: str | None) -> str:
    """The id of a record that has none: a hash of exactly what would be sent (images by their content)."""
    canonical = json.dumps(
        {"messages": identity_view(messages), "system": system}, sort_keys=True, separators=(",", ":")
    )
    return "p_" + hashlib.sha256(canonical.encode()).hexdigest()[:16]
