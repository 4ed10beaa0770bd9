"""The lower bound is never beaten by any placement (brute force over all of them)."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import Trace
from placer.solvers.base import Constraints
from placer.solvers.bounds import b_matching_max, lower_bound
from support.brute import optimum, replica_holdings
from support.generate import random_trace
from support.truths import coherent_by_token, pairwise_by_token


SHAPES = [(4, 2, 2), (6, 2, 2), (8, 2, 2), (6, 3, 3), (8, 4, 4), (8, 4, 2), (4, 4, 2), (8, 2, 1)]  # E, G, gpn
SOME = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def bound(trace, topo, constraints, deadline=None):
    return lower_bound(Profile.from_trace(trace), topo, constraints, deadline)


def soon(seconds: float = 30.0) -> float:
    return time.perf_counter() + seconds


def both_bounds(trace, topo, constraints) -> tuple[float, float, str]:
    """``(the deadline=None b-matching bound, the deadline bound, its method)``; the deadline
    bound starts from the b-matching flows, so it is never below it (the flows all fit here)."""
    old, _ = bound(trace, topo, constraints)
    new, name = bound(trace, topo, constraints, soon())
    assert name
    assert old >= 0.0 and new >= old - 1e-9 * max(1.0, old)
    return old, new, name


def replica_optimum(trace, topo, S: int, cost: str) -> float:
    """The best objective over every holding of every layer (each GPU S distinct experts, each
    expert on at least one GPU; nearest replicas), by enumeration: ep layer by layer, coherent
    over every pair of holdings (two layers)."""
    sets = replica_holdings(trace.num_experts, topo.num_gpus, S)
    if cost == "ep":
        return sum(min(pairwise_by_token(Trace(trace.expert_ids[l:l + 1], trace.num_experts), h[None], topo.hop) for h in sets)
                   for l in range(trace.num_layers))
    return min(coherent_by_token(trace, np.stack(hs), topo.hop)[0].sum()
               for hs in itertools.product(sets, repeat=trace.num_layers))


@pytest.mark.slow     # the deadline bound's full effort: seconds a case
# ---------------------------------------------------------------- never above the optimum
@SOME
@given(seed=st.integers(0, 10**6), L=st.integers(2, 3), K=st.integers(1, 3), shape=st.sampled_from(SHAPES),
       affinity=st.floats(0, 1), inter=st.sampled_from([1.0, 3.0, 18.0]))
def test_coherent_bound_never_beaten(seed, L, K, shape, affinity, inter):
    # one node (gpn = G) and several; inter = 1: no node level
    E, G, gpn = shape
    trace = random_trace(seed, L, E, K, int(np.random.default_rng(seed).integers(5, 40)), affinity=affinity)
    topo = Topology.uniform(G, gpn, inter_node_cost=inter)
    old, new, _ = both_bounds(trace, topo, Constraints(cost="coherent"))
    assert new <= optimum(trace, topo) + 1e-9


@pytest.mark.slow     # the deadline bound's full effort: seconds a case
@SOME
@given(seed=st.integers(0, 10**6), K=st.integers(2, 3), shape=st.sampled_from(SHAPES),
       affinity=st.floats(0, 1), inter=st.sampled_from([1.0, 3.0, 18.0]))
def test_ep_bound_never_beaten(seed, K, shape, affinity, inter):
    E, G, gpn = shape
    trace = random_trace(seed, 2, E, K, 30, affinity=affinity)
    topo = Topology.uniform(G, gpn, inter_node_cost=inter)
    old, new, _ = both_bounds(trace, topo, Constraints(cost="ep"))
    assert new <= optimum(trace, topo, cost="ep") + 1e-9


@pytest.mark.slow     # the deadline bound's full effort: seconds a case
@SOME
@given(seed=st.integers(0, 10**6), K=st.integers(1, 2), cost=st.sampled_from(["coherent", "ep"]),
       shape=st.sampled_from([(3, 2, 2, 1), (4, 2, 2, 2), (5, 2, 2, 1), (3, 3, 3, 3), (3, 4, 2, 5), (2, 4, 2, 2)]),
       affinity=st.floats(0, 1))
def test_replica_bound_never_beaten(seed, K, cost, shape, affinity):
    E, G, gpn, R = shape                                   # E experts + R replicas on G GPUs
    K = min(K, E) if cost == "coherent" else 2
    trace = random_trace(seed, 2, E, K, 20, affinity=affinity)
    topo = Topology.uniform(G, gpn, inter_node_cost=3.0)
    old, new, name = both_bounds(trace, topo, Constraints(cost=cost, replicas=R))
    assert "pooled-replica" in name
    assert new <= replica_optimum(trace, topo, (E + R) // G, cost) + 1e-9


@pytest.mark.slow     # the deadline bound's full effort: seconds a case
def test_bound_is_tight_on_block_diagonal_affinity():
    # every token stays inside expert blocks {0,1} / {2,3}: a placement keeps everything, cost 0,
    # and the bound must then be 0; with all affinity across blocks it must be positive
    ids = np.array([[[0], [1], [2], [3]], [[1], [0], [3], [2]]], np.uint8)
    trace = Trace(expert_ids=ids, num_experts=4)
    # tight (0 = the optimum) with and without a deadline
    for deadline in (None, soon()):
        assert bound(trace, Topology.uniform(2), Constraints(), deadline)[0] == pytest.approx(0.0)
        # 4 experts on 4 GPUs (S = 1): each token goes i -> pi(i); layer 1 can be permuted to
        # follow layer 0 exactly, so the optimum is still 0.
        assert bound(trace, Topology.uniform(4), Constraints(), deadline)[0] == pytest.approx(0.0)


@pytest.mark.slow     # the deadline bound's full effort: seconds a case
def test_bound_equals_optimum_when_every_token_fans_out_uniformly():
    # top-4 over 4 experts: every token touches every expert, so every placement on 2 GPUs moves
    # exactly half of each token's K x K pairs across GPUs: cost = T * (L-1) / 2.
    T = 10
    ids = np.tile(np.arange(4, dtype=np.uint8), (2, T, 1))
    trace = Trace(expert_ids=ids, num_experts=4)
    for deadline in (None, soon()):      # tight: the bound is the optimum in both modes
        assert bound(trace, Topology.uniform(2), Constraints(), deadline)[0] == pytest.approx(T / 2)


def test_one_gpu_bound_is_zero():
    trace = random_trace(0, 3, 4, 2, 20, affinity=0.6)
    assert bound(trace, Topology.uniform(1), Constraints())[0] == 0.0


def test_b_matching_against_enumeration():
    rng = np.random.default_rng(3)
    for _ in range(20):
        W = rng.integers(0, 10, size=(3, 3))
        cap, edges = int(rng.integers(1, 4)), int(rng.integers(1, 10))
        best = 0
        cells = [(i, j) for i in range(3) for j in range(3)]
        for mask in range(1 << 9):
            chosen = [cells[b] for b in range(9) if mask >> b & 1]
            if len(chosen) > edges:
                continue
            rows = np.bincount([c[0] for c in chosen], minlength=3)
            cols = np.bincount([c[1] for c in chosen], minlength=3)
            if rows.max(initial=0) <= cap and cols.max(initial=0) <= cap:
                best = max(best, sum(W[c] for c in chosen))
        assert b_matching_max(W, cap, edges) == best


def test_bound_needs_transitions():
    prof = Profile(load=np.ones((2, 4), np.int64), num_tokens=2, top_k=2)
    with pytest.raises(PlacerError, match="transition"):
        lower_bound(prof, Topology.uniform(2), Constraints())


def test_bound_is_fast_at_deepseek_size():
    # 58 x 256 experts, 64 GPUs in 8 nodes: a dense random transition tensor (worst case for the
    # flow), checked for finishing at all here; its time is recorded by benchmarks/bench_exact.py
    rng = np.random.default_rng(0)
    L, E = 6, 256
    trans = rng.integers(0, 50, size=(L - 1, E, E))
    prof = Profile(load=trans.sum(axis=2)[[0, *range(L - 1)]], num_tokens=int(trans[0].sum()), top_k=1, trans=trans)
    b, _ = lower_bound(prof, Topology.uniform(64, 8), Constraints())
    assert 0 < b <= float(trans.sum()) * 18
