"""The partition solver's starts: the sparsified METIS graph against a ranking of its edge list."""

from __future__ import annotations

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
