"""Fixtures shared by every test: the real traces in ../shared/traces and a CLI runner.

Being the root conftest, this file puts ``tests/`` on ``sys.path`` (pytest's ``prepend`` import
mode), so every test imports the shared helpers as ``support.*``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support import SHARED_TRACES
from support.cli import run_cli


@pytest.fixture
def shared_traces() -> Path:
    """The folder of real routing traces; skips the test where it is absent (a user's machine)."""
    if not SHARED_TRACES.is_dir():
        pytest.skip(f"real traces not found at {SHARED_TRACES} (only CI and dev machines have ../shared/traces)")
    return SHARED_TRACES


@pytest.fixture
def cli():
    """:func:`support.cli.run_cli` as a fixture."""
    return run_cli
