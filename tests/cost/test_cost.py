"""Cost models against plain per-token loops, hand-made answers and invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from placer.cost import (default_costs, CoverLimits, alltoall_time, coherent_cost, ep_cost, evaluate,
                         first_occurrence, load_cost, passes_over_trace)
from placer.cost.cover import _popcount_swar, popcount
from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import Trace
from support.generate import instances, random_placement, random_trace
from support.truths import coherent_by_token, ep_by_token, holding, home_gpus, loads_by_token

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ref_alltoall(B: np.ndarray, topo: Topology) -> float:
    """The all-to-all time of a ``[G, G]`` byte matrix: the slowest GPU's sends or receives,
    one latency plus bytes over bandwidth per peer."""
    G = B.shape[0]
    worst = 0.0
    for g in range(G):
        send = sum(topo.latency_s + B[g, d] / topo.bandwidth[g, d] for d in range(G) if d != g and B[g, d] > 0)
        recv = sum(topo.latency_s + B[s, g] / topo.bandwidth[s, g] for s in range(G) if s != g and B[s, g] > 0)
        worst = max(worst, send, recv)
    return worst


# -------------------------------------------------------------- vs references
@SETTINGS
@given(instances())
def test_coherent_matches_per_token_loop(inst):
    trace, pl, topo = inst
    per_layer, pairs = coherent_by_token(trace, holding(pl), topo.hop)
    layer_traffic = pairs / trace.top_k**2
    res = coherent_cost(trace, pl, topo, chunk_tokens=7, hidden_size=3, dtype_bytes=2)
    np.testing.assert_allclose(res.per_layer, per_layer, atol=1e-9)
    np.testing.assert_allclose(res.traffic, layer_traffic.sum(axis=0), atol=1e-9)
    times = [ref_alltoall(t * 6.0, topo) for t in layer_traffic]
    np.testing.assert_allclose(res.per_layer_time_s, times, rtol=1e-9)
    assert res.total == pytest.approx(per_layer.sum(), abs=1e-9)
    L, T = trace.num_layers, trace.num_tokens
    assert res.per_transition == pytest.approx(per_layer.sum() / (T * (L - 1)) if L > 1 else 0.0, abs=1e-12)
    assert (topo.hop * res.traffic).sum() == pytest.approx(res.total, abs=1e-9)


@SETTINGS
@given(instances())
def test_ep_matches_brute_force_cover(inst):
    trace, pl, topo = inst
    G = topo.num_gpus
    traffic, spanned, served = ep_by_token(trace, holding(pl), topo.hop, home_gpus(trace, G))
    res = ep_cost(trace, pl, topo, hidden_size=16, dtype_bytes=2, chunk_tokens=5)
    np.testing.assert_array_equal(res.per_layer, traffic.sum(axis=(1, 2)))
    np.testing.assert_array_equal(res.traffic, traffic.sum(axis=0))
    assert res.copies == traffic.sum()
    assert res.bytes == 2 * traffic.sum() * 16 * 2
    inter = sum(traffic[:, a, b].sum() for a in range(G) for b in range(G) if a // topo.gpus_per_node != b // topo.gpus_per_node)
    assert res.inter_node_share == pytest.approx(inter / traffic.sum() if traffic.sum() else 0.0)
    assert res.mean_gpus_spanned == pytest.approx(spanned / served if served else 0.0)
    times = [2 * ref_alltoall(traffic[l] * 32.0, topo) for l in range(trace.num_layers)]
    np.testing.assert_allclose(res.per_layer_time_s, times, rtol=1e-12)
    assert res.time_s == pytest.approx(sum(times), rel=1e-12)


@SETTINGS
@given(instances(max_replicas=12, k_max=4, allow_dropped=False))
def test_ep_every_cover_search_path_agrees_with_brute_force(inst):
    """Bit-mask search (G <= 64), renumbered bit masks (any G), generic search, and the
    per-token fallbacks."""
    trace, pl, topo = inst
    traffic, spanned, served = ep_by_token(trace, holding(pl), topo.hop, home_gpus(trace, topo.num_gpus))
    for bitmask, combos, local in ((64, 4096, 64), (64, 0, 64), (0, 4096, 64), (0, 0, 64), (0, 4096, 0), (0, 0, 0)):
        limits = CoverLimits(max_vector_combos=combos, bitmask_max_gpus=bitmask, local_max_candidates=local)
        res = ep_cost(trace, pl, topo, limits=limits)
        np.testing.assert_array_equal(res.traffic, traffic.sum(axis=0))
        assert res.mean_gpus_spanned == pytest.approx(spanned / served)


def test_cover_limits_reject_what_a_uint64_mask_cannot_hold():
    with pytest.raises(PlacerError, match="bitmask_max_gpus must be at most 64"):
        CoverLimits(bitmask_max_gpus=65)
    with pytest.raises(PlacerError, match="max_vector_combos must be >= 0"):
        CoverLimits(max_vector_combos=-1)


@SETTINGS
@given(st.integers(1, 130), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_first_occurrence_both_ways(G, K, seed):
    g = np.random.default_rng(seed).integers(0, G, (50, K))
    ref = np.array([[g[n, k] not in g[n, :k] for k in range(K)] for n in range(50)])
    np.testing.assert_array_equal(first_occurrence(g, G), ref)
    np.testing.assert_array_equal(first_occurrence(g, None), ref)


@SETTINGS
@given(instances())
def test_load_matches_per_token_loop(inst):
    trace, pl, topo = inst
    ref = loads_by_token(trace, holding(pl))
    res = load_cost(trace, pl)
    np.testing.assert_allclose(res.gpu_load, ref, atol=1e-9)
    for l in range(trace.num_layers):
        mean = ref[l].mean()
        assert res.imbalance[l] == pytest.approx(ref[l].max() / mean if mean > 0 else 1.0)
    assert res.mean_imbalance == pytest.approx(res.imbalance.mean())
    assert res.max_imbalance == pytest.approx(res.imbalance.max())


# ------------------------------------------------------------------ invariants
@SETTINGS
@given(instances(), st.integers(0, 2**31 - 1))
def test_relabelling_gpus_changes_no_cost(inst, seed):
    """Permute GPUs within nodes and nodes among themselves (the topology's symmetries)."""
    trace, pl, topo = inst
    rng = np.random.default_rng(seed)
    G, gpn, S = topo.num_gpus, topo.gpus_per_node, pl.slots_per_gpu
    nodes = rng.permutation(G // gpn)
    perm = np.concatenate([n * gpn + rng.permutation(gpn) for n in nodes])   # new GPU i = old perm[i]
    new_of_old = np.argsort(perm)
    pl2 = Placement(pl.phy2log.reshape(pl.num_layers, G, S)[:, perm].reshape(pl.num_layers, -1),
                    pl.num_experts, G, gpn).validate()
    home = home_gpus(trace, G)
    a = ep_cost(trace, pl, topo, home=home, hidden_size=8)
    b = ep_cost(trace, pl2, topo, home=new_of_old[home], hidden_size=8)
    assert (a.copies, a.bytes) == (b.copies, b.bytes)
    np.testing.assert_array_equal(a.per_layer, b.per_layer)
    c1, c2 = coherent_cost(trace, pl, topo), coherent_cost(trace, pl2, topo)
    assert c1.total == pytest.approx(c2.total)
    np.testing.assert_allclose(c1.per_layer, c2.per_layer, atol=1e-9)
    l1, l2 = load_cost(trace, pl), load_cost(trace, pl2)
    np.testing.assert_allclose(l1.gpu_load[:, perm], l2.gpu_load, atol=1e-9)
    np.testing.assert_allclose(l1.imbalance, l2.imbalance)
    if pl.num_replicas == 0:   # with replicas, equal-cost tie-breaks may pick other GPUs
        # (whether a pick is served at home or on a GPU the token visits anyway, and so how many
        # GPUs it spans and which of its copies cross nodes, is such a tie)
        assert a.inter_node_share == pytest.approx(b.inter_node_share)
        assert a.mean_gpus_spanned == pytest.approx(b.mean_gpus_spanned)
        np.testing.assert_array_equal(a.traffic[np.ix_(perm, perm)], b.traffic)
        assert a.time_s == pytest.approx(b.time_s)
        np.testing.assert_allclose(c1.traffic[np.ix_(perm, perm)], c2.traffic, atol=1e-9)


@SETTINGS
@given(instances(), st.integers(1, 3))
def test_one_gpu_costs_nothing(inst, S):
    trace, _, _ = inst
    E = trace.num_experts
    pl = Placement(np.tile(np.arange(E), (trace.num_layers, 1)), E, 1).validate()
    topo = Topology.uniform(1)
    assert coherent_cost(trace, pl, topo).total == 0
    res = ep_cost(trace, pl, topo, hidden_size=4)
    assert res.copies == 0 and res.bytes == 0 and res.time_s == 0
    assert np.all(load_cost(trace, pl).imbalance == 1.0)


@SETTINGS
@given(instances(max_replicas=0, k_max=1))
def test_top1_single_node_coherent_is_share_of_gpu_changes(inst):
    trace, pl, _ = inst
    topo = Topology.uniform(pl.num_gpus)          # one node: hops are 0 / 1
    gpu = pl.gpu_of
    L, T, _ = trace.expert_ids.shape
    ids = trace.expert_ids[:, :, 0].astype(int)
    kept = np.ones((L, T), bool) if trace.dropped is None else ~trace.dropped
    changes = sum(gpu[l, ids[l, t]] != gpu[l + 1, ids[l + 1, t]]
                  for t in range(T) for l in range(L - 1) if kept[l, t] and kept[l + 1, t])
    res = coherent_cost(trace, pl, topo)
    assert res.per_transition == pytest.approx(changes / (T * (L - 1)) if L > 1 else 0.0)


@SETTINGS
@given(instances())
def test_profile_and_trace_give_the_same_coherent_and_load_cost(inst):
    trace, pl, topo = inst
    prof = Profile.from_trace(trace)
    a, b = coherent_cost(trace, pl, topo), coherent_cost(prof, pl, topo)
    assert a.total == pytest.approx(b.total)
    np.testing.assert_allclose(a.traffic, b.traffic)
    np.testing.assert_allclose(load_cost(trace, pl).gpu_load, load_cost(prof, pl).gpu_load)


@SETTINGS
@given(instances())
def test_chunk_size_does_not_change_results(inst):
    trace, pl, topo = inst
    a = evaluate(trace, pl, topo, hidden_size=8, chunk_tokens=1)
    b = evaluate(trace, pl, topo, hidden_size=8, chunk_tokens=1000)
    assert a == b


# ---------------------------------------------------------------- hand-made
def test_ep_hand_example_with_replicas():
    """Home GPU 0; replicated experts are served at home or on a GPU the token visits anyway."""
    phy = np.array([[0, 3, 1, 4, 1, 2, 5, 0]])   # GPU0 {0,3} GPU1 {1,4} GPU2 {1,2} GPU3 {5,0}
    pl = Placement(phy, 6, 4, 4).validate()
    trace = Trace(np.array([[[1, 2], [0, 5], [3, 4]]], np.uint8), 6)
    topo = Topology.uniform(4)
    res = ep_cost(trace, pl, topo, home=np.zeros(3, np.int64))
    # token 0 -> {2}; token 1: expert 0 at home, 5 on GPU 3 -> {3}; token 2: 3 home, 4 -> {1}
    expected = np.zeros((4, 4), np.int64)
    expected[0, 2] = expected[0, 3] = expected[0, 1] = 1
    np.testing.assert_array_equal(res.traffic, expected)
    assert res.copies == 3
    assert res.mean_gpus_spanned == pytest.approx((1 + 2 + 2) / 3)


def test_alltoall_time_hand_computed():
    topo = Topology.uniform(2, intra_bandwidth=1e9, latency_s=5e-6)
    B = np.array([[0.0, 1e6], [2e6, 0.0]])
    assert alltoall_time(B, topo) == pytest.approx(5e-6 + 2e6 / 1e9)


@SETTINGS
@given(instances(), st.integers(1, 3))
def test_data_with_fewer_experts_than_the_placement(inst, extra):
    """A trace that knows fewer experts (never picked the rest) scores like one that knows all."""
    trace, pl, topo = inst
    E = pl.num_experts + extra
    slots = pl.phy2log.reshape(pl.num_layers, pl.num_gpus, -1)   # the new experts go after GPU 0's slots
    phy = np.concatenate([slots[:, 0], np.tile(np.arange(pl.num_experts, E), (pl.num_layers, 1)),
                          slots[:, 1:].reshape(pl.num_layers, -1)], axis=1)
    if (pl.num_slots + extra) % pl.num_gpus:
        return
    big = Placement(phy, E, pl.num_gpus, pl.gpus_per_node)
    wide = Trace(trace.expert_ids, E, seq_offsets=trace.seq_offsets, dropped=trace.dropped)
    for data_a, data_b in ((trace, wide), (Profile.from_trace(trace), Profile.from_trace(wide))):
        assert coherent_cost(data_a, big, topo).total == pytest.approx(coherent_cost(data_b, big, topo).total)
        np.testing.assert_allclose(load_cost(data_a, big).gpu_load, load_cost(data_b, big).gpu_load)


def test_mismatched_inputs_are_user_errors():
    rng = np.random.default_rng(0)
    trace = random_trace(rng, 2, 8, 2, 10)
    pl = random_placement(rng, 3, 8, 2)
    with pytest.raises(PlacerError, match="3 layers"):
        coherent_cost(trace, pl, Topology.uniform(2))
    pl = random_placement(rng, 2, 8, 2)
    with pytest.raises(PlacerError, match="--gpus 2"):
        ep_cost(trace, pl, Topology.uniform(4))
    with pytest.raises(PlacerError, match="per-token trace"):
        ep_cost(Profile.from_trace(trace), pl, Topology.uniform(2))
    with pytest.raises(PlacerError, match="unknown cost model"):
        evaluate(trace, pl, Topology.uniform(2), costs=("speed",))


@SETTINGS
@given(instances())
def test_progress_counts_every_token_of_every_pass(inst):
    trace, pl, topo = inst
    seen = []
    evaluate(trace, pl, topo, chunk_tokens=4, progress=seen.append)
    assert sum(seen) == trace.num_tokens * passes_over_trace(trace, default_costs())
    prof_seen = []
    evaluate(Profile.from_trace(trace), pl, topo, progress=prof_seen.append)
    assert prof_seen == []


@SETTINGS
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=20))
def test_popcount_fallback(values):
    x = np.array(values, np.uint64)
    np.testing.assert_array_equal(_popcount_swar(x), [bin(v).count("1") for v in values])
    np.testing.assert_array_equal(popcount(x), [bin(v).count("1") for v in values])
