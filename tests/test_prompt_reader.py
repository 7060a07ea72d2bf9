"""Tests for the prompt reader: JSONL/CSV records, templates, ids, and problems as ``file:line: field: message``."""

from __future__ import annotations

import itertools
import json
import re
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

import prompts.reader as prompt_reader
from common.errors import InputError, InputProblem
from prompts.config import PromptsConfig
from prompts.reader import (
    PromptRecord,
    content_id,
    iter_prompts,
    iter_records,
    load_template,
    scan_prompts,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in ``tmp_path`` so that problems name files exactly as written (``p.jsonl:3: ...``)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_jsonl(path: Path, *records: object) -> str:
    """One line per record: dicts/lists are JSON-encoded, strings are written as they are."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path.name


def read(name: str, **kwargs) -> list[PromptRecord]:
    return list(iter_prompts(PromptsConfig(path=name, **kwargs)))


def problems(name: str, **kwargs) -> list[str]:
    return [str(p) for p in scan_prompts(PromptsConfig(path=name, **kwargs)).problems]


# --- JSONL records --------------------------------------------------------------------------------


def test_jsonl_prompt(workdir: Path) -> None:
    name = write_jsonl(workdir / "p.jsonl", {"id": "a", "prompt": "Hello?"}, {"id": "b", "prompt": "Bye."})
    records = read(name)
    assert [r.id for r in records] == ["a", "b"]
    assert records[0].messages == [{"role": "user", "content": "Hello?"}]
    assert records[0].prompt_text == "Hello?"
    assert records[0].system is None
    assert records[0].metadata == {}
    assert records[0].context_sources == {}
    assert [r.line for r in records] == [1, 2]
    report = scan_prompts(PromptsConfig(path=name))
    assert report.valid == 2 and report.problems == []


def test_jsonl_messages_history(workdir: Path) -> None:
    messages = [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4.", "source_id": "gpt-4o"},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6."},
        {"role": "user", "content": "Thanks. 4+4?"},
    ]
    name = write_jsonl(workdir / "p.jsonl", {"id": "conv", "messages": messages})
    [record] = read(name)
    assert record.messages == [{"role": m["role"], "content": m["content"]} for m in messages]
    assert record.context_sources == {1: "gpt-4o"}
    assert record.prompt_text == "Thanks. 4+4?"
    assert "source_id" not in record.metadata


def test_jsonl_system(workdir: Path) -> None:
    name = write_jsonl(workdir / "p.jsonl", {"prompt": "hi", "system": "Be terse."}, {"prompt": "hi"})
    with_system, without = read(name)
    assert with_system.system == "Be terse."
    assert with_system.messages == [{"role": "user", "content": "hi"}]
    assert without.system is None
    assert with_system.id != without.id  # the system prompt is part of what is sent, hence of the id


def test_jsonl_metadata_and_extra_keys(workdir: Path) -> None:
    name = write_jsonl(
        workdir / "p.jsonl",
        {"id": 1, "prompt": "x", "metadata": {"topic": "math", "level": 2}, "dataset": "helpful", "level": 9},
    )
    [record] = read(name)
    assert record.metadata == {"topic": "math", "level": 2, "dataset": "helpful"}  # explicit metadata wins


def test_jsonl_given_ids_kept_ints_become_strings(workdir: Path) -> None:
    name = write_jsonl(
        workdir / "p.jsonl", {"id": 7, "prompt": "a"}, {"id": "x-1", "prompt": "b"}, {"id": 0, "prompt": "c"}
    )
    assert [r.id for r in read(name)] == ["7", "x-1", "0"]


def test_ids_int_and_string_collide(workdir: Path) -> None:
    name = write_jsonl(workdir / "p.jsonl", {"id": 7, "prompt": "a"}, {"id": "7", "prompt": "b"})
    assert problems(name) == ["p.jsonl:2: id: duplicate id '7'"]


def test_content_id_without_id(workdir: Path) -> None:
    name = write_jsonl(workdir / "p.jsonl", {"prompt": "Same text"}, {"prompt": "Other text"})
    first = read(name)
    second = read(name)
    assert [r.id for r in first] == [r.id for r in second]
    assert first[0].id != first[1].id
    assert re.fullmatch(r"p_[0-9a-f]{16}", first[0].id)
    assert first[0].id == content_id([{"role": "user", "content": "Same text"}], None)
    # The id depends only on what is sent, not on the file or the line.
    other = write_jsonl(workdir / "q.jsonl", {"prompt": "Other text", "dataset": "d"})
    assert read(other)[0].id == first[1].id


def test_bad_id_type(workdir: Path) -> None:
    name = write_jsonl(
        workdir / "p.jsonl", {"id": 1.5, "prompt": "a"}, {"id": "", "prompt": "b"}, {"id": [1], "prompt": "c"}
    )
    assert problems(name) == [
        "p.jsonl:1: id: must be a non-empty string or an integer",
        "p.jsonl:2: id: must be a non-empty string or an integer",
        "p.jsonl:3: id: must be a non-empty string or an integer",
    ]


def test_utf8_bom_is_ignored(workdir: Path) -> None:
    (workdir / "p.jsonl").write_bytes(b'\xef\xbb\xbf{"id": "a", "prompt": "hi"}\n')
    assert [r.id for r in read("p.jsonl")] == ["a"]
    (workdir / "p.csv").write_bytes("\ufeffid,prompt\r\n1,hi\r\n".encode())
    [record] = read("p.csv")
    assert record.id == "1" and record.metadata == {}


def test_example_prompt_files_are_clean() -> None:
    for name, count in (("alpaca_sample.jsonl", 50), ("alpaca_eval.jsonl", 805)):
        report = scan_prompts(PromptsConfig(path=str(REPO / "prompts" / "examples" / name)))
        assert report.problems == []
        assert report.valid == count
    first = next(iter_prompts(PromptsConfig(path=str(REPO / "prompts/examples/alpaca_sample.jsonl"))))
    assert first.id == "alpaca-000"
    assert first.metadata == {"dataset": "helpful_base"}


# --- CSV -------------------------------------------------------------------------------------------


def test_csv_id_prompt_and_extra_columns(workdir: Path) -> None:
    (workdir / "p.csv").write_text("id,prompt,category,notes\n1,What is 2+2?,math,\n2,Name a colour,art,easy\n")
    records = read("p.csv")
    assert [r.id for r in records] == ["1", "2"]
    assert records[0].messages == [{"role": "user", "content": "What is 2+2?"}]
    assert records[0].metadata == {"category": "math"}  # empty cells are left out
    assert records[1].metadata == {"category": "art", "notes": "easy"}
    assert [r.line for r in records] == [2, 3]


def test_csv_quoted_multiline_fields(workdir: Path) -> None:
    (workdir / "p.csv").write_text(
        'id,prompt\na,"First line,\nsecond line\nwith ""quotes"""\nb,plain\nc,\nd,"also\nmulti"\n'
    )
    records = read("p.csv")
    assert [r.id for r in records] == ["a", "b", "d"]
    assert records[0].prompt_text == 'First line,\nsecond line\nwith "quotes"'
    assert records[2].prompt_text == "also\nmulti"
    assert [r.line for r in records] == [2, 5, 7]  # a record's line is its first line
    assert problems("p.csv") == ["p.csv:6: prompt: empty prompt"]


def test_csv_messages_and_metadata_columns(workdir: Path) -> None:
    messages = json.dumps(
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    )
    (workdir / "p.csv").write_text(
        f'id,messages,metadata\n1,"{messages.replace(chr(34), chr(34) * 2)}","{{""k"": 1}}"\n2,not json,\n'
    )
    records = read("p.csv")
    assert [r.id for r in records] == ["1"]
    assert records[0].prompt_text == "c" and records[0].metadata == {"k": 1}
    assert problems("p.csv") == ["p.csv:3: messages: invalid JSON in column: Expecting value"]


def test_csv_without_prompt_column(workdir: Path) -> None:
    (workdir / "p.csv").write_text("id,question\n1,hi\n")
    assert problems("p.csv") == ["p.csv:1: CSV needs a 'prompt' column (or a template using its columns)"]


def test_csv_row_with_too_many_fields(workdir: Path) -> None:
    (workdir / "p.csv").write_text("id,prompt\n1,ok\n2,a,b\n")
    assert problems("p.csv") == ["p.csv:3: more fields than the header has columns"]


def test_format_forced(workdir: Path) -> None:
    (workdir / "p.txt").write_text("id,prompt\n1,hello\n")
    assert [r.prompt_text for r in read("p.txt", format="csv")] == ["hello"]
    assert problems("p.txt") == [
        "p.txt:1: invalid JSON: Expecting value (column 1)",
        "p.txt:2: invalid JSON: Extra data (column 2)",
    ]


# --- templates ---------------------------------------------------------------------------------------


def test_template_by_path_renders_csv_columns(workdir: Path) -> None:
    (workdir / "qa.j2").write_text("Context: {{ context }}\nQuestion: {{ question }}\n")
    (workdir / "p.csv").write_text('id,question,context\n1,Who?,"Alice met Bob."\n')
    [record] = read("p.csv", template="qa.j2")
    assert record.messages == [{"role": "user", "content": "Context: Alice met Bob.\nQuestion: Who?"}]
    assert record.metadata == {"question": "Who?", "context": "Alice met Bob."}
    # Absolute paths work too.
    assert read("p.csv", template=str(workdir / "qa.j2"))[0].prompt_text == record.prompt_text


def test_template_by_packaged_name(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packaged = workdir / "packaged"
    packaged.mkdir()
    (packaged / "summarise.j2").write_text("Summarise: {{ prompt | upper }}")
    monkeypatch.setattr(prompt_reader, "PACKAGED_TEMPLATES", packaged)
    name = write_jsonl(workdir / "p.jsonl", {"id": "a", "prompt": "text", "self": "a field named self"})
    for template in ("summarise", "summarise.j2"):
        [record] = read(name, template=template)
        assert record.prompt_text == "Summarise: TEXT"
    assert load_template("summarise") is not None
    assert load_template(None) is None


def test_template_replaces_last_message_of_history(workdir: Path) -> None:
    (workdir / "t.j2").write_text("[{{ topic }}] {{ messages[-1].content }}")
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    name = write_jsonl(workdir / "p.jsonl", {"id": 1, "topic": "x", "messages": messages})
    [record] = read(name, template="t.j2")
    assert record.messages[:2] == messages[:2]
    assert record.prompt_text == "[x] c"


def test_template_missing_field(workdir: Path) -> None:
    (workdir / "qa.j2").write_text("{{ question }} / {{ context }}")
    (workdir / "p.csv").write_text("id,question,context\n1,Who?,ctx\n2,Why?\n")
    assert problems("p.csv", template="qa.j2") == [
        "p.csv:3: template: template uses a field this record does not have ('context' is undefined)"
    ]


def test_template_syntax_error(workdir: Path) -> None:
    (workdir / "bad.j2").write_text("line one\n{{ question \n")
    name = write_jsonl(workdir / "p.jsonl", {"question": "q"})
    report = scan_prompts(PromptsConfig(path=name, template="bad.j2"))
    assert report.valid == 0
    assert [str(p) for p in report.problems] == [
        "bad.j2:2: template syntax error: unexpected end of template, expected 'end of print statement'."
    ]
    with pytest.raises(InputError) as info:
        load_template("bad.j2")
    assert info.value.problems[0].line == 2


def test_template_not_found(workdir: Path) -> None:
    name = write_jsonl(workdir / "p.jsonl", {"prompt": "q"})
    assert problems(name, template="nope") == [
        f"nope: prompt template not found (looked in {workdir}: relative paths in a config start at the config "
        "file's directory; and in prompts/templates/)"
    ]


# --- problems -----------------------------------------------------------------------------------------


def test_broken_json_and_non_object_lines(workdir: Path) -> None:
    name = write_jsonl(
        workdir / "p.jsonl",
        {"id": 1, "prompt": "ok"},
        '{"id": 2, "prompt": "unterminated"',
        '["an", "array"]',
        '"just a string"',
        "null",
        {"id": 3, "prompt": "fine"},
    )
    report = scan_prompts(PromptsConfig(path=name))
    assert report.valid == 2
    assert [str(p) for p in report.problems] == [
        "p.jsonl:2: invalid JSON: Expecting ',' delimiter (column 35)",  # just past the 34 characters
        "p.jsonl:3: each line must be a JSON object",
        "p.jsonl:4: each line must be a JSON object",
        "p.jsonl:5: each line must be a JSON object",
    ]
    assert report.problems[1] == InputProblem("p.jsonl", 3, "each line must be a JSON object")


def test_missing_empty_and_non_string_prompt(workdir: Path) -> None:
    name = write_jsonl(
        workdir / "p.jsonl",
        {"id": "a", "text": "no prompt key"},
        {"id": "b", "prompt": ""},
        {"id": "c", "prompt": "  \n\t "},
        {"id": "d", "prompt": 42},
        {"id": "e", "prompt": None},
    )
    assert problems(name) == [
        "p.jsonl:1: prompt: missing: give 'prompt' or 'messages'",
        "p.jsonl:2: prompt: empty prompt",
        "p.jsonl:3: prompt: empty prompt",
        "p.jsonl:4: prompt: must be a string",
        "p.jsonl:5: prompt: must be a string",
    ]


def test_bad_system_and_metadata(workdir: Path) -> None:
    name = write_jsonl(workdir / "p.jsonl", {"prompt": "a", "system": 1}, {"prompt": "b", "metadata": [1]})
    assert problems(name) == ["p.jsonl:1: system: must be a string", "p.jsonl:2: metadata: must be an object"]


def test_duplicate_ids_reported_at_second_occurrence(workdir: Path) -> None:
    name = write_jsonl(
        workdir / "p.jsonl",
        {"id": "a", "prompt": "one"},
        {"id": "b", "prompt": "two"},
        {"id": "c", "prompt": "three"},
        {"id": "a", "prompt": "four"},
        {"prompt": "same"},
        {"prompt": "same"},
    )
    report = scan_prompts(PromptsConfig(path=name))
    dup = content_id([{"role": "user", "content": "same"}], None)
    assert [str(p) for p in report.problems] == [
        "p.jsonl:4: id: duplicate id 'a'",
        f"p.jsonl:6: id: duplicate id '{dup}'",
    ]
    assert report.valid == 4
    assert [r.prompt_text for r in read(name)] == ["one", "two", "three", "same"]  # the first occurrence is kept


def test_invalid_utf8_line(workdir: Path) -> None:
    bad = b'{"id": 3, "prompt": "caf\xe9"}\n'
    assert bad.index(b"\xe9") == 24  # a 0-based offset
    (workdir / "p.jsonl").write_bytes(
        b'{"id": 1, "prompt": "ok"}\n{"id": 2, "prompt": "ok"}\n' + bad + b'{"id": 4, "prompt": "ok"}\n'
    )
    report = scan_prompts(PromptsConfig(path="p.jsonl"))
    assert [str(p) for p in report.problems] == ["p.jsonl:3: not valid UTF-8 (byte 24 of the line)"]
    assert report.valid == 3


def test_invalid_utf8_line_in_csv(workdir: Path) -> None:
    (workdir / "p.csv").write_bytes(b"id,prompt\n1,ok\n2,caf\xe9\n3,ok\n")
    report = scan_prompts(PromptsConfig(path="p.csv"))
    assert [str(p) for p in report.problems] == ["p.csv:3: not valid UTF-8 (byte 5 of the line)"]
    assert [r.id for r in read("p.csv")] == ["1", "3"]


def test_prompt_over_max_chars(workdir: Path) -> None:
    name = write_jsonl(
        workdir / "p.jsonl",
        {"id": 1, "prompt": "x" * 10},
        {"id": 2, "prompt": "x" * 11},
        {"id": 3, "prompt": "x" * 6, "system": "y" * 5},
        {
            "id": 4,
            "messages": [
                {"role": "user", "content": "aaaa"},
                {"role": "assistant", "content": "bbbb"},
                {"role": "user", "content": "ccc"},
            ],
        },
    )
    assert problems(name, max_prompt_chars=10) == [
        "p.jsonl:2: prompt is 11 characters, over the limit of 10 (prompts.max_prompt_chars)",
        "p.jsonl:3: prompt is 11 characters, over the limit of 10 (prompts.max_prompt_chars)",
        "p.jsonl:4: prompt is 11 characters, over the limit of 10 (prompts.max_prompt_chars)",
    ]


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            "messages: must end with a user message",
        ),
        (
            [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}],
            "messages: [0].role must be 'user' or 'assistant' (use the record's 'system' field for a system prompt)",
        ),
        (
            [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
            "messages: [1] must be an assistant message: turns alternate, starting with the user",
        ),
        (
            [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}],
            "messages: [0] must be a user message: turns alternate, starting with the user",
        ),
        ([], "messages: must be a non-empty list of {role, content} objects"),
        ("hello", "messages: must be a non-empty list of {role, content} objects"),
        ([{"role": "user", "content": 5}], "messages: [0].content must be a string or a list of text and image parts"),
        (["hi"], "messages: [0] must be an object"),
        ([{"role": "user", "content": " "}], "messages: empty prompt"),
    ],
)
def test_bad_messages(workdir: Path, messages: object, expected: str) -> None:
    name = write_jsonl(workdir / "p.jsonl", {"id": "ok", "prompt": "fine"}, {"id": "bad", "messages": messages})
    assert problems(name) == [f"p.jsonl:2: {expected}"]


def test_prompt_file_not_found(workdir: Path) -> None:
    report = scan_prompts(PromptsConfig(path="missing.jsonl"))
    assert [str(p) for p in report.problems] == [
        f"missing.jsonl: prompt file not found (looked in {workdir}: relative paths in a config start at the config "
        "file's directory)"
    ]
    assert list(iter_prompts(PromptsConfig(path="missing.jsonl"))) == []


@pytest.mark.parametrize("content", ["", "\n\n  \n", "id,prompt\n"])
def test_empty_file_holds_no_prompts(workdir: Path, content: str) -> None:
    name = "p.csv" if content.startswith("id") else "p.jsonl"
    (workdir / name).write_text(content)
    assert problems(name) == [f"{name}: the prompt file holds no prompts"]


def test_all_invalid_is_not_reported_as_empty(workdir: Path) -> None:
    name = write_jsonl(workdir / "p.jsonl", "[]")
    assert problems(name) == ["p.jsonl:1: each line must be a JSON object"]


def test_blank_lines_keep_line_numbers(workdir: Path) -> None:
    (workdir / "p.jsonl").write_text(
        '\n{"id": "a", "prompt": "one"}\n\n   \n\t\n{"id": "b", "prompt": "two"}\r\n\n{"id": "c"}\n{"id": "d", "prompt": "x"}'
    )
    records = read("p.jsonl")
    assert [(r.id, r.line) for r in records] == [("a", 2), ("b", 6), ("d", 9)]
    assert problems("p.jsonl") == ["p.jsonl:8: prompt: missing: give 'prompt' or 'messages'"]


def test_blank_lines_in_csv_keep_line_numbers(workdir: Path) -> None:
    (workdir / "p.csv").write_text("id,prompt\n\n1,one\n\n\n2,\n3,three\n")
    assert [(r.id, r.line) for r in read("p.csv")] == [("1", 3), ("3", 7)]
    assert problems("p.csv") == ["p.csv:6: prompt: empty prompt"]


def test_iter_records_yields_records_and_problems_in_order(workdir: Path) -> None:
    name = write_jsonl(workdir / "p.jsonl", {"id": 1, "prompt": "a"}, "oops", {"id": 2, "prompt": "b"})
    items = list(iter_records(PromptsConfig(path=name)))
    assert [type(i).__name__ for i in items] == ["PromptRecord", "InputProblem", "PromptRecord"]
    assert items[1].line == 2


def test_many_problems_all_collected(workdir: Path) -> None:
    name = write_jsonl(workdir / "p.jsonl", *(["bad"] * 30), {"prompt": "ok"})
    report = scan_prompts(PromptsConfig(path=name))
    assert len(report.problems) == 30 and report.valid == 1
    rendered = str(InputError(report.problems)).splitlines()
    assert len(rendered) == 21
    assert rendered[-1] == "... and 10 more problem(s)"


# --- streaming ------------------------------------------------------------------------------------------

LINES = 200_000


def test_streaming_large_file(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    pad = "lorem ipsum dolor sit amet " * 4
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(f'{{"id": {i}, "prompt": "q{i} {pad}"}}\n' for i in range(LINES))
    size = path.stat().st_size
    assert size > 20_000_000
    config = PromptsConfig(path=str(path))

    # The first records come without reading the file: little memory, little time.
    tracemalloc.start()
    try:
        started = time.perf_counter()
        iterator = iter_prompts(config)
        first = list(itertools.islice(iterator, 3))
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    iterator.close()
    assert [r.id for r in first] == ["0", "1", "2"]
    assert peak < 1_000_000, f"taking 3 records allocated {peak} bytes (file is {size})"
    assert elapsed < 3.0  # the memory bound above is the strict check; this one allows for a loaded machine

    # A full pass keeps nothing per record but its id (the set that catches duplicates): count the
    # interpreter's live memory blocks as we go (tracemalloc over 200,000 records would take ~30 s).
    baseline = sys.getallocatedblocks()
    growth = count = 0
    last = None
    for count, record in enumerate(iter_prompts(config), start=1):
        if count % 5000 == 0:
            growth = max(growth, sys.getallocatedblocks() - baseline)
        last = record
    assert count == LINES
    assert last is not None and last.id == str(LINES - 1) and last.line == LINES
    assert growth < 1.1 * LINES, f"{growth} live blocks after {LINES} records: records are being kept"


def test_shipped_csv_example_renders_with_the_shipped_template() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    config = PromptsConfig(
        path=str(root / "prompts/examples/questions_with_context.csv"), template="question_with_context"
    )
    records = list(iter_prompts(config))
    assert [r.id for r in records] == ["ctx-001", "ctx-002", "ctx-003"]
    assert records[0].prompt_text.endswith("Question: When was the Eiffel Tower completed?")
    assert "completed in March 1889" in records[0].prompt_text
    # The template's input columns stay with the record, so annotators' tooling can show them.
    assert records[1].metadata["domain"] == "science" and records[1].metadata["question"].startswith(
        "What is the boiling"
    )


# --- text that is not valid Unicode; prompt and messages together -------------------------------------------


def test_lone_surrogates_are_bad_records(workdir: Path) -> None:
    name = write_jsonl(
        workdir / "p.jsonl",
        '{"id": "ok", "prompt": "fine \\ud83d\\ude00"}',  # a valid pair: one character
        '{"prompt": "a", "metadata": {"\\udfff": 1}}',
        '{"prompt": "b", "system": "x\\ud800"}',
    )
    found = scan_prompts(PromptsConfig(path=name))
    assert found.valid == 1 and read(name)[0].prompt_text == "fine \U0001f600"
    assert [str(p) for p in found.problems] == [
        "p.jsonl:2: metadata.\\udfff: not valid Unicode: the key holds a lone surrogate",
        "p.jsonl:3: system: not valid Unicode: lone surrogate U+D800 at character 2",
    ]
    for problem in found.problems:  # a problem can always be printed and written (rejected.jsonl)
        str(problem).encode("utf-8")


def test_prompt_and_messages_together(workdir: Path) -> None:
    messages = [{"role": "user", "content": "from messages"}]
    name = write_jsonl(workdir / "p.jsonl", {"id": 1, "prompt": "from prompt", "messages": messages})
    assert problems(name) == ["p.jsonl:1: prompt: give 'prompt' or 'messages', not both"]
    # With a template both are only the template's inputs: it says what is sent.
    (workdir / "t.j2").write_text("{{ prompt }} / {{ messages[0].content }}")
    assert read(name, template="t.j2")[0].prompt_text == "from prompt / from messages"
    # CSV: an empty prompt cell beside a messages cell is no prompt; both filled is the same error.
    cell = json.dumps(messages).replace('"', '""')
    (workdir / "p.csv").write_text(f'id,prompt,messages\n1,,"{cell}"\n2,hi,"{cell}"\n3,,\n')
    assert [r.prompt_text for r in read("p.csv")] == ["from messages"]
    assert problems("p.csv") == [
        "p.csv:3: prompt: give 'prompt' or 'messages', not both",
        "p.csv:4: prompt: empty prompt",
    ]
