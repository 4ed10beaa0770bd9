"""The claims behind the deadline bounds of placer.solvers.bounds at arbitrary points of their
variables (never above the enumerated minimum cut), the cases where the bound is exact, and how a
deadline is spent. Validity against the optimum of whole instances: tests/solvers/test_bounds.py."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints
from placer.solvers.bounds import lower_bound
from placer.solvers.bounds.combinatorial import cut_bound, degree_cut_bound
from placer.solvers.bounds.decomposition import chain_claim, layer_claim
from placer.solvers.bounds.spectral import chain_value, householder, layer_value
from support.brute import assignments, optimum
from support.generate import random_trace



def soon(seconds: float = 30.0) -> float:
    return time.perf_counter() + seconds


def _best_layer_given(W: np.ndarray, hop: np.ndarray, fixed: np.ndarray, size: int) -> float:
    """min over the free layer's balanced assignments of ``sum_ij W_ij hop(fixed_i, free_j)``:
    an assignment problem once the other layer is fixed."""
    cost = W.T @ hop[fixed]                                   # [E free experts, parts]
    rows, cols = linear_sum_assignment(np.repeat(cost, size, axis=1))
    return float(cost[rows, cols // size].sum())


def min_level_cut(w: np.ndarray, parts: int, size: int, within: bool) -> float:
    """The smallest cut over balanced splits into ``parts``: of one layer's co-activation
    (``within``, ``[E, E]``) or of a chain of 2 or 3 layers (``[c-1, E, E]``)."""
    E = w.shape[-1]
    hop = 1.0 - np.eye(parts)
    if within:
        M = np.array(w, dtype=np.float64)
        np.fill_diagonal(M, 0.0)
        return min(float((M * hop[np.ix_(g, g)]).sum()) / 2 for g in assignments(E, parts))
    ws = np.asarray(w, np.float64)
    if len(ws) == 1:
        return min(_best_layer_given(ws[0], hop, g, size) for g in assignments(E, parts))
    return min(_best_layer_given(ws[0].T, hop, g, size) + _best_layer_given(ws[1], hop, g, size)
               for g in assignments(E, parts))


# -------------------------------------------------------------- each claim at any point
def _claim_case(rng: np.random.Generator, E: int, layers: int):
    """Random integer weights: a chain of ``layers`` (``[layers-1, E, E]``) or, for
    ``layers == 1``, one layer's symmetric co-activation ``[E, E]``; and the variables' start."""
    if layers == 1:
        w = np.triu(rng.integers(0, 6, size=(E, E)), 1).astype(float)
        w = w + w.T
        return w, np.concatenate([0.5 * w.ravel(), np.zeros(2 * E)])
    w = rng.integers(0, 6, size=(layers - 1, E, E)).astype(float)
    return w, np.concatenate([0.5 * w.ravel(), np.zeros(layers * E + 2 * (layers - 1) * E)])


@pytest.mark.slow     # 200 enumerated minimum cuts
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), shape=st.sampled_from([(4, 2), (6, 2), (6, 3), (8, 4)]),
       layers=st.integers(1, 3), scale=st.sampled_from([0.0, 0.3, 3.0]))
def test_claims_hold_at_any_point(seed, shape, layers, scale):
    # the proofs hold for every value of the variables, not only where the ascent goes: random
    # points, negative split weights included (layers 1: the ep claim on one layer)
    E, parts = shape
    size, within = E // parts, layers == 1
    rng = np.random.default_rng(seed)
    w, x0 = _claim_case(rng, E, layers)
    best = min_level_cut(w, parts, size, within)
    claim = (layer_claim if within else chain_claim)(w, parts, size)
    for _ in range(5):
        x = x0 + scale * w.mean() * rng.standard_normal(x0.shape)
        assert claim(x)[0] <= best + 1e-9
    u = scale * rng.standard_normal(E * max(1, layers))
    assert (layer_value if within else chain_value)(w, u, householder(E), parts, size)[0] <= best + 1e-9


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**6), layers=st.integers(1, 3))
def test_claim_supergradient(seed, layers):
    # concave: the value at any other point lies below the tangent plane of the supergradient
    E, parts = 6, 3
    rng = np.random.default_rng(seed)
    w, x = _claim_case(rng, E, layers)
    claim = (layer_claim if layers == 1 else chain_claim)(w, parts, E // parts)
    x = x + rng.standard_normal(x.shape)
    fx, gx = claim(x)
    for _ in range(5):
        y = x + 0.5 * rng.standard_normal(x.shape)
        assert claim(y)[0] <= fx + gx @ (y - x) + 1e-6 * (1 + abs(fx))


# ------------------------------------------------------------------------- known values
def pair_profile(W: np.ndarray) -> Profile:
    """A two-layer top-1 profile whose only transition matrix is ``W`` (integer counts)."""
    W = np.asarray(W, dtype=np.int64)
    return Profile(load=np.stack([W.sum(axis=1), W.sum(axis=0)]), num_tokens=int(W.sum()), top_k=1, trans=W[None])


@pytest.mark.slow     # the deadline bound's full effort: seconds a case
@pytest.mark.parametrize("E,G,gpn", [(8, 2, 2), (8, 4, 4), (8, 4, 2), (12, 3, 3)])
def test_pair_split_into_blocks_costs_nothing(E, G, gpn):
    S = E // G
    rng = np.random.default_rng(0)
    perm = rng.permutation(E)
    W = np.zeros((E, E), np.int64)
    for g in range(G):
        rows, cols = np.arange(g * S, (g + 1) * S), perm[g * S:(g + 1) * S]
        W[np.ix_(rows, cols)] = rng.integers(1, 9, size=(S, S))
    bound, _ = lower_bound(pair_profile(W), Topology.uniform(G, gpn, inter_node_cost=5.0), Constraints(),
                           deadline=soon())
    assert bound == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow     # the deadline bound's full effort: seconds a case
@pytest.mark.parametrize("E,G,gpn,inter", [(8, 2, 2, 1.0), (8, 4, 4, 1.0), (8, 4, 2, 18.0), (16, 8, 4, 3.0)])
def test_uniform_weights_are_exact(E, G, gpn, inter):
    # every balanced placement keeps G S^2 pairs on GPUs and N (gpn S)^2 on nodes
    S, N = E // G, G // gpn
    topo = Topology.uniform(G, gpn, inter_node_cost=inter)
    exact = 1.0 * (E * E - G * S * S) + (inter - 1.0) * (E * E - N * (gpn * S) ** 2)
    bound, _ = lower_bound(pair_profile(np.ones((E, E))), topo, Constraints(), deadline=soon())
    assert bound <= exact + 1e-9
    assert bound == pytest.approx(exact, rel=1e-9)


@pytest.mark.slow     # the deadline bound's full effort: seconds a case
@pytest.mark.parametrize("E,G", [(4, 2), (6, 3), (8, 4)])
def test_eigenvalue_bound_sees_a_ring(E, G):
    # i -> i and i -> i+1: every expert keeps both partners in the b-matching (bound 0), but a
    # ring of 2E vertices cannot be cut into G arcs with fewer than G cut edges
    W = np.eye(E, dtype=np.int64) + np.roll(np.eye(E, dtype=np.int64), 1, axis=1)
    prof, topo = pair_profile(W), Topology.uniform(G)
    old, _ = lower_bound(prof, topo, Constraints())
    new, name = lower_bound(prof, topo, Constraints(), deadline=soon())
    assert old == 0.0
    assert 0.3 < new <= min_level_cut(W[None], G, E // G, False) + 1e-9
    assert "eigenvalue" in name


def test_pooled_replica_caps_are_never_weaker():
    rng = np.random.default_rng(1)
    for _ in range(10):
        W = rng.integers(0, 9, size=(8, 8))
        for R in (0, 2, 4, 8):
            size = (8 + R) // 4
            if (8 + R) % 4:
                continue
            legacy = cut_bound(W, 4, size, False, R, pooled=False)
            pooled = cut_bound(W, 4, size, False, R)
            assert pooled >= legacy - 1e-9
            if R == 0:
                assert pooled == legacy


# --------------------------------------------------------------------------- deadlines
def test_no_deadline_is_the_bound_of_before():
    prof = Profile.from_trace(random_trace(5, 3, 8, 2, 40))
    topo = Topology.uniform(4, 2, inter_node_cost=3.0)
    value, name = lower_bound(prof, topo, Constraints())
    assert name.startswith("per-layer-pair b-matching") and name.endswith("inter-node part")
    W = prof.trans
    want = sum(cut_bound(W[l], 4, 2, False, pooled=False) + 2.0 * cut_bound(W[l], 2, 4, False, pooled=False)
               for l in range(2)) / 4
    assert value == pytest.approx(want, rel=1e-12)


def test_a_passed_deadline_still_gives_a_valid_bound():
    trace = random_trace(6, 3, 8, 2, 40, affinity=0.8)
    prof, topo = Profile.from_trace(trace), Topology.uniform(2)
    value, name = lower_bound(prof, topo, Constraints(), deadline=time.perf_counter() - 1.0)
    assert "top-S degrees 2" in name
    assert 0.0 <= value <= lower_bound(prof, topo, Constraints())[0] <= optimum(trace, topo) + 1e-9


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), shape=st.sampled_from([(4, 2, 2, 0), (6, 3, 2, 0), (8, 4, 2, 4), (6, 2, 4, 2)]),
       within=st.booleans())
def test_degree_bound_is_below_the_flow(seed, shape, within):
    E, parts, size, R = shape
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 9, size=(E, E))
    if within:
        w = w + w.T
    assert degree_cut_bound(w, parts, size, within, R) <= cut_bound(w, parts, size, within, R, pooled=False) + 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("cost", ["coherent", "ep"])
def test_solvers_report_the_deadline_bound_within_their_limit(cost):
    # partition's search stops at 1 - bound_share of the limit, the bound runs to the limit:
    # the whole call keeps the command's overshoot rule, and the bound is at least the flows'
    from placer.solvers.base import solve

    trace = random_trace(3, 6, 32, 2, 400, affinity=0.7)
    prof, topo = Profile.from_trace(trace), Topology.uniform(4)
    cons = Constraints(cost=cost, seed=0, time_limit=3.0)
    t0 = time.perf_counter()
    res = solve("partition", prof, topo, cons, {"patience": 10 ** 6})
    assert time.perf_counter() - t0 < 3.0 * 1.05 + 0.5
    assert res.bound >= lower_bound(prof, topo, cons)[0] * (1 - 1e-12)
    assert res.bound <= res.objective * (1 + 1e-12)
    assert res.bound_method.startswith(("coherent hop-weighted", "ep-pairwise hop-weighted"))
