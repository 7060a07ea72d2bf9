"""The machine and software a benchmark ran on, for RESULTS.md."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from benchlib import PROJECT_PYTHON, VENVS

PROJECT_PACKAGES = ("prefect", "openai", "httpx", "httpx-aiohttp", "aiohttp", "pydantic", "tenacity")
PEER_PACKAGES = {"curator": ("bespokelabs-curator", "litellm"), "distilabel": ("distilabel", "openai")}


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float:
    """Total memory in GiB from /proc/meminfo."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def package_versions(python: Path, names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``names`` in the environment of ``python`` (missing ones are left out)."""
    if not python.exists():
        return {}
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    try:
        result = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, timeout=60)
        import json

        return json.loads(result.stdout or "{}")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


def python_version(python: Path) -> str:
    """``python --version`` of an interpreter."""
    try:
        return subprocess.run([str(python), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return "unknown"


def describe() -> list[str]:
    """Markdown bullet lines describing the machine and the software versions."""
    lines = [
        f"- CPU: {os.cpu_count()} × {cpu_model()} (`nproc` = {len(os.sched_getaffinity(0))})",
        f"- memory: {memory_gib():.1f} GiB; kernel {platform.release()}",
        f"- project: {python_version(PROJECT_PYTHON)}; "
        + ", ".join(f"{k} {v}" for k, v in package_versions(PROJECT_PYTHON, PROJECT_PACKAGES).items()),
    ]
    for peer, names in PEER_PACKAGES.items():
        python = VENVS / peer / "bin" / "python"
        versions = package_versions(python, names)
        if versions:
            lines.append(
                f"- {peer} venv: {python_version(python)}; " + ", ".join(f"{k} {v}" for k, v in versions.items())
            )
    return lines
