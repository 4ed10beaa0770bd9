"""What a solver reads: loads-only and top-1-only inputs are placed by the solvers that fit them.

Solvers declare whether they need the cost model's pair counts (``SolverSpec.needs``);
:func:`placer.solvers.base.solve` checks it once, with one line naming the solvers that fit.
"""

from __future__ import annotations

import numpy as np
import pytest

from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import PAIRS, SOLVERS, Constraints, solve
from placer.traces.load import top1_fallback
from support.generate import random_trace

LOAD_ONLY = ("contiguous", "round_robin", "random", "eplb", "auto")


def loads_only(L=3, E=8, K=2, seed=0) -> Profile:
    rng = np.random.default_rng(seed)
    load = rng.integers(10, 200, size=(L, E))
    return Profile(load=load, num_tokens=int(load[0].sum()) // K, top_k=K)


def test_solvers_declare_needs():
    items = SOLVERS.items()
    for name in LOAD_ONLY:
        assert PAIRS not in items[name].needs, name
    for name in ("partition", "exflow", "joint", "layer_descent", "moetuner"):
        assert PAIRS in items[name].needs, name


@pytest.mark.parametrize("cost", ["ep", "coherent"])
@pytest.mark.parametrize("name", LOAD_ONLY)
def test_loads_only_is_placed(name, cost):
    prof = loads_only()
    res = solve(name, prof, Topology.uniform(4), Constraints(replicas=4, cost=cost, time_limit=2))
    assert res.placement.num_slots == 12
    assert res.objective is None            # no traffic to score without pair counts
    assert res.details["max_imbalance"] >= 1.0
    if name == "auto":
        assert res.solver == "eplb" and res.choice.startswith("eplb")
        assert any("load balance alone" in n for n in res.notes)


@pytest.mark.parametrize("cost,missing", [("ep", "co-activation"), ("coherent", "transition")])
def test_needs_checked_once_with_a_fitting_solver(cost, missing):
    with pytest.raises(PlacerError) as err:
        solve("partition", loads_only(), Topology.uniform(4), Constraints(cost=cost, time_limit=1))
    msg = str(err.value)
    assert "\n" not in msg and missing in msg and "--solver eplb" in msg and "loads only" in msg


def test_top1_transitions_stand_in():
    trace = random_trace(3, 3, 8, 2, 200, affinity=0.7)
    full = Profile.from_trace(trace, coact=False)
    only = Profile(load=full.load, num_tokens=full.num_tokens, top_k=2, trans_top1=full.trans_top1)
    fixed, note = top1_fallback(only)
    assert note is not None and "top-1" in note and fixed.extra["transitions"] == "top-1"
    # one unit of weight a token: the top-1 pick's transition
    np.testing.assert_allclose(fixed.transition_weights(), full.trans_top1)
    assert top1_fallback(full) == (full, None)
    res = solve("auto", fixed, Topology.uniform(4), Constraints(cost="coherent", time_limit=2))
    assert res.solver != "eplb" and res.objective is not None
    # under ep the input still lacks co-activations: auto balances loads and says --cost coherent fits
    res = solve("auto", fixed, Topology.uniform(4), Constraints(cost="ep", time_limit=2))
    assert res.solver == "eplb" and any("--cost coherent" in n for n in res.notes)
    with pytest.raises(PlacerError, match="--cost coherent"):
        solve("partition", fixed, Topology.uniform(4), Constraints(cost="ep", time_limit=1))
