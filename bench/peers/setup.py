"""Create each peer's own virtual environment under ``bench/.venvs/`` (their pins never touch ours).

``ensure(peer)`` returns the venv's python, or the reason the peer cannot run here. A venv that
already imports its peer is reused; otherwise it is (re)created from ``requirements-PEER.txt``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from benchlib import OUT, VENVS, log  # noqa: E402

IMPORT_CHECK = {
    "curator": "from bespokelabs import curator",
    "distilabel": "from distilabel.pipeline import Pipeline; from distilabel.models.llms import OpenAILLM",
}


def _imports(python: Path, peer: str) -> tuple[bool, str]:
    result = subprocess.run([str(python), "-c", IMPORT_CHECK[peer]], capture_output=True, text=True, timeout=300)
    return result.returncode == 0, (result.stderr.strip().splitlines() or [""])[-1]


def ensure(peer: str) -> tuple[Path | None, str]:
    """(python of the peer's venv, "") when it is ready, else (None, why it is skipped)."""
    venv = VENVS / peer
    python = venv / "bin" / "python"
    requirements = HERE / f"requirements-{peer}.txt"
    if python.exists():
        ok, _ = _imports(python, peer)
        if ok:
            return python, ""
    log(f"installing {peer} into {venv} (its own venv; a few minutes the first time)")
    VENVS.mkdir(parents=True, exist_ok=True)
    (OUT / "logs").mkdir(parents=True, exist_ok=True)
    install_log = OUT / "logs" / f"install-{peer}.log"
    with install_log.open("w") as sink:
        if not python.exists():
            made = subprocess.run([sys.executable, "-m", "venv", str(venv)], stdout=sink, stderr=subprocess.STDOUT)
            if made.returncode != 0:
                return None, f"could not create a venv (see {install_log.relative_to(OUT.parent.parent)})"
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(requirements)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=1800,
        )
    if pip.returncode != 0:
        tail = install_log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
        return None, f"pip install failed: {tail[0][:160]}"
    ok, error = _imports(python, peer)
    if not ok:
        return None, f"installed but does not import: {error[:160]}"
    return python, ""


if __name__ == "__main__":
    for name in sys.argv[1:] or list(IMPORT_CHECK):
        path, reason = ensure(name)
        print(f"{name}: {path or 'skipped: ' + reason}")
