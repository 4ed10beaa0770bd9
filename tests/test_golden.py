"""Behaviour kept through the redesign: every golden case gives the output recorded on main a0271a5.

The cases and how they were recorded: ``tests/golden/cases.py``. Placements are compared on
their layout (every header field and ``phy2log``) byte for byte; reports field by field, except
the fields listed in ``INTENDED`` with the reason each one changed; ``evaluate``/``compare``
JSON and export files byte for byte.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))
from cases import CASES, expand, trace_paths  # noqa: E402

from conftest import SHARED_TRACES, run_cli  # noqa: E402

# report paths whose value changed on purpose, and why (docs/design.md, "Reports")
INTENDED: dict[str, str] = {}


def _report_diff(old: dict, new: dict, path: str = "report") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        p = f"{path}.{key}"
        if p in INTENDED or any(p.startswith(k + ".") for k in INTENDED):
            continue
        if key not in old or key not in new:
            out.append(f"{p}: {'added' if key not in old else 'removed'}")
        elif isinstance(old[key], dict) and isinstance(new[key], dict):
            out += _report_diff(old[key], new[key], p)
        elif old[key] != new[key]:
            out.append(f"{p}: {old[key]!r} -> {new[key]!r}")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case, tmp_path):
    if case.shared and not SHARED_TRACES.is_dir():
        pytest.skip(f"real traces not found at {SHARED_TRACES}")
    out = tmp_path / f"out{case.suffix}"
    proc = run_cli(*expand(case, out, trace_paths(SHARED_TRACES)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = out.read_bytes() if case.output == "file" else proc.stdout.encode()
    want = case.golden.read_bytes()
    if case.args[0] != "solve":
        assert got == want, f"{case.name}: output differs from {case.golden}"
        return
    old, new = json.loads(want), json.loads(got)
    assert {k: v for k, v in new.items() if k != "report"} == {k: v for k, v in old.items() if k != "report"}
    assert _report_diff(old["report"], new["report"]) == []
