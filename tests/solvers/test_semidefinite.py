"""The semidefinite pair weights of placer.solvers.bounds.semidefinite: a valid bound for ANY
nonnegative pair weights (against the enumerated minimum cut), near the optimum with the
conic solver's, and what the coherent bound reports when it has the time."""

from __future__ import annotations

import time

import numpy as np
import pytest

from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints
from placer.solvers.bounds import lower_bound
from placer.solvers.bounds.decomposition import Effort, split_cut_bound
from placer.solvers.bounds.semidefinite import available, cut_bound_with, multipliers, semidefinite_cut_bound
from support.brute import optimum
from support.generate import random_trace
from test_bound_claims import min_level_cut

pytestmark = pytest.mark.skipif(not available(), reason="scs is not installed")


def soon(seconds: float = 30.0) -> float:
    return time.perf_counter() + seconds


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("layers,E,parts", [(2, 6, 2), (3, 6, 3), (3, 8, 4)])
def test_any_pair_weights_give_a_valid_bound(seed, layers, E, parts):
    # the claim holds for every N >= 0, not only the conic solver's: random and large ones
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 6, size=(layers - 1, E, E)).astype(float)
    best = min_level_cut(w, parts, E // parts, False)
    n = layers * E
    for scale in (0.1, 1.0, 10.0):
        N = np.triu(scale * rng.exponential(size=(n, n)), 1)
        value, _ = cut_bound_with(w, N + N.T, parts, E // parts, Effort(soon(), max_evals=200))
        assert value <= best + 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_the_solvers_weights_come_near_the_optimum(seed):
    E, parts = 6, 3
    w = np.random.default_rng(seed).integers(0, 6, size=(2, E, E)).astype(float)
    best = min_level_cut(w, parts, E // parts, False)
    value = semidefinite_cut_bound(w, parts, E // parts, soon())
    split, _, _ = split_cut_bound(w, parts, E // parts, False, Effort(soon(), max_evals=300))
    assert value is not None and 0.95 * best <= value <= best + 1e-9
    # at least as tight as the eigenvalue/degree split on these (the relaxation is stronger)
    assert value >= split - 1e-6 * best
    N = multipliers(w, parts, E // parts, 10.0)
    assert N is not None and (N >= 0).all() and np.allclose(N, N.T) and not np.diag(N).any()


def test_no_time_or_too_large_gives_none():
    w = np.ones((2, 6, 6))
    assert semidefinite_cut_bound(w, 3, 2, time.perf_counter()) is None
    assert semidefinite_cut_bound(np.ones((2, 65, 65)), 5, 13, soon()) is None


@pytest.mark.parametrize("G,gpn", [(2, 2), (4, 2)])
def test_coherent_bound_with_time_stays_below_the_optimum(G, gpn):
    # a whole instance: every pair's best method, the semidefinite stage on the time the
    # ascents leave, and the node level
    trace = random_trace(7, 3, 8, 2, 60, affinity=0.6)
    prof, topo = Profile.from_trace(trace), Topology.uniform(G, gpn, inter_node_cost=3.0)
    value, name = lower_bound(prof, topo, Constraints(), deadline=soon(20.0), semidefinite=True)
    assert value <= optimum(trace, topo) + 1e-9
    assert "semidefinite pair weights" in name
    assert "semidefinite" not in lower_bound(prof, topo, Constraints(), deadline=soon(20.0))[1]


def test_partition_takes_the_stage_when_asked():
    from placer.solvers.base import solve

    trace = random_trace(3, 4, 16, 2, 300, affinity=0.7)
    prof, topo = Profile.from_trace(trace), Topology.uniform(4)
    res = solve("partition", prof, topo, Constraints(seed=0, time_limit=20.0), {"semidefinite": True})
    assert "semidefinite pair weights" in res.bound_method
    assert res.bound <= res.objective * (1 + 1e-12)
