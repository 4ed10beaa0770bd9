"""The deadline bounds of placer.solvers.bounds: never above the optimum of tiny instances (every
placement enumerated, with and without replicas, both costs, one and two nodes), each claim at
arbitrary points of its variables, and exact on hand-made pairs."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from exact_refs import layer_assignments, layer_replica_sets, profile_of, random_trace
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints
from placer.solvers.bounds import lower_bound
from placer.solvers.bounds.combinatorial import cut_bound, degree_cut_bound
from placer.solvers.bounds.decomposition import chain_claim, layer_claim
from placer.solvers.bounds.spectral import chain_value, householder, layer_value

SHAPES = [(4, 2, 2), (6, 2, 2), (8, 2, 2), (6, 3, 3), (8, 4, 4), (8, 4, 2), (4, 4, 2), (8, 2, 1)]  # E, G, gpn
SLOW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def soon(seconds: float = 30.0) -> float:
    return time.perf_counter() + seconds


# ----------------------------------------------------------------- optima by enumeration
def _best_layer_given(W: np.ndarray, hop: np.ndarray, fixed: np.ndarray, S: int) -> float:
    """min over the free layer's balanced assignments of ``sum_ij W_ij hop(fixed_i, free_j)``:
    an assignment problem once the other layer is fixed."""
    cost = W.T @ hop[fixed]                                   # [E free experts, G]
    rows, cols = linear_sum_assignment(np.repeat(cost, S, axis=1))
    return float(cost[rows, cols // S].sum())


def optimum_coherent(prof: Profile, topo: Topology) -> float:
    """The best replica-free coherent cost (1 to 3 layers): enumerate one layer, the others by
    assignment (layer 0 and 2 only meet through layer 1)."""
    W, hop = prof.transition_weights(), np.asarray(topo.hop)
    E, G = prof.num_experts, topo.num_gpus
    S = E // G
    if prof.num_layers == 1:
        return 0.0
    if prof.num_layers == 2:
        return min(_best_layer_given(W[0], hop, g, S) for g in layer_assignments(E, G))
    return min(_best_layer_given(W[0].T, hop, g, S) + _best_layer_given(W[1], hop, g, S)
               for g in layer_assignments(E, G))


def optimum_ep(prof: Profile, topo: Topology) -> float:
    """The best replica-free ep-pairwise cost: layers are independent, each enumerated."""
    hop, total = np.asarray(topo.hop), 0.0
    for C in prof.coact:
        M = np.array(C, dtype=np.float64)
        np.fill_diagonal(M, 0.0)
        total += min(float((M * hop[np.ix_(g, g)]).sum()) / 2 for g in layer_assignments(prof.num_experts, topo.num_gpus))
    return total


def _nearest_hops(ha: np.ndarray, hb: np.ndarray, hop: np.ndarray) -> np.ndarray:
    """``[E, E]`` smallest hop between a replica of i (holding ``ha [E, G]``) and one of j."""
    both = ha[:, None, :, None] & hb[None, :, None, :]
    return np.where(both, hop[None, None], np.inf).min(axis=(2, 3))


def optimum_replicas(prof: Profile, topo: Topology, S: int, cost: str) -> float:
    """The best cost over every holding (each GPU S distinct experts, each expert >= 1 GPU)."""
    E, G, hop = prof.num_experts, topo.num_gpus, np.asarray(topo.hop)
    sets = layer_replica_sets(E, G, S)
    if cost == "ep":
        total = 0.0
        for C in prof.coact:
            M = np.array(C, dtype=np.float64)
            np.fill_diagonal(M, 0.0)
            total += min(float((M * _nearest_hops(h, h, hop)).sum()) / 2 for h in sets)
        return total
    W = prof.transition_weights()
    return min(sum(float((W[l] * _nearest_hops(hs[l], hs[l + 1], hop)).sum()) for l in range(len(W)))
               for hs in itertools.product(sets, repeat=prof.num_layers))


def min_level_cut(w: np.ndarray, parts: int, size: int, within: bool) -> float:
    """The smallest cut over balanced splits into ``parts``: of one layer's co-activation
    (``within``, ``[E, E]``) or of a chain of 2 or 3 layers (``[c-1, E, E]``)."""
    E = w.shape[-1]
    hop = 1.0 - np.eye(parts)
    if within:
        M = np.array(w, dtype=np.float64)
        np.fill_diagonal(M, 0.0)
        return min(float((M * hop[np.ix_(g, g)]).sum()) / 2 for g in layer_assignments(E, parts))
    ws = np.asarray(w, np.float64)
    if len(ws) == 1:
        return min(_best_layer_given(ws[0], hop, g, size) for g in layer_assignments(E, parts))
    return min(_best_layer_given(ws[0].T, hop, g, size) + _best_layer_given(ws[1], hop, g, size)
               for g in layer_assignments(E, parts))


# ------------------------------------------------------------------ never above the optimum
@SLOW
@given(seed=st.integers(0, 10**6), L=st.integers(1, 3), K=st.integers(1, 3), shape=st.sampled_from(SHAPES),
       affinity=st.floats(0, 1), inter=st.sampled_from([1.0, 3.0, 18.0]))
def test_coherent_bound_never_above_optimum(seed, L, K, shape, affinity, inter):
    E, G, gpn = shape
    rng = np.random.default_rng(seed)
    prof = profile_of(random_trace(rng, L, E, K, T=int(rng.integers(5, 40)), affinity=affinity))
    topo = Topology.uniform(G, gpn, inter_node_cost=inter)
    bound, name = lower_bound(prof, topo, Constraints(), deadline=soon())
    old, _ = lower_bound(prof, topo, Constraints())
    assert name
    assert old - 1e-9 * max(1.0, old) <= bound <= optimum_coherent(prof, topo) + 1e-9


@SLOW
@given(seed=st.integers(0, 10**6), K=st.integers(2, 3), shape=st.sampled_from(SHAPES),
       affinity=st.floats(0, 1), inter=st.sampled_from([1.0, 3.0, 18.0]))
def test_ep_bound_never_above_optimum(seed, K, shape, affinity, inter):
    E, G, gpn = shape
    rng = np.random.default_rng(seed)
    prof = profile_of(random_trace(rng, 2, E, K, T=int(rng.integers(5, 40)), affinity=affinity))
    topo = Topology.uniform(G, gpn, inter_node_cost=inter)
    bound, _ = lower_bound(prof, topo, Constraints(cost="ep"), deadline=soon())
    old, _ = lower_bound(prof, topo, Constraints(cost="ep"))
    assert old - 1e-9 * max(1.0, old) <= bound <= optimum_ep(prof, topo) + 1e-9


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), K=st.integers(1, 2), cost=st.sampled_from(["coherent", "ep"]),
       shape=st.sampled_from([(3, 2, 2, 1), (4, 2, 2, 2), (5, 2, 2, 1), (3, 3, 3, 3), (3, 4, 2, 5), (2, 4, 2, 2)]),
       affinity=st.floats(0, 1))
def test_replica_bound_never_above_optimum(seed, K, cost, shape, affinity):
    E, G, gpn, R = shape                                   # E experts + R replicas on G GPUs
    K = min(K, E) if cost == "coherent" else 2
    rng = np.random.default_rng(seed)
    prof = profile_of(random_trace(rng, 2, E, K, T=20, affinity=affinity))
    topo = Topology.uniform(G, gpn, inter_node_cost=3.0)
    cons = Constraints(cost=cost, replicas=R)
    bound, name = lower_bound(prof, topo, cons, deadline=soon())
    old, _ = lower_bound(prof, topo, cons)
    assert "pooled-replica" in name
    assert old - 1e-9 * max(1.0, old) <= bound <= optimum_replicas(prof, topo, (E + R) // G, cost) + 1e-9


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


@pytest.mark.parametrize("E,G,gpn,inter", [(8, 2, 2, 1.0), (8, 4, 4, 1.0), (8, 4, 2, 18.0), (16, 8, 4, 3.0)])
def test_uniform_weights_are_exact(E, G, gpn, inter):
    # every balanced placement keeps G S^2 pairs on GPUs and N (gpn S)^2 on nodes
    S, N = E // G, G // gpn
    topo = Topology.uniform(G, gpn, inter_node_cost=inter)
    exact = 1.0 * (E * E - G * S * S) + (inter - 1.0) * (E * E - N * (gpn * S) ** 2)
    bound, _ = lower_bound(pair_profile(np.ones((E, E))), topo, Constraints(), deadline=soon())
    assert bound <= exact + 1e-9
    assert bound == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("E,G", [(4, 2), (6, 3), (8, 4)])
def test_eigenvalue_bound_sees_a_ring(E, G):
    # i -> i and i -> i+1: every expert keeps both partners in the b-matching (bound 0), but a
    # ring of 2E vertices cannot be cut into G arcs with fewer than G cut edges
    W = np.eye(E, dtype=np.int64) + np.roll(np.eye(E, dtype=np.int64), 1, axis=1)
    prof, topo = pair_profile(W), Topology.uniform(G)
    old, _ = lower_bound(prof, topo, Constraints())
    new, name = lower_bound(prof, topo, Constraints(), deadline=soon())
    assert old == 0.0
    assert 0.3 < new <= optimum_coherent(prof, topo) + 1e-9
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
    rng = np.random.default_rng(5)
    prof = profile_of(random_trace(rng, 3, 8, 2, T=40))
    topo = Topology.uniform(4, 2, inter_node_cost=3.0)
    value, name = lower_bound(prof, topo, Constraints())
    assert name.startswith("per-layer-pair b-matching") and name.endswith("inter-node part")
    W = prof.trans
    want = sum(cut_bound(W[l], 4, 2, False, pooled=False) + 2.0 * cut_bound(W[l], 2, 4, False, pooled=False)
               for l in range(2)) / 4
    assert value == pytest.approx(want, rel=1e-12)


def test_a_passed_deadline_still_gives_a_valid_bound():
    rng = np.random.default_rng(6)
    prof = profile_of(random_trace(rng, 3, 8, 2, T=40, affinity=0.8))
    topo = Topology.uniform(2)
    value, name = lower_bound(prof, topo, Constraints(), deadline=time.perf_counter() - 1.0)
    assert "top-S degrees 2" in name
    assert 0.0 <= value <= lower_bound(prof, topo, Constraints())[0] <= optimum_coherent(prof, topo) + 1e-9


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
