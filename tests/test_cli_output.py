"""What the ``rlhf`` commands print for a person: clean ``--help`` pages, the cost once, errors that say what
to do, deliver and harvest summaries with the project's URL, and a documented exit code for a platform that
fails. Typer's ``CliRunner`` in this process (nothing here starts Prefect or a subprocess of ``rlhf``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import closed_port_url
from pydantic import SecretStr
from test_datasets import annotate, make_shell
from typer.testing import CliRunner

from flows.cli.app import EXIT_INPUT, EXIT_PLATFORM, app
from flows.delivery.reports import delivery_summary, harvest_summary
from platforms.label_studio.client import LabelStudioClient, LabelStudioError

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def invoke(*args: str, columns: int = 100) -> tuple[int, str]:
    """Exit code and output (stdout + stderr, colours stripped) of ``rlhf ARGS`` at a fixed width."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, ANSI.sub("", result.output)


# ------------------------------------------------------------------------------------------------ help


@pytest.mark.parametrize("command", [[], ["run"], ["plan"], ["validate"], ["deliver"], ["harvest"], ["status"]])
def test_help_names_arguments_in_capitals_and_shows_no_bool_after_a_flag(command: list[str]) -> None:
    code, text = invoke(*command, "--help")
    assert code == 0
    assert "<bool>" not in text
    assert not re.search(r"\{[a-z_]+\}", text.replace("{date}", ""))  # typer's `{config}` for an argument
    assert re.search(r"--help +Show this message and exit\.", text)  # nothing between a flag and its help


def test_run_help_lists_the_exit_codes_one_per_line_and_never_breaks_mid_sentence() -> None:
    _, text = invoke("run", "--help")
    assert re.search(r"Usage: \S+ run \[OPTIONS\] CONFIG *\n", text)  # the runner's program name is not rlhf
    lines = [line.strip() for line in text.splitlines()]
    for code, start in [
        ("0", "every call answered."),
        ("2", "bad input, or a store that is not readable (nothing called)."),
        ("3", "finished, but some calls failed"),
        ("5", "another run holds this batch (nothing called)."),
        ("128+N", "stopped by signal N (SIGINT: 130, SIGTERM: 143) after writing what was complete."),
    ]:
        assert any(line.startswith(f"• {code}: {start}") for line in lines), text
    # The docstring's own line breaks are not kept: a line that does not end a sentence is cut only near the
    # screen's width (the old page had lines of one word: "not", "answers", "writing").
    description = text[text.index("Exit codes:") : text.index("╭─ Arguments")].splitlines()
    unfinished = [line.strip() for line in description if line.strip() and not line.rstrip().endswith((".", ":"))]
    assert unfinished and all(len(line) > 70 for line in unfinished), unfinished


def test_placeholders_in_angle_brackets_survive_markdown_help() -> None:
    _, text = invoke("deliver", "--help", columns=140)
    assert "The run directory (<output.dir>/<batch>)." in text
    assert "Project title (default: '<project> / <batch>')." in text
    _, text = invoke("harvest", "--help", columns=140)
    assert "(default: <out>.rejects.jsonl)" in text


# ---------------------------------------------------------------------------------------- plan, validate


def _run_config(tmp_path: Path, prompt_lines: list[str]) -> Path:
    (tmp_path / "p.jsonl").write_text("".join(line + "\n" for line in prompt_lines), encoding="utf-8")
    config = tmp_path / "run.yaml"
    config.write_text(
        "project: x\nbatch: b\nprompts: {path: p.jsonl}\nproviders:\n"
        "  - {source_id: a, kind: openai, model: m, api_key_env: HOME}\n",
        encoding="utf-8",
    )
    return config


def test_plan_prints_the_estimated_cost_once(tmp_path: Path) -> None:
    config = _run_config(tmp_path, [json.dumps({"id": "q1", "prompt": "Hi?"})])
    code, text = invoke("plan", str(config))
    assert code == 0, text
    assert text.count("estimated cost") == 1, text
    assert "estimated cost: unknown (no price: a; give providers a price to count them)" in text


def test_broken_prompt_lines_say_how_to_run_the_valid_ones(tmp_path: Path) -> None:
    good = json.dumps({"id": "q1", "prompt": "Hi?"})
    config = _run_config(tmp_path, [good, '{"id": "q2", "prompt": ', json.dumps({"id": "q3"})])
    code, text = invoke("validate", str(config))
    assert code == EXIT_INPUT
    assert (
        f"2 prompt record(s) are invalid and 1 valid: fix them, or run the valid ones with `rlhf run {config} "
        "--skip-invalid` (the invalid records go to rejected.jsonl)" in text
    )
    # With no valid record, --skip-invalid would refuse too: it is not offered.
    config = _run_config(tmp_path, ['{"id": "q2", "prompt": '])
    code, text = invoke("validate", str(config))
    assert code == EXIT_INPUT and "--skip-invalid" not in text


# ------------------------------------------------------------------------------------- deliver, harvest

LS_REPORT: dict[str, Any] = {
    "platform": "label-studio",
    "url": "http://127.0.0.1:8080",
    "run_dir": "out/demo",
    "project_id": 3,
    "project_title": "demo / b",
    "project_url": "http://127.0.0.1:8080/projects/3/",
    "project_created": True,
    "tasks_in_run": 50,
    "already_delivered": 0,
    "imported": 50,
    "predictions": "all",
    "judge": None,
    "imported_with_predictions": 0,
    "not_delivered_no_answers": 1,
    "projects": [
        {
            "project_id": 3,
            "project_title": "demo / b",
            "project_url": "http://127.0.0.1:8080/projects/3/",
            "project_created": True,
            "answers": 3,
            "tasks": 49,
            "already_delivered": 0,
            "imported": 49,
        },
        {
            "project_id": 4,
            "project_title": "demo / b (2 answers)",
            "project_url": "http://127.0.0.1:8080/projects/4/",
            "project_created": False,
            "answers": 2,
            "tasks": 1,
            "already_delivered": 0,
            "imported": 1,
        },
    ],
}


def test_a_label_studio_delivery_is_summed_up_with_each_projects_url() -> None:
    assert delivery_summary(LS_REPORT).splitlines() == [
        "Delivered out/demo to Label Studio at http://127.0.0.1:8080: 50 tasks in the run, 50 imported now, "
        "0 already there.",
        "  http://127.0.0.1:8080/projects/3/  'demo / b' (created project 3, 3 answers per task): 49 imported, "
        "0 already there",
        "  http://127.0.0.1:8080/projects/4/  'demo / b (2 answers)' (existing project 4, 2 answers per task): "
        "1 imported, 0 already there",
        "  not delivered: 1 task without any answer",
        "Annotate there; then: rlhf harvest --from label-studio --url http://127.0.0.1:8080 --run-dir out/demo",
    ]


def test_a_label_studio_harvest_is_summed_up_and_mentions_judges_only_when_there_were_any() -> None:
    report = {
        "platform": "label-studio",
        "url": "http://127.0.0.1:8080",
        "project_ids": [3],
        "project_urls": ["http://127.0.0.1:8080/projects/3/"],
        "annotated": 6,
        "rejected": 2,
        "out": "annotated.jsonl",
        "rejects": "annotated.rejects.jsonl",
    }
    assert harvest_summary(report).splitlines() == [
        "Harvested from Label Studio at http://127.0.0.1:8080: http://127.0.0.1:8080/projects/3/",
        "  6 annotated tasks written to annotated.jsonl",
        "  2 rejected, each with its reason, in annotated.rejects.jsonl",
    ]
    with_judges = harvest_summary({**report, "predictions_shown": {"shown": 2, "blind": 3}})
    assert with_judges.splitlines()[-1] == "  judges' values: 2 annotated task(s) started from them, 3 blind"


def test_harvest_from_a_file_prints_a_summary_and_the_report_with_json(tmp_path: Path) -> None:
    shell = make_shell(["gpt-4o", "claude"])
    source = tmp_path / "in.jsonl"
    lines = [json.dumps(annotate(shell, turn={"likert_value": 2})), "[1]"]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "annotated.jsonl"

    code, text = invoke("harvest", "--from", "file", "--in", str(source), "--out", str(out))
    assert code == 3
    assert text.splitlines() == [
        f"Harvested from {source} (2 lines read)",
        f"  1 annotated task written to {out}",
        f"  1 rejected (not_an_object: 1), each with its reason, in {tmp_path / 'annotated.rejects.jsonl'}",
    ]
    code, text = invoke("harvest", "--from", "file", "--in", str(source), "--out", str(out), "--json")
    assert code == 3 and json.loads(text)["rejected_by_reason"] == {"not_an_object": 1}


# ------------------------------------------------------------------------------- a platform that fails


class _HtmlErrors(BaseHTTPRequestHandler):
    """Answers every request with a multi-line HTML error page, as a proxy or a wrong server does."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<h1>Bad Gateway</h1>\n</body>\n</html>\n"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def html_errors() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlErrors)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_label_studio_errors_are_one_line(html_errors: str) -> None:
    with (
        LabelStudioClient(closed_port_url(), SecretStr("a-test-token")) as client,
        pytest.raises(LabelStudioError) as info,
    ):
        client.request("GET", "/api/projects")
    assert "cannot reach Label Studio" in str(info.value) and "\n" not in str(info.value)
    with LabelStudioClient(html_errors, SecretStr("a-test-token")) as client, pytest.raises(LabelStudioError) as info:
        client.request("GET", "/api/projects")
    assert str(info.value) == (
        "GET /api/projects: HTTP 502: <html> <head><title>502 Bad Gateway</title></head> <body> "
        "<h1>Bad Gateway</h1> </body> </html>"
    )


@pytest.mark.parametrize("command", ["deliver", "harvest"])
def test_a_platform_failure_exits_7_with_one_line_and_no_traceback(
    command: str, html_errors: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real client against a server that fails; the run directory is not what is tested here."""
    import flows.delivery.deliver as deliver_module

    def talk(url: str, token: SecretStr) -> dict[str, Any]:
        with LabelStudioClient(url, token) as client:
            client.request("GET", "/api/projects")
        raise AssertionError("unreachable")

    monkeypatch.setattr(deliver_module, "deliver_label_studio", lambda run_dir, url, token, *_: talk(url, token))
    monkeypatch.setattr(deliver_module, "harvest_label_studio", lambda url, token, *_: talk(url, token))
    monkeypatch.setenv("LABEL_STUDIO_TOKEN", "a-test-token")
    for url, says in [(closed_port_url(), "cannot reach Label Studio"), (html_errors, "HTTP 502: <html>")]:
        args = [str(tmp_path), "--url", url] if command == "deliver" else ["--url", url, "--run-dir", str(tmp_path)]
        result = CliRunner().invoke(app, [command, *args], env={"COLUMNS": "300"})
        assert result.exit_code == EXIT_PLATFORM, result.output
        assert not isinstance(result.exception, AssertionError)
        (line,) = ANSI.sub("", result.output).splitlines()
        assert line.startswith("error: Label Studio: ") and says in line and "Traceback" not in line


def test_options_that_are_wrong_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    code, text = invoke("deliver", str(tmp_path), "--url", "http://127.0.0.1:9", "--token-env", "NO_SUCH_TOKEN_VAR")
    assert code == EXIT_INPUT and "environment variable NO_SUCH_TOKEN_VAR is not set" in text
    code, text = invoke("harvest", "--from", "file")
    assert code == EXIT_INPUT and "--in is required for --from file" in text


# -------------------------------------------------------------------------------- make label-studio


def test_a_long_install_shows_what_it_is_doing(monkeypatch: pytest.MonkeyPatch) -> None:
    from platforms.label_studio.local_server import run_with_progress

    said: list[str] = []
    script = (
        "import time; print('Collecting label-studio', flush=True); time.sleep(1.0); print('Successfully installed')"
    )
    run_with_progress([sys.executable, "-c", script], said.append, timeout_s=60, quiet_s=0.3)
    assert said[0] == "  Collecting label-studio" and said[-1] == "  Successfully installed"
    assert any(line.startswith("  ... still working (") for line in said[1:-1])  # pip quiet for a while

    with pytest.raises(subprocess.CalledProcessError):
        run_with_progress([sys.executable, "-c", "raise SystemExit(3)"], said.append, timeout_s=60)
    with pytest.raises(subprocess.TimeoutExpired):
        run_with_progress([sys.executable, "-c", "import time; time.sleep(30)"], said.append, timeout_s=0.5)


def test_make_label_studio_installs_with_pips_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import platforms.label_studio.local_server as local_server

    calls: list[list[str]] = []
    monkeypatch.setattr(local_server, "VENV", tmp_path / "ls-venv")
    monkeypatch.setattr(subprocess, "run", lambda command, **_: calls.append(command))
    monkeypatch.setattr(local_server, "run_with_progress", lambda command, say, timeout_s: calls.append(command))
    said: list[str] = []
    local_server.ensure_installed(say=said.append)
    assert said[0].startswith("installing label-studio") and "a few minutes" in said[0]
    pip = calls[-1]
    assert "--quiet" not in pip and pip[-1] == local_server.REQUIREMENT
