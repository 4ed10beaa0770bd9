"""``compare --split test`` warns when a placement was fitted on the tokens it is scored on
(solve records what it fitted on), and its progress counts placements."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from click.testing import CliRunner

from placer.analysis.report import fitted_on, tokens_fitted_and_scored, trace_digest
from placer.cli import cli
from placer.model.placement import Placement
from support.generate import random_trace


@pytest.fixture
def trace_file(tmp_path):
    trace = random_trace(7, 3, 8, 2, 400, affinity=0.5, seq_offsets=10)
    path = tmp_path / "t.npz"
    trace.save(path)
    return trace, path


def _placement(path, trace, train) -> str:
    gpu_of = np.tile(np.arange(8) % 2, (trace.num_layers, 1))
    pl = Placement.from_gpu_of(gpu_of, 2, report={"input": {"fitted_on": fitted_on(trace, train)}})
    pl.save(path)
    return str(path)


def _compare(*args):
    res = CliRunner().invoke(cli, ["compare", *map(str, args), "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout), res.stderr


def test_a_placement_fitted_on_the_test_tokens_is_flagged(trace_file, tmp_path):
    trace, path = trace_file
    everything = _placement(tmp_path / "all.json", trace, trace)
    half = _placement(tmp_path / "half.json", trace, trace.split(0.5)[0])
    out, err = _compare(path, everything, half, "contiguous", "--split", "test", "--holdout", "0.5")
    assert len(out["warnings"]) == 1 and "all.json was fitted on 200 of the 200 test tokens" in out["warnings"][0]
    assert "moe-place: warning: " in err and "half.json" not in err
    out, _ = _compare(path, half, "--split", "test", "--holdout", "0.7")
    assert "partly in-sample" in out["warnings"][0]
    out, _ = _compare(path, half, "contiguous", "--split", "test", "--fit", "all")
    assert [w.split(" ")[0] for w in out["warnings"]] == ["contiguous"]


def test_another_trace_or_an_old_report_gives_no_warning(trace_file):
    trace, _ = trace_file
    other = random_trace(8, 3, 8, 2, 400, affinity=0.5, seq_offsets=10)
    same = type(trace)(trace.expert_ids.copy(), trace.num_experts, seq_offsets=trace.seq_offsets)
    assert trace_digest(same) == trace_digest(trace) != trace_digest(other)
    report = {"input": {"fitted_on": fitted_on(other, other)}}
    assert tokens_fitted_and_scored(report, trace, (200, 400)) is None
    assert tokens_fitted_and_scored({"input": {}}, trace, (200, 400)) is None


def test_compare_progress_counts_placements(trace_file, tmp_path, monkeypatch):
    import placer.progress

    trace, path = trace_file
    seen = {}

    @contextlib.contextmanager
    def fake(description, total=None, unit=""):
        seen.update(total=total, unit=unit, done=0.0)
        yield lambda n=1: seen.__setitem__("done", seen["done"] + n)

    monkeypatch.setattr(placer.progress, "progress", fake)
    _compare(path, "contiguous", "eplb", "round_robin", "--gpus", 2, "--split", "test")
    assert seen["total"] == 3 and seen["unit"].startswith("placements (200 tokens each)")
    assert seen["done"] == pytest.approx(3)
