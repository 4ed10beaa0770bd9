"""Placements with two copies of one expert on one GPU (DeepSeek's EPLB writes them): accepted on
input, wasted slots counted, a warning once, scored as they are; never produced by our solvers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from placer.cost import evaluate
from placer.errors import PlacerError
from placer.export import EXPORTERS, WriteOptions
from placer.model.placement import Placement
from placer.model.topology import Topology
from placer.solvers.base import Constraints, solve
from placer.solvers.eplb import rebalance_experts
from support.generate import random_trace
from support.truths import holding, loads_by_token

E, G, R = 8, 4, 4


@pytest.fixture
def doubled():
    """What the original EPLB places for skewed loads on 4 GPUs with 4 redundant slots."""
    trace = random_trace(3, 2, E, 2, 300, affinity=0.5, seq_offsets=10)
    load = np.array([[7, 1, 29, 49, 13, 53, 2, 1], [6, 10, 1, 4, 229, 5, 6, 1]]) * 10
    phy2log, _, _ = rebalance_experts(load, E + R, E, 1, G, distinct=False)
    pl = Placement(phy2log, E, G)
    with pytest.raises(PlacerError, match="two replicas of one expert on GPU"):
        pl.validate()
    return trace, pl.validate(allow_duplicates=True)


def test_wasted_slots_counted(doubled):
    _, pl = doubled
    per_gpu = [[len(r) - len(set(r)) for r in layer.reshape(G, -1).tolist()] for layer in pl.phy2log]
    np.testing.assert_array_equal(pl.wasted_slots, np.sum(per_gpu, axis=1))
    assert pl.wasted_slots.sum() >= 1 and "wasted" in pl.wasted_warning("x")


def test_scored_as_it_is(doubled):
    """A pick goes to each slot of its expert alike: the GPU with two copies carries both shares."""
    trace, pl = doubled
    res = evaluate(trace, pl, Topology.uniform(G), costs=["load", "coherent", "ep"])
    # loads_by_token splits over distinct GPUs; the definition here splits over slots
    per_slot = np.zeros((trace.num_layers, G))
    ids = np.asarray(trace.expert_ids)
    for l in range(trace.num_layers):
        cnt = np.bincount(pl.phy2log[l], minlength=E)
        for p, e in enumerate(pl.phy2log[l]):
            per_slot[l, p // pl.slots_per_gpu] += (ids[l] == e).sum() / cnt[e]
    expect = per_slot.max(axis=1) / per_slot.mean(axis=1)
    assert res["load"]["max_imbalance"] == pytest.approx(expect.max())
    assert not np.allclose(per_slot, loads_by_token(trace, holding(pl)))   # the duplicate is no extra GPU
    assert res["coherent"]["per_transition"] >= 0 and res["ep"]["copies_per_token_layer"] > 0


@pytest.mark.parametrize("fmt,name", [("eplb", "x.npz"), ("native", "x.json")])
def test_commands_accept_and_warn_once(cli, doubled, tmp_path, fmt, name):
    trace, pl = doubled
    tpath = tmp_path / "t.npz"
    trace.save(tpath)
    src = tmp_path / name
    if fmt == "native":
        pl.save(src)
    else:
        np.savez(src, phy2log=pl.phy2log)     # what a user's EPLB run saves (no validation)
    out = tmp_path / "back.json"
    proc = cli("import-placement", src, "--gpus", G, "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["wasted_slots"] == int(pl.wasted_slots.sum())
    assert proc.stderr.count("warning:") == 1 and "wasted" in proc.stderr
    np.testing.assert_array_equal(Placement.load(out).phy2log, pl.phy2log)
    proc = cli("evaluate", tpath, out, "--json", "--cost", "load")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("warning:") == 1 and json.loads(proc.stdout)["wasted_slots"] >= 1
    proc = cli("compare", tpath, out, "contiguous", "--json", "--cost", "load")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("warning:") == 1
    rows = json.loads(proc.stdout)["placements"]
    assert rows[0]["wasted_slots"] >= 1 and "wasted_slots" not in rows[1]


def test_solvers_and_writers_stay_strict(doubled, tmp_path):
    trace, pl = doubled
    from placer.model.profile import Profile
    prof = Profile.from_trace(trace)
    for name in ("eplb", "contiguous", "partition"):
        res = solve(name, prof, Topology.uniform(G), Constraints(replicas=R, time_limit=1))
        assert res.placement.wasted_slots.sum() == 0
    with pytest.raises(PlacerError, match="two replicas"):
        EXPORTERS.get("sglang").write(pl, tmp_path / "m.json", WriteOptions())
