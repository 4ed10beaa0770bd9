"""The ``eplb`` baseline on several nodes: both EPLB policies on the same replicas, the better kept."""

from __future__ import annotations

import numpy as np
import pytest

from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints, solve
from placer.solvers.eplb import is_hierarchical
from support.generate import random_trace


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cost", ["coherent", "ep"])
def test_best_of_both_policies(seed, cost):
    prof = Profile.from_trace(random_trace(seed, 4, 16, 2, 400, affinity=0.6))
    topo = Topology.for_cluster(8, 4)
    cons = Constraints(replicas=8, cost=cost)
    best = solve("eplb", prof, topo, cons)
    runs = {p: solve("eplb", prof, topo, cons, {"policy": p}) for p in ("hierarchical", "global", "eplb")}
    assert is_hierarchical(16, 24, 16, 2, 8) and runs["eplb"].details["policy"] == "hierarchical"
    np.testing.assert_array_equal(runs["eplb"].placement.phy2log, runs["hierarchical"].placement.phy2log)
    assert best.objective == pytest.approx(min(runs["hierarchical"].objective, runs["global"].objective))
    assert best.details["eplb_rule"] == "hierarchical"
    assert set(best.details["policies"]) == {"hierarchical", "global"}
    kept = best.details["policy"]
    np.testing.assert_array_equal(best.placement.phy2log, runs[kept].placement.phy2log)
    assert (kept == "global") == any("global policy" in n for n in best.notes)


def test_loads_only_compares_balance():
    rng = np.random.default_rng(0)
    load = rng.zipf(1.5, size=(3, 16)).clip(max=10_000)
    prof = Profile(load=load, num_tokens=int(load[0].sum()) // 2, top_k=2)
    res = solve("eplb", prof, Topology.for_cluster(8, 4), Constraints(replicas=8))
    pol = res.details["policies"]
    assert res.details["max_imbalance"] == pytest.approx(min(p["max_imbalance"] for p in pol.values()))


def test_one_node_is_eplb_itself():
    prof = Profile.from_trace(random_trace(1, 3, 8, 2, 200))
    res = solve("eplb", prof, Topology.uniform(4), Constraints(replicas=4))
    assert "policies" not in res.details and "eplb_rule" not in res.details


def test_hierarchical_refused_where_it_does_not_apply():
    prof = Profile.from_trace(random_trace(1, 3, 8, 2, 200))
    with pytest.raises(PlacerError, match="policy=global"):
        solve("eplb", prof, Topology.for_cluster(8, 4), Constraints(), {"policy": "hierarchical", "num_groups": 1})
