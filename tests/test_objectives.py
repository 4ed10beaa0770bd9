"""One copy of every objective: the objectives module, the cost reports and every solver agree,
and all of them equal the definitions counted token by token."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exact_refs import random_trace, token_coherent_cost
from placer.cost import coherent_cost, load_cost
from placer.cost.objectives import Objective, gpu_loads, imbalance, replica_gpus
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints, available_solvers, get_solver, solve


def random_placement(rng: np.random.Generator, L: int, E: int, G: int, gpn: int, replicas: int) -> Placement:
    """Every expert once per layer plus ``replicas`` extra copies, never two copies on one GPU."""
    S = (E + replicas) // G
    phy = np.empty((L, G * S), np.int64)
    for l in range(L):
        while True:
            extra = rng.choice(E, size=replicas, replace=replicas > E)
            slots = rng.permutation(np.concatenate([np.arange(E), extra]))
            if all(len(set(slots[g * S:(g + 1) * S])) == S for g in range(G)):
                phy[l] = slots
                break
    return Placement(phy, E, G, gpn).validate()


def token_pair_cut(trace, placement: Placement, hop: np.ndarray) -> float:
    """The ep-pairwise objective by definition: per token and layer, every unordered pair of its
    picks, at the hop of the nearest replica pair."""
    ids = np.asarray(trace.expert_ids).astype(np.int64)
    held = placement.expert_gpus
    total = 0.0
    for l in range(ids.shape[0]):
        for t in range(ids.shape[1]):
            k = ids[l, t]
            for a in range(len(k)):
                for b in range(a + 1, len(k)):
                    ga, gb = np.flatnonzero(held[l, k[a]]), np.flatnonzero(held[l, k[b]])
                    total += hop[np.ix_(ga, gb)].min()
    return float(total)


def token_loads(trace, placement: Placement) -> np.ndarray:
    """``[L, G]`` picks per GPU, a replicated expert's picks split evenly, token by token."""
    ids = np.asarray(trace.expert_ids).astype(np.int64)
    held = placement.expert_gpus
    out = np.zeros((ids.shape[0], placement.num_gpus))
    for l in range(ids.shape[0]):
        for e in ids[l].ravel():
            gpus = np.flatnonzero(held[l, e])
            out[l, gpus] += 1.0 / len(gpus)
    return out


@st.composite
def instances(draw):
    G = draw(st.sampled_from([1, 2, 4]))
    gpn = draw(st.sampled_from([g for g in (1, 2, 4) if g <= G and G % g == 0]))
    S0 = draw(st.integers(1, 3))
    E = G * S0
    replicas = draw(st.integers(0, min(E * (G - 1), 2 * G))) if G > 1 else 0
    replicas -= (E + replicas) % G
    L = draw(st.integers(1, 3))
    K = draw(st.integers(1, min(3, E)))
    seed = draw(st.integers(0, 10 ** 6))
    rng = np.random.default_rng(seed)
    trace = random_trace(rng, L, E, K, T=draw(st.integers(1, 25)), affinity=0.5)
    topo = Topology.uniform(G, gpn, inter_node_cost=float(draw(st.sampled_from([1.0, 3.5]))))
    return trace, random_placement(rng, L, E, G, gpn, max(replicas, 0)), topo


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_objectives_equal_their_definitions_and_the_cost_reports(inst):
    trace, pl, topo = inst
    prof = Profile.from_trace(trace)
    coherent = Objective("coherent").of_placement(prof, topo, pl)
    assert coherent == pytest.approx(token_coherent_cost(trace, pl.expert_gpus, topo.hop), rel=1e-9, abs=1e-9)
    assert coherent == pytest.approx(coherent_cost(trace, pl, topo).total, rel=1e-9, abs=1e-9)
    assert coherent == pytest.approx(coherent_cost(prof, pl, topo).total, rel=1e-9, abs=1e-9)
    pairwise = Objective("ep").of_placement(prof, topo, pl)
    assert pairwise == pytest.approx(token_pair_cut(trace, pl, topo.hop), rel=1e-9, abs=1e-9)
    rg = replica_gpus(pl.phy2log, pl.num_experts, pl.slots_per_gpu)
    loads = gpu_loads(prof.load, rg, topo.num_gpus)
    np.testing.assert_allclose(loads, token_loads(trace, pl), atol=1e-9)
    np.testing.assert_allclose(imbalance(loads), load_cost(trace, pl).imbalance, rtol=1e-12)
    weighted = Objective("coherent", 0.25).of_placement(prof, topo, pl)
    assert weighted == pytest.approx(coherent + 0.25 * token_loads(trace, pl).max(axis=1).sum(), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("cost", ["coherent", "ep"])
def test_every_solver_reports_the_objective_of_its_placement(cost):
    """Whatever a solver computes internally, the objective it reports is that of the placement
    it returns (``placer.cost.objectives``), in the units its ``objective_model`` names."""
    trace = random_trace(np.random.default_rng(3), 3, 8, 2, T=120, affinity=0.6)
    prof = Profile.from_trace(trace)
    topo = Topology.uniform(4, 2, inter_node_cost=4.0)
    for name in available_solvers():
        spec = get_solver(name)
        if cost == "ep" and name in ("exflow", "moetuner"):
            continue        # they minimise the coherent cost only
        for replicas in ((0, 4) if spec.replicas else (0,)):
            res = solve(name, prof, topo, Constraints(cost=cost, replicas=replicas, time_limit=20))
            weight = res.params.get("load_weight", 0.0)
            objective = Objective("coherent" if name == "moetuner" else cost, weight)
            assert res.objective_model == objective.name, name
            assert res.objective == pytest.approx(objective.of_placement(prof, topo, res.placement), rel=1e-9), name
            if res.bound is not None:
                assert res.bound <= res.objective + 1e-9 * max(1.0, res.objective), name
