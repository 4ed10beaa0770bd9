"""Exact models, and the local search behind their warm start (:mod:`placer.solvers.search`),
against brute force over every placement of tiny instances, for every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.model.trace import Trace
from placer.solvers.base import Constraints, solve
from placer.solvers.exact.milp import LinearModel, solve_model
from placer.solvers.layer_descent import descent_start
from placer.solvers.search.problem import build_problem, objective
from placer.solvers.search.refine import assign_layer, refine
from placer.model.topology import Topology
from support.brute import assignments, optimum
from support.generate import random_trace
from support.truths import coherent_by_token, holding, loads_by_token, objective_by_token, pairwise_by_token

BACKENDS = ["cpsat", "highs", "cbc"]


TOPOS = {"2gpu": lambda: Topology.uniform(2), "2x2": lambda: Topology.uniform(4, 2, inter_node_cost=3.0)}
GENERAL_BW = np.array([[0, 4, 2, 1], [4, 0, 1, 2], [2, 1, 0, 4], [1, 2, 4, 0]], float) * 1e9   # no node structure


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("topo_name", sorted(TOPOS))
@pytest.mark.parametrize("solver", ["exflow", "joint"])
def test_exact_equals_brute_force(backend, topo_name, solver):
    topo = TOPOS[topo_name]()
    for seed in range(2):
        rng = np.random.default_rng(100 + seed)
        L = 3 if topo.num_gpus == 2 else 2  # 24^L placements on 4 GPUs
        trace = random_trace(rng, L, 4, 2, 40, affinity=0.5)
        res = solve(solver, Profile.from_trace(trace), topo, Constraints(backend=backend, time_limit=30),
                    {"warm_start": seed == 0, "formulation": "compact"})
        best = optimum(trace, topo)
        assert res.status == "optimal"
        assert objective_by_token(trace, holding(res.placement), topo.hop) == pytest.approx(best)
        assert res.objective == pytest.approx(best)
        assert res.bound <= best + 1e-9


@pytest.mark.parametrize("backend", BACKENDS)
def test_naive_formulation_equals_brute_force(backend):
    topo = Topology.uniform(4, 2, inter_node_cost=2.0)
    trace = random_trace(7, 2, 4, 2, 40, affinity=0.6)
    res = solve("exflow", Profile.from_trace(trace), topo, Constraints(backend=backend), {"formulation": "naive"})
    assert res.status == "optimal"
    assert objective_by_token(trace, holding(res.placement), topo.hop) == pytest.approx(optimum(trace, topo))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), backend=st.sampled_from(["cpsat", "highs"]), K=st.integers(2, 3),
       shape=st.sampled_from([(4, 2, 2), (6, 2, 2), (4, 4, 2), (6, 3, 3)]))
def test_joint_ep_equals_brute_force(seed, backend, K, shape):
    E, G, gpn = shape
    topo = Topology.uniform(G, gpn, inter_node_cost=2.0)
    trace = random_trace(seed, 2, E, K, 30, affinity=0.2)
    res = solve("joint", Profile.from_trace(trace), topo, Constraints(cost="ep", backend=backend),
                {"formulation": "compact"})
    best = optimum(trace, topo, cost="ep")
    assert res.status == "optimal"
    assert objective_by_token(trace, holding(res.placement), topo.hop, cost="ep") == pytest.approx(best)
    assert res.bound <= best + 1e-9


@pytest.mark.parametrize("backend", BACKENDS)
def test_joint_with_load_weight_and_imbalance_equals_brute_force(backend):
    rng = np.random.default_rng(11)
    # skewed loads: expert 0 is hot, so balance and locality pull in different directions
    trace = random_trace(rng, 3, 4, 1, 60, affinity=0.8)
    ids = np.asarray(trace.expert_ids).copy()
    ids[:, :15, 0] = 0
    trace.expert_ids = ids
    topo = Topology.uniform(2)
    prof = Profile.from_trace(trace)
    for opts, imb in (({"load_weight": 0.5, "formulation": "compact"}, None), ({"formulation": "compact"}, 1.2),
                      ({"formulation": "compact"}, 1.6)):
        best = optimum(trace, topo, load_weight=opts.get("load_weight", 0.0), max_imbalance=imb)
        cons = Constraints(backend=backend, max_imbalance=imb)
        if not np.isfinite(best):  # no placement meets the limit: the solver must say so
            with pytest.raises(PlacerError, match="max-imbalance"):
                solve("joint", prof, topo, cons, opts)
            continue
        res = solve("joint", prof, topo, cons, opts)
        assert res.status == "optimal"
        weight = opts.get("load_weight", 0.0)
        assert objective_by_token(trace, holding(res.placement), topo.hop, load_weight=weight) == pytest.approx(best)
        if imb is not None:
            loads = loads_by_token(trace, holding(res.placement))
            assert np.all(loads.max(axis=1) <= imb * loads.mean(axis=1) + 1e-9)


def test_infeasible_imbalance_names_the_floor():
    trace = random_trace(1, 2, 4, 1, 40, affinity=0.6)
    ids = np.asarray(trace.expert_ids).copy()
    ids[0, :30, 0] = 2  # expert 2 takes 30 of 40 tokens in layer 0: floor = 30 * 2 / 40 = 1.5
    ids[0, 30:, 0] = np.resize([0, 1, 3], 10)
    trace.expert_ids = ids
    with pytest.raises(PlacerError, match=r"1\.5000"):
        solve("joint", Profile.from_trace(trace), Topology.uniform(2), Constraints(max_imbalance=1.2))


def test_moetuner_stages_against_brute_force():
    trace = random_trace(5, 3, 6, 2, 50, affinity=0.6)
    prof = Profile.from_trace(trace)
    topo = Topology.uniform(2)
    res = solve("moetuner", prof, topo, Constraints(backend="cpsat"))
    g = res.placement.gpu_of
    loads = loads_by_token(trace, holding(g, 2))
    # stage 1 is exact: every layer's max GPU load is the smallest any balanced split reaches
    for l in range(3):
        best = min(np.bincount(a, weights=prof.load[l], minlength=2).max() for a in assignments(6, 2))
        assert loads[l].max() == best
    assert res.objective == pytest.approx(objective_by_token(trace, holding(res.placement), topo.hop))
    assert res.objective >= optimum(trace, topo) - 1e-9
    assert res.bound <= res.objective


def test_layer_descent_is_optimal_on_a_chain_with_planted_blocks():
    # tokens never leave their block {0,1}, {2,3} (relabelled per layer): cost 0 is reachable
    rng = np.random.default_rng(2)
    L, E, T = 4, 4, 200
    perms = [rng.permutation(E) for _ in range(L)]
    base = rng.integers(0, 2, size=T) * 2 + rng.integers(0, 2, size=T)
    ids = np.stack([perms[l][(base + (l % 2)) % 2 + (base // 2) * 2] for l in range(L)])[:, :, None]
    trace = Trace(expert_ids=ids.astype(np.uint8), num_experts=E)
    prof = Profile.from_trace(trace)
    g, name = descent_start(prof, Topology.uniform(2), Constraints(), None)
    assert name == "layer_descent"
    assert coherent_by_token(trace, holding(g, 2), Topology.uniform(2).hop)[0].sum() == pytest.approx(0.0)
    res = solve("exflow", prof, Topology.uniform(2), Constraints())
    assert res.objective == pytest.approx(0.0) and res.status == "optimal"


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_placement(backend):
    trace = random_trace(9, 2, 8, 2, 80, affinity=0.4)
    prof = Profile.from_trace(trace)
    topo = Topology.uniform(4)
    runs = [solve("exflow", prof, topo, Constraints(backend=backend, seed=3, time_limit=20), {"formulation": "compact"}) for _ in range(2)]
    assert np.array_equal(runs[0].placement.phy2log, runs[1].placement.phy2log)


def test_relabelling_gpus_changes_no_objective():
    from placer.cost.objectives import Objective
    from placer.solvers.exact.models import canonical_relabel
    trace = random_trace(4, 3, 8, 2, 50, affinity=0.6)
    prof = Profile.from_trace(trace)
    topo = Topology.uniform(4, 2, inter_node_cost=5.0)
    g = np.stack([np.random.default_rng(l).permutation(np.arange(8) // 2) for l in range(3)])
    r = canonical_relabel(g, 4, 2)
    coherent = Objective("coherent")
    assert coherent.value(prof, topo.hop, r) == pytest.approx(coherent.value(prof, topo.hop, g))
    assert r[0, 0] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_reports_infeasible_and_optimal(backend):
    m = LinearModel()
    x = m.add_vars(2)
    m.add_row(x, [1.0, 1.0], 3.0, 3.0)  # two binaries cannot sum to 3
    assert solve_model(m, backend, 5).status == "infeasible"
    m2 = LinearModel()
    y = m2.add_vars(3)
    m2.add_row(y, [1.0, 1.0, 1.0], 2.0, 2.0)
    m2.add_obj(y, [3.0, 1.0, 2.0])
    r = solve_model(m2, backend, 5)
    assert r.status == "optimal" and r.objective == pytest.approx(3.0) and r.bound == pytest.approx(3.0)


def test_missing_pulp_backend_names_the_package():
    m = LinearModel()
    m.add_vars(1)
    with pytest.raises(PlacerError, match="pip install gurobipy"):
        solve_model(m, "GUROBI", 1)


def test_replicas_and_general_topologies_are_refused():
    trace = random_trace(0, 2, 4, 1, 10, affinity=0.6)
    prof = Profile.from_trace(trace)
    with pytest.raises(PlacerError, match="replicas"):
        solve("exflow", prof, Topology.uniform(2), Constraints(replicas=2))
    with pytest.raises(PlacerError, match="partition"):  # the MILP needs two hop levels (the dp does not)
        solve("exflow", prof, Topology.from_bandwidth_matrix(GENERAL_BW), Constraints(), {"formulation": "compact"})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), K=st.integers(1, 2),
       topo_kind=st.sampled_from(["2gpu", "2x2", "general", "4gpu"]),
       cost=st.sampled_from(["coherent", "ep"]), imb=st.sampled_from([None, 1.3]),
       load_weight=st.sampled_from([0.0, 0.3]))
def test_chain_dp_equals_brute_force(seed, K, topo_kind, cost, imb, load_weight):
    topo = {"2gpu": lambda: Topology.uniform(2), "2x2": lambda: Topology.uniform(4, 2, inter_node_cost=3.0),
            "general": lambda: Topology.from_bandwidth_matrix(GENERAL_BW),
            "4gpu": lambda: Topology.uniform(4)}[topo_kind]()
    if cost == "ep" and K == 1:
        K = 2
    E = 4 if topo.num_gpus == 4 else 6
    trace = random_trace(seed, 2, E, K, 30, affinity=0.5)
    best = optimum(trace, topo, cost=cost, load_weight=load_weight, max_imbalance=imb)
    cons = Constraints(cost=cost, max_imbalance=imb)
    if not np.isfinite(best):
        with pytest.raises(PlacerError, match="max-imbalance"):
            solve("joint", Profile.from_trace(trace), topo, cons, {"load_weight": load_weight})
        return
    res = solve("joint", Profile.from_trace(trace), topo, cons, {"load_weight": load_weight})
    assert res.status == "optimal"
    value = objective_by_token(trace, holding(res.placement), topo.hop, cost=cost, load_weight=load_weight)
    assert value == pytest.approx(best)
    assert res.objective == pytest.approx(best)


def test_one_expert_per_gpu_chain_of_matchings_is_optimal():
    # S = 1 on one node: 4 experts on 4 GPUs, 3 layers, against all 24^3 placements
    trace = random_trace(8, 3, 4, 2, 40, affinity=0.5)
    topo = Topology.uniform(4)
    res = solve("exflow", Profile.from_trace(trace), topo, Constraints())
    assert "assignments" in res.details["formulation"]
    assert objective_by_token(trace, holding(res.placement), topo.hop) == pytest.approx(optimum(trace, topo))


# ------------------------------------------------------------------ the local search (warm start)
def test_assignment_move_is_the_best_layer_given_its_neighbours():
    # 6 experts on 3 GPUs: 90 balanced assignments of the middle layer, every one tried
    rng = np.random.default_rng(3)
    topo = Topology.uniform(3)
    for _ in range(3):
        trace = random_trace(rng, 3, 6, 2, 60, affinity=0.5)
        prob = build_problem(Profile.from_trace(trace), topo, Constraints())
        gpu = np.stack([rng.permutation(np.arange(6) // 2) for _ in range(3)])
        best = np.inf
        for a in assignments(6, 3):
            trial = gpu.copy()
            trial[1] = a
            best = min(best, objective(prob, trial))
        assign_layer(prob, gpu, 1)
        assert objective(prob, gpu) == pytest.approx(best, rel=1e-12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), K=st.integers(2, 3))
def test_swaps_reach_the_ep_optimum_when_one_swap_reaches_everything(seed, K):
    # 4 experts on 2 GPUs: one swap reaches every other split, and ep layers are independent
    from placer.solvers.baselines import first_copy_gpus
    trace = random_trace(seed, 2, 4, K, 30, affinity=0.2)
    topo = Topology.uniform(2)
    prob = build_problem(Profile.from_trace(trace), topo, Constraints(cost="ep"))
    g = first_copy_gpus("contiguous", 2, 4, 2)
    refine(prob, g, math.inf)
    assert pairwise_by_token(trace, holding(g, 2), topo.hop) == pytest.approx(optimum(trace, topo, cost="ep"))
    assert objective(prob, g) == pytest.approx(pairwise_by_token(trace, holding(g, 2), topo.hop))


def test_search_keeps_load_limits_and_never_worsens():
    from placer.solvers.packing import balanced_packing
    for seed in range(5):
        trace = random_trace(seed, 3, 8, 2, 80, affinity=0.5)
        prof = Profile.from_trace(trace)
        topo = Topology.uniform(4, 2, inter_node_cost=3.0)
        load = prof.load.astype(float)
        start = balanced_packing(load, 4)[0]
        cap = np.maximum(np.stack([np.bincount(start[l], weights=load[l], minlength=4) for l in range(3)]).max(1),
                         1.2 * load.sum(1) / 4)
        prob = build_problem(prof, topo, Constraints(), caps=cap)
        g = start.copy()
        refine(prob, g, math.inf)
        assert objective(prob, g) <= objective(prob, start) + 1e-9
        for l in range(3):
            assert np.all(np.bincount(g[l], minlength=4) == 2)
            assert np.bincount(g[l], weights=load[l], minlength=4).max() <= cap[l] + 1e-9


def test_warm_start_meets_the_caps_and_is_no_worse_than_its_starts():
    from placer.solvers.exact.models import gpu_load_caps
    from placer.solvers.layer_descent import start_points
    trace = random_trace(6, 4, 8, 2, 120, affinity=0.6)
    prof = Profile.from_trace(trace)
    topo = Topology.uniform(4, 2, inter_node_cost=3.0)
    for cost, imb in (("coherent", None), ("coherent", 1.3), ("ep", None), ("ep", 1.3)):
        cons = Constraints(cost=cost, max_imbalance=imb)
        caps = gpu_load_caps(prof, 4, imb)
        g, name = descent_start(prof, topo, cons, caps)
        assert name == "layer_descent"
        loads = loads_by_token(trace, holding(g, 4))
        assert np.all(np.bincount(g[0], minlength=4) == 2)
        if caps is not None:
            assert np.all(loads.max(axis=1) <= caps + 1e-9)
        prob = build_problem(prof, topo, cons, caps=caps)
        ok = [s for s in start_points(prof, 4, 0) if caps is None or
              np.all(loads_by_token(trace, holding(s, 4)).max(axis=1) <= caps + 1e-9)]
        assert all(objective(prob, g) <= objective(prob, s) + 1e-9 for s in ok)
        assert descent_start(prof, topo, cons, caps)[0].tobytes() == g.tobytes()
