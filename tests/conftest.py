"""Shared test fixtures: the real traces in ../shared/traces and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_TRACES = Path(os.environ.get("MOE_PLACE_SHARED_TRACES", REPO.parent / "shared" / "traces"))


@pytest.fixture
def shared_traces() -> Path:
    """The folder of real routing traces; skips the test where it is absent (a user's machine)."""
    if not SHARED_TRACES.is_dir():
        pytest.skip(f"real traces not found at {SHARED_TRACES} (only CI and dev machines have ../shared/traces)")
    return SHARED_TRACES


def run_cli(*args: str, cwd: Path | None = None, input: str | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m placer ARGS`` in a subprocess, as a user would; returns the completed process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "placer", *map(str, args)], cwd=cwd, input=input,
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def cli():
    """The :func:`run_cli` helper as a fixture."""
    return run_cli


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """A user error: exit 2, one line on stderr naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for frag in fragments:
        assert frag.lower() in lines[0].lower(), (frag, lines[0])
