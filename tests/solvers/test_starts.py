"""The partition solver's starts: the sparsified METIS graph against a ranking of its edge list."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints
from placer.solvers.partition import starts
from placer.solvers.search.problem import build_problem
from support.generate import random_trace, skewed


def _ranked_edges(u, v, w, degree):
    """Brute force: every vertex keeps, among the edges where it is the first endpoint and
    among those where it is the second, its ``degree`` heaviest, ties to the earlier listed."""
    keep = np.zeros(len(w), bool)
    for end in (u, v):
        for x in np.unique(end):
            mine = np.flatnonzero(end == x)
            order = sorted(mine, key=lambda e: (-w[e], e))
            keep[order[:degree]] = True
    return keep


@pytest.mark.parametrize("cost", ["coherent", "ep"])
@pytest.mark.parametrize("replicas", [0, 4])
def test_top_degree_graph_is_the_ranked_edge_list(cost, replicas):
    # few tokens over many experts: small integer counts, so ties are everywhere
    prof = Profile.from_trace(random_trace(3, 4, 16, 3, 60, affinity=0.5, p=skewed(16, 0.3)))
    prob = build_problem(prof, Topology.uniform(4, 2), Constraints(cost=cost, replicas=replicas))
    u, v, w = starts.graph_edges(prob)
    weights = np.asarray(w, np.float64)
    assert len(u) > 0
    for degree in (1, 2, 3):
        keep = _ranked_edges(u, v, weights, degree)
        # the dense ranking rounds the same float weights to METIS's integers as the full graph
        su, sv, sw = starts.graph_edges(prob, degree)
        assert np.array_equal(su, u[keep]) and np.array_equal(sv, v[keep])
        assert len(sw) == keep.sum()


def test_balance_by_assignment_is_the_best_balanced_layer_given_its_neighbours():
    import itertools

    from placer.solvers.search.problem import objective

    prof = Profile.from_trace(random_trace(5, 3, 6, 2, 200, affinity=0.6, p=skewed(6, 0.3)))
    prob = build_problem(prof, Topology.uniform(3, 3), Constraints(cost="coherent"))
    rng = np.random.default_rng(0)
    gpu = rng.integers(0, prob.G, (prob.L, prob.P))      # unbalanced, as a count-only split leaves it
    starts.balance_by_assignment(prob, gpu)
    assert all((np.bincount(row, minlength=prob.G) == prob.S).all() for row in gpu)
    # the last layer was assigned with both its neighbours final: no balanced layout of it is cheaper
    best = np.inf
    for perm in set(itertools.permutations(np.arange(prob.P) // prob.S)):
        trial = gpu.copy()
        trial[-1] = perm
        best = min(best, objective(prob, trial))
    assert objective(prob, gpu) == pytest.approx(best)


def test_large_graphs_start_balanced_from_counts_alone(monkeypatch):
    prof = Profile.from_trace(random_trace(6, 4, 16, 2, 300, affinity=0.8, p=skewed(16, 0.2)))
    prob = build_problem(prof, Topology.uniform(8, 4), Constraints(cost="coherent"))
    calls = []
    original = starts._metis

    def spy(*args, per_layer=True, **kw):
        calls.append(per_layer)
        return original(*args, per_layer=per_layer, **kw)

    monkeypatch.setattr(starts, "_metis", spy)
    monkeypatch.setattr(starts, "PER_LAYER_MAX", 0)
    gpu = starts.metis_start(prob, 0)
    assert calls and not any(calls)
    assert all((np.bincount(row, minlength=prob.G) == prob.S).all() for row in gpu)


def _first_copy_loads(prob, gpu):
    """``[L, G]`` load of every expert's first copy per GPU (instances are numbered expert by
    expert, so an expert's first copy is its first instance)."""
    first = np.cumsum(prob.cnt, axis=1) - prob.cnt
    return np.stack([np.bincount(gpu[l, first[l]], weights=prob.inst_load[l, first[l]], minlength=prob.G)
                     for l in range(prob.L)])


def test_capped_replica_free_start_meets_the_cap_left_for_its_first_copies():
    import time

    prof = Profile.from_trace(random_trace(7, 4, 16, 2, 2000, affinity=0.8, p=skewed(16, 0.15)))
    topo = Topology.uniform(4, 4)
    cons = Constraints(cost="coherent", replicas=4)
    prob = build_problem(prof, topo, cons)
    assert prob.capped and prob.replicated
    gpu = starts.replica_free_start(prob, prof, topo, cons, time.perf_counter() + 5, capped=True)
    assert gpu is not None
    # every GPU holds S instances (a packed copy may still share a GPU with its expert's other
    # copy: the solver's repair separates them)
    for l in range(prob.L):
        assert (np.bincount(gpu[l], minlength=prob.G) == prob.S).all()
    # the first copies were refined under the cap less the mean load the other copies add
    extra = (prob.inst_load.sum(axis=1) - _first_copy_loads(prob, gpu).sum(axis=1)) / prob.G
    assert (_first_copy_loads(prob, gpu) <= (prob.cap - extra)[:, None] * (1 + 1e-9)).all()


def test_capped_replica_free_start_is_skipped_when_its_first_copies_cannot_meet_the_cap():
    import time

    from placer.solvers.base import solve

    # 4 experts on 4 GPUs, one far hotter than the rest: its first copy alone is over the cap left
    # for the first copies, so only the uncapped replica-free start exists
    prof = Profile.from_trace(random_trace(3, 3, 4, 1, 3000, affinity=0.5, p=skewed(4, 1.5)))
    topo = Topology.uniform(4, 4)
    cons = Constraints(cost="coherent", replicas=4)
    prob = build_problem(prof, topo, cons)
    assert prob.capped
    assert starts.replica_free_start(prob, prof, topo, cons, time.perf_counter() + 5, capped=True) is None
    result = solve("partition", prof, topo, dataclasses.replace(cons, time_limit=5), {"kicks": 0})
    kinds = [s["start"] for s in result.details["starts"]]
    assert kinds[0] == "replica-free" and "replica-free, capped" not in kinds
