"""The benchmark scripts start: their imports resolve (``bench/`` puts itself first on ``sys.path``, so a
module there named like one of our packages would shadow it) and their options parse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # each script is a subprocess


@pytest.mark.parametrize(
    "script", ["bench/run.py", "bench/ratelimits.py", "bench/request_paths.py", "bench/clients/floor.py"]
)
def test_a_benchmark_script_starts(script: str) -> None:
    done = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
