"""Solve reports score a sample of the tokens when all would not fit the time limit; the load
imbalance is then still scored on every token (it needs only the expert counts)."""

from __future__ import annotations

import numpy as np
import pytest

from placer.analysis.report import metrics_table
from placer.cost import evaluate
from placer.model.placement import Placement
from placer.model.topology import Topology
from placer.model.trace import Trace


def _alternating_trace(sequences: int = 8, length: int = 64) -> Trace:
    """2 layers, 8 experts, top-1: even sequences pick experts 0-3, odd ones 4-7, so every other
    sequence (a sample) sees only half of the experts."""
    ids = np.empty((2, sequences * length, 1), np.int64)
    rng = np.random.default_rng(0)
    for s in range(sequences):
        lo = 0 if s % 2 == 0 else 4
        ids[:, s * length:(s + 1) * length, 0] = lo + rng.integers(0, 4, (2, length))
    return Trace(expert_ids=ids, num_experts=8,
                 seq_offsets=np.arange(0, sequences * length + 1, length, dtype=np.int64))


def test_sampled_metrics_keep_the_load_imbalance_of_every_token():
    full = _alternating_trace()
    sample = full.sample(0.5, min_tokens=1)
    assert sample.num_tokens == full.num_tokens // 2
    topo = Topology.uniform(2)
    placement = Placement.from_gpu_of(np.tile(np.repeat(np.arange(2), 4), (2, 1)), 2)   # experts 0-3 | 4-7
    exact = evaluate(full, placement, topo, costs=("load",), matrices=False)["load"]
    on_sample = metrics_table({"p": placement}, topo, sample, None)["p"]["in_sample"]
    fixed = metrics_table({"p": placement}, topo, sample, None, loads_on=(full, None))["p"]["in_sample"]
    # the sample alone puts every pick on GPU 0: max/mean 2, where all tokens give about 1
    assert on_sample["max_imbalance"] == pytest.approx(2.0)
    assert fixed["max_imbalance"] == pytest.approx(exact["max_imbalance"])
    assert fixed["mean_imbalance"] == pytest.approx(exact["mean_imbalance"])
    assert fixed["max_imbalance"] < 1.2
    # the traffic metrics stay the sample's
    assert fixed["coherent_total"] == on_sample["coherent_total"]


def test_solve_reports_the_load_imbalance_of_every_training_token_when_it_samples(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    import placer.analysis.report as report
    from placer.cli import cli

    # 16 sequences of 512 tokens: the smallest sample (4,096 tokens) is every other sequence
    trace = _alternating_trace(16, 512)
    path = tmp_path / "t.npz"
    trace.save(path)
    monkeypatch.setattr(report, "SCORE_PICKS_PER_S", 1e-3)      # no token fits: a sample is scored
    out = tmp_path / "p.json"
    res = CliRunner().invoke(cli, ["solve", str(path), "--gpus", "2", "--solver", "contiguous", "--cost", "coherent",
                                   "-o", str(out), "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert got["metrics_scored_on"]["in_sample_tokens"] == trace.num_tokens // 2
    exact = evaluate(trace, Placement.load(out), Topology.uniform(2), costs=("load",), matrices=False)["load"]
    solution = got["metrics"]["solution"]["in_sample"]
    assert solution["max_imbalance"] == pytest.approx(exact["max_imbalance"]) and exact["max_imbalance"] < 1.2
