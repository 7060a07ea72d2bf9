"""Error lines on the console: rendered, never raw console markup, whatever the message holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli.app import app


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["deliver", "RUN_DIR", "--to", "label-studio"], "--url is required for --to label-studio"),
        (["deliver", "RUN_DIR", "--to", "nowhere"], "unknown target 'nowhere'"),
        (["harvest", "--from", "file"], "--in is required for --from file"),
        (["harvest", "--from", "[bold]x[/bold]"], "unknown source '[bold]x[/bold]'"),
        (["export-dataset", "MISSING", "--format", "dpo"], "MISSING: file not found"),
        (["export-dataset", "MISSING", "--format", "[red]dpo[/red]"], "unknown format '[red]dpo[/red]'"),
        (["schema", "nothing"], "unknown schema 'nothing'"),
        (["status", "RUN_DIR"], "RUN_DIR: no run.json here"),
    ],
)
def test_error_lines_carry_no_literal_markup(tmp_path: Path, args: list[str], expected: str) -> None:
    args = [a.replace("RUN_DIR", str(tmp_path)).replace("MISSING", str(tmp_path / "missing.jsonl")) for a in args]
    expected = expected.replace("RUN_DIR", str(tmp_path)).replace("MISSING", str(tmp_path / "missing.jsonl"))
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.output
    # The "error:" prefix is styled (no tags left in the text) and the message is shown exactly as it is.
    assert error_lines[0].startswith(f"error: {expected}")
