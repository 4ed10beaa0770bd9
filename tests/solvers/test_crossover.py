"""The chain crossover (:mod:`placer.solvers.search.crossover`) against truths: the brute-force
optimum when every split is a candidate, the one objective of :mod:`placer.cost.objectives` for
the cost it reports, the load cap, and the partition solver that uses it."""

from __future__ import annotations

import time

import numpy as np
import pytest

from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import Trace
from placer.solvers.base import Constraints
from placer.solvers.base import solve as run_solver
from placer.solvers.search import crossover as chain
from placer.solvers.search.problem import build_problem, layer_loads, objective
from support.brute import assignments, optimum
from support.generate import random_trace

LATER = 1e18        # a deadline that never comes


def _problem(trace, topo, **cons):
    return build_problem(Profile.from_trace(trace), topo, Constraints(cost="coherent", **cons))


@pytest.mark.parametrize("L,E,G,seed", [(3, 4, 2, 0), (4, 6, 3, 1), (3, 6, 2, 2), (5, 4, 2, 3)])
def test_every_split_a_candidate_gives_the_brute_force_optimum(L, E, G, seed):
    """One node: a pair's cost under its best naming depends on the two splits only, so over
    every split of every layer the programme is the exact optimum (found by enumeration)."""
    trace = random_trace(seed, L, E, 2, 300, affinity=0.6)
    topo = Topology.uniform(G)
    prob = _problem(trace, topo)
    layouts = [np.tile(a, (L, 1)) for a in assignments(E, G)]
    gpu, cost, _ = chain.crossover(prob, layouts, LATER)
    assert cost == pytest.approx(optimum(trace, topo), rel=1e-12)
    assert objective(prob, gpu) == pytest.approx(cost, rel=1e-12)
    assert (np.bincount(gpu.ravel() + G * np.repeat(np.arange(L), E), minlength=L * G) == E // G).all()


@pytest.mark.parametrize("gpn", [None, 2])
def test_the_result_costs_what_the_objective_says_and_beats_its_inputs_on_one_node(gpn):
    """Random layouts of a planted trace: the reported cost is the layout's objective; on one node
    it is at most every input's (each input is one path of the programme); with nodes the naming
    is a heuristic and only the exact cost is promised."""
    rng = np.random.default_rng(4)
    L, E, G = 6, 16, 4
    trace = random_trace(5, L, E, 2, 2000, affinity=0.8)
    topo = Topology.uniform(G, gpn) if gpn else Topology.uniform(G)
    prob = _problem(trace, topo)
    layouts = [np.stack([rng.permutation(np.repeat(np.arange(G), E // G)) for _ in range(L)]) for _ in range(5)]
    gpu, cost, count = chain.crossover(prob, layouts, LATER)
    assert objective(prob, gpu) == pytest.approx(cost, rel=1e-12)
    assert count >= L        # at least one split a layer
    if gpn is None:
        assert cost <= min(objective(prob, g) for g in layouts) * (1 + 1e-12)


def test_every_layer_of_the_result_meets_the_load_cap():
    """A hand-made trace where following the flows piles load on one GPU: layer-1 experts 0 and
    1 get most of their tokens from layer-0 experts 0 and 1, which share GPU 0. The forward greedy
    chain puts both there (loads 300 / 100, max/mean 1.5); under a cap of 1.2 that layer keeps
    its source's split, and the result meets the cap on every layer."""
    flows = [(0, 0, 100), (1, 1, 100), (2, 0, 50), (2, 2, 50), (3, 1, 50), (3, 3, 50)]
    ids = np.concatenate([np.tile([[a], [b]], (1, n)) for a, b, n in flows], axis=1)[:, :, None]
    trace = Trace(expert_ids=ids.astype(np.int64), num_experts=4)
    topo = Topology.uniform(2)
    layout = np.array([[0, 0, 1, 1], [0, 1, 0, 1]])       # loads 200 / 200 on both layers
    free = _problem(trace, topo)
    greedy = chain.greedy_chain(free, layout, True, LATER)
    assert sorted(layer_loads(free, 1, greedy[1])) == [100, 300]
    capped = _problem(trace, topo, max_imbalance=1.2)
    assert np.array_equal(chain.greedy_chain(capped, layout, True, LATER)[1], layout[1])
    out, cost, _ = chain.crossover(capped, [layout], LATER)
    assert all(layer_loads(capped, l, out[l]).max() <= capped.cap[l] for l in range(2))
    # the backward chain moves layer 0 after layer 1 (experts 0, 2 | 1, 3 on both layers): no
    # token changes GPU, and both layers stay at 200 / 200
    assert cost == objective(capped, out) == 0.0


def test_a_past_deadline_returns_nothing():
    trace = random_trace(8, 4, 8, 2, 500, affinity=0.5)
    prob = _problem(trace, Topology.uniform(2))
    layouts = [np.tile(np.repeat(np.arange(2), 4), (4, 1))]
    assert chain.crossover(prob, layouts, time.perf_counter() - 1) is None


def test_canonical_forgets_the_names_only():
    a = np.array([0, 0, 1, 1, 2, 2])
    assert chain.canonical(a) == chain.canonical(np.array([2, 2, 0, 0, 1, 1]))
    assert chain.canonical(a) != chain.canonical(np.array([0, 1, 0, 1, 2, 2]))


@pytest.mark.slow
def test_partition_runs_the_crossover_once_and_keeps_only_a_gain():
    """After half of its 50 kicks; the record says what it found, and the result is never above it."""
    trace = random_trace(9, 8, 32, 2, 6000, affinity=0.8)
    prof, topo = Profile.from_trace(trace), Topology.uniform(4)
    cons = Constraints(cost="coherent", time_limit=30, seed=0)
    res = run_solver("partition", prof, topo, cons, {"kicks": 50})
    cross = res.details["crossover"]
    assert cross["candidates"] >= 8 and res.details["kicks"] <= 50
    assert cross["kept"] == (cross["objective"] < cross["before"])
    assert res.objective <= min(cross["objective"], cross["before"]) * (1 + 1e-12)
    assert res.objective <= min(s["objective"] for s in res.details["starts"]) * (1 + 1e-12)
    off = run_solver("partition", prof, topo, cons, {"kicks": 50, "crossover": False})
    assert off.details["crossover"] is None
    # deterministic on a count of kicks
    again = run_solver("partition", prof, topo, cons, {"kicks": 50})
    assert np.array_equal(again.placement.phy2log, res.placement.phy2log)
    # with replicas and with the ep cost it does not apply
    rep = run_solver("partition", prof, topo, Constraints(cost="coherent", time_limit=30, seed=0, replicas=4),
                     {"kicks": 10})
    assert rep.details["crossover"] is None
    ep = run_solver("partition", prof, topo, Constraints(cost="ep", time_limit=30, seed=0), {"kicks": 10})
    assert ep.details["crossover"] is None


@pytest.mark.slow
def test_partition_repeats_the_crossover_between_blocks_of_kicks():
    """60 kicks in blocks of 20: a crossover after each block (the first after min(20, 60 / 2)),
    the same layout on a rerun, never above the best start; ``crossover_every=0`` is the single
    crossover after half the kicks."""
    trace = random_trace(9, 8, 32, 2, 6000, affinity=0.8)
    prof, topo = Profile.from_trace(trace), Topology.uniform(4)
    cons = Constraints(cost="coherent", time_limit=60, seed=0)
    res = run_solver("partition", prof, topo, cons, {"kicks": 60, "crossover_every": 20, "patience": 1000})
    assert res.details["kicks"] == 60
    assert res.details["crossovers"] == 3
    assert 0 <= res.details["crossovers_kept"] <= 3
    assert res.objective <= min(s["objective"] for s in res.details["starts"]) * (1 + 1e-12)
    last = res.details["crossover"]
    assert res.objective <= min(last["objective"], last["before"]) * (1 + 1e-12)
    again = run_solver("partition", prof, topo, cons, {"kicks": 60, "crossover_every": 20, "patience": 1000})
    assert np.array_equal(again.placement.phy2log, res.placement.phy2log)
    # a first block of half the kicks when that is shorter: 60 kicks, every 50 -> blocks 30, 30
    half = run_solver("partition", prof, topo, cons, {"kicks": 60, "crossover_every": 50, "patience": 1000})
    assert half.details["crossovers"] == 2
    once = run_solver("partition", prof, topo, cons, {"kicks": 60, "crossover_every": 0, "patience": 1000})
    assert once.details["crossovers"] == 1
