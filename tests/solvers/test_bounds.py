"""The lower bound is never beaten by any placement (brute force over all of them)."""

from __future__ import annotations

import itertools

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
from support.truths import coherent_by_token


def bound(trace, topo, constraints):
    return lower_bound(Profile.from_trace(trace), topo, constraints)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), L=st.integers(2, 3), K=st.integers(1, 2),
       shape=st.sampled_from([(4, 2, 2), (4, 4, 2), (6, 2, 2), (4, 4, 4)]), affinity=st.floats(0, 1))
def test_coherent_bound_never_beaten(seed, L, K, shape, affinity):
    E, G, gpn = shape
    trace = random_trace(seed, L, E, K, 30, affinity=affinity)
    topo = Topology.uniform(G, gpn, inter_node_cost=3.0)
    value, name = bound(trace, topo, Constraints())
    assert name
    assert value <= optimum(trace, topo) + 1e-9
    assert value >= 0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), K=st.integers(1, 2), affinity=st.floats(0, 1))
def test_coherent_bound_with_replicas_never_beaten(seed, K, affinity):
    # 3 experts + 1 replica = 4 slots on 2 GPUs (S = 2): every holding of every layer
    E, G, R = 3, 2, 1
    trace = random_trace(seed, 2, E, K, 20, affinity=affinity)
    topo = Topology.uniform(G)
    value, _ = bound(trace, topo, Constraints(replicas=R))
    sets = replica_holdings(E, G, 2)
    best = min(coherent_by_token(trace, np.stack(pair), topo.hop)[0].sum() for pair in itertools.product(sets, sets))
    assert value <= best + 1e-9


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), K=st.integers(2, 3), shape=st.sampled_from([(4, 2, 2), (6, 2, 2), (6, 3, 3), (4, 4, 2)]))
def test_ep_bound_never_beaten(seed, K, shape):
    E, G, gpn = shape
    trace = random_trace(seed, 2, E, K, 30, affinity=0.3)
    topo = Topology.uniform(G, gpn, inter_node_cost=2.5)
    value, _ = bound(trace, topo, Constraints(cost="ep"))
    assert value <= optimum(trace, topo, cost="ep") + 1e-9


def test_bound_is_tight_on_block_diagonal_affinity():
    # every token stays inside expert blocks {0,1} / {2,3}: a placement keeps everything, cost 0,
    # and the bound must then be 0; with all affinity across blocks it must be positive
    ids = np.array([[[0], [1], [2], [3]], [[1], [0], [3], [2]]], np.uint8)
    trace = Trace(expert_ids=ids, num_experts=4)
    assert bound(trace, Topology.uniform(2), Constraints())[0] == pytest.approx(0.0)
    # 4 experts on 4 GPUs (S = 1): every transition that changes expert identity... each token
    # goes i -> pi(i); one expert per GPU, so a token stays only if i and pi(i) share the GPU:
    # layer 1 can be permuted to follow layer 0 exactly, so the optimum is still 0.
    assert bound(trace, Topology.uniform(4), Constraints())[0] == pytest.approx(0.0)


def test_bound_equals_optimum_when_every_token_fans_out_uniformly():
    # top-4 over 4 experts: every token touches every expert, so every placement on 2 GPUs moves
    # exactly half of each token's K x K pairs across GPUs: cost = T * (L-1) / 2.
    T = 10
    ids = np.tile(np.arange(4, dtype=np.uint8), (2, T, 1))
    trace = Trace(expert_ids=ids, num_experts=4)
    assert bound(trace, Topology.uniform(2), Constraints())[0] == pytest.approx(T / 2)


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
