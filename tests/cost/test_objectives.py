"""One copy of every objective: the objectives module, the cost reports and every solver agree,
and all of them equal the definitions counted token by token."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from placer.cost import coherent_cost, load_cost
from placer.cost.objectives import Objective, gpu_loads, imbalance, replica_gpus
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints, available_solvers, get_solver, solve
from support.generate import instances, random_trace
from support.truths import coherent_by_token, holding, loads_by_token, pairwise_by_token


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_objectives_equal_their_definitions_and_the_cost_reports(inst):
    trace, pl, topo = inst
    prof = Profile.from_trace(trace)
    held = holding(pl)
    coherent = Objective("coherent").of_placement(prof, topo, pl)
    assert coherent == pytest.approx(coherent_by_token(trace, held, topo.hop)[0].sum(), rel=1e-9, abs=1e-9)
    assert coherent == pytest.approx(coherent_cost(trace, pl, topo).total, rel=1e-9, abs=1e-9)
    assert coherent == pytest.approx(coherent_cost(prof, pl, topo).total, rel=1e-9, abs=1e-9)
    pairwise = Objective("ep").of_placement(prof, topo, pl)
    assert pairwise == pytest.approx(pairwise_by_token(trace, held, topo.hop), rel=1e-9, abs=1e-9)
    rg = replica_gpus(pl.phy2log, pl.num_experts, pl.slots_per_gpu)
    loads = gpu_loads(prof.load, rg, topo.num_gpus)
    np.testing.assert_allclose(loads, loads_by_token(trace, held), atol=1e-9)
    np.testing.assert_allclose(imbalance(loads), load_cost(trace, pl).imbalance, rtol=1e-12)
    weighted = Objective("coherent", 0.25).of_placement(prof, topo, pl)
    busiest = loads_by_token(trace, held).max(axis=1).sum()
    assert weighted == pytest.approx(coherent + 0.25 * busiest, rel=1e-9, abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("cost", ["coherent", "ep"])
def test_every_solver_reports_the_objective_of_its_placement(cost):
    """Whatever a solver computes internally, the objective it reports is that of the placement
    it returns (``placer.cost.objectives``), in the units its ``objective_model`` names."""
    trace = random_trace(3, 3, 8, 2, 120, affinity=0.6)
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
