"""Mutation checks of the validator: a replay broken on purpose (placer/validate/faults.py) must
make ``validate`` exit 1 naming the failed check, and the unbroken replay must pass.

- ``serve-home``: every pick served on its token's home rank (the cost model's serving function
  replaced in the replay and in the byte prediction alike, so bytes 0 = predicted 0): the
  routing check refuses a pick served where the placement has no copy (a rank fails, exit 1);
- ``route``: rank 0 dispatches the wrong token's rows: the destination's expert bank refuses to
  build an expert its placement does not give it (exit 1);
- ``expert``: rank 0 computes one expert with wrong weights: ``outputs_match`` and
  ``outputs_match_unit_weights`` fail; where the trace's gate weights are 1e-6 or 0 (which hide
  any expert's output from the trace-weighted check) the unit-weight check still fails, and so
  it does for a trace without gate weights.

World sizes 2 to 4 on gloo, a trace of 3 layers x 48 tokens x top-2 of 12 experts. The CLI runs
in this process so the ranks fork from one fork server that imports torch once.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from placer import Trace
from placer.validate.faults import MUTATE_ENV
from support.generate import random_placement, random_trace

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

L, T, K, E = 3, 48, 2, 12


def validate(tmp_path, G: int, gate_scale: float | None = 1.0) -> tuple[int, str, str]:
    trace = random_trace(G, L, E, K, T, seq_offsets=4, weights=gate_scale is not None)
    if gate_scale not in (None, 1.0):
        trace = Trace(trace.expert_ids, E, gate_weights=np.asarray(trace.gate_weights) * np.float32(gate_scale),
                      seq_offsets=trace.seq_offsets)
    tpath, ppath = tmp_path / f"t{G}.npz", tmp_path / f"p{G}.json"
    trace.save(tpath)
    random_placement(G + 7, L, E, G).save(ppath)
    from placer.cli import main
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["validate", str(tpath), str(ppath), "--hidden-size", "16", "--ffn-size", "24", "--iters", "1",
                  "--warmup", "0", "--timeout", "120"])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("G", [2, 3, 4])
def test_unbroken_replay_passes(G, tmp_path, monkeypatch):
    monkeypatch.delenv(MUTATE_ENV, raising=False)
    code, out, err = validate(tmp_path, G)
    assert code == 0, err
    assert "validate failed" not in err


CASES = [
    ("serve-home", 2, 1.0, "which the placement does not give that expert; the replay did not follow the placement"),
    ("serve-home", 4, 1.0, "which the placement does not give that expert; the replay did not follow the placement"),
    ("route", 2, 1.0, "which the placement does not put on it; the replay did not follow the placement"),
    ("route", 3, 1.0, "which the placement does not put on it; the replay did not follow the placement"),
    ("expert", 2, 1.0, "validate failed: outputs_match, outputs_match_unit_weights"),
    ("expert", 4, 1e-6, "validate failed: outputs_match_unit_weights"),
    ("expert", 3, 0.0, "validate failed: outputs_match_unit_weights"),
    ("expert", 2, None, "validate failed: outputs_match, outputs_match_unit_weights"),
]


@pytest.mark.parametrize("mutation, G, gate_scale, check", CASES, ids=[f"{m}-G{g}-gate{w}" for m, g, w, _c in CASES])
def test_broken_replay_fails_naming_the_check(mutation, G, gate_scale, check, tmp_path, monkeypatch):
    monkeypatch.setenv(MUTATE_ENV, mutation)
    code, out, err = validate(tmp_path, G, gate_scale)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1, (code, out, err)
    assert len(lines) == 1 and check in lines[0], err
