"""Running the tool in a subprocess, as a user would, and the shape of a user error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import REPO


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ, **(extra or {}))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(*args, cwd: Path | None = None, input: str | None = None, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m placer ARGS`` (``env``: extra environment variables); returns the completed process."""
    return subprocess.run([sys.executable, "-m", "placer", *map(str, args)], cwd=cwd, input=input,
                          capture_output=True, text=True, timeout=timeout, env=_env(env))


def run_python(code: str, timeout: float = 300) -> str:
    """Run ``python -c CODE`` in a fresh interpreter at the repository root (so that what it
    imports is its own); asserts it exits 0 and returns its stdout."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=_env(None))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """A user error: exit 2, one line on stderr naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for frag in fragments:
        assert frag.lower() in lines[0].lower(), (frag, lines[0])


class NotATensor:
    """An object ``torch.load(weights_only=True)`` must refuse to rebuild (a stand-in for a
    malicious pickle in a user's file)."""

    def __init__(self):
        self.payload = [1, 2, 3]
