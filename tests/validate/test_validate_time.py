"""``validate`` on a placement solved with ``--objective time``: measured bytes equal predicted bytes.

The step-time objective picks its placement by a trade-off (``placer/solvers/tradeoff.py``) and
may return a baseline; whatever it returns must stay a placement the replay runs losslessly and
whose all-to-all bytes the ep cost model predicts exactly (gloo on CPU, world size 2 and 4).
"""

from __future__ import annotations

import json

import pytest

from placer import Placement
from support.cli import run_cli
from support.generate import random_trace

pytest.importorskip("torch")

H = 16


@pytest.mark.slow
@pytest.mark.parametrize("G, replicas", [(2, "0"), (4, "1x")])
def test_time_objective_placement_bytes_measured_equal_predicted(tmp_path, G, replicas):
    from placer.validate.api import validate

    trace = random_trace(7, 3, 8, 2, 120, affinity=0.8, seq_offsets=(0, 20, 40, 60, 80, 100, 120), weights=True)
    trace.save(tmp_path / "t.npz")
    proc = run_cli("solve", tmp_path / "t.npz", "--gpus", G, "--replicas", replicas, "--hidden-size", H,
                   "--expert-intermediate-size", 24, "--time-limit", 1, "-o", tmp_path / "p.json", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["constraints"]["objective"] == "time"
    assert report["details"]["tradeoff"], "the time objective scored its candidates"
    rep = validate(trace, Placement.load(tmp_path / "p.json"), "contiguous", hidden_size=H, ffn_size=24, iters=1,
                   warmup=0, tokens=0, timeout_s=120)
    assert rep["outputs_match"]
    assert rep["bytes_match"]
    assert rep["placement"]["bytes_measured"] == rep["placement"]["bytes_predicted"] > 0
