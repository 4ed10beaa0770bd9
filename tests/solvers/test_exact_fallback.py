"""An exact solver that ends on its warm start says so in its notes (``solve`` prints them)."""

from __future__ import annotations

import numpy as np
import pytest

from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints, solve
from placer.solvers.exact import models
from placer.solvers.exact.milp import ModelResult
from support.generate import random_trace


def _instance():
    trace = random_trace(np.random.default_rng(3), L=4, E=8, K=2, T=400, affinity=0.6)
    return Profile.from_trace(trace), Topology.uniform(2)


@pytest.mark.parametrize("solver", ["exflow", "joint"])
@pytest.mark.parametrize("backend_gives", ["nothing", "the hint"])
def test_a_warm_start_fallback_is_noted(monkeypatch, solver, backend_gives):
    def backend(model, *_args):
        vals = None if backend_gives == "nothing" else np.asarray(model.hint, dtype=np.float64)
        status = "no_solution" if vals is None else "feasible"
        return ModelResult(status, vals, None if vals is None else model.objective_of(vals), None, 0.0, "cpsat")

    monkeypatch.setattr(models, "solve_model", backend)
    profile, topo = _instance()
    res = solve(solver, profile, topo, Constraints(cost="coherent", time_limit=5), {"formulation": "compact"})
    assert res.details["warm_start"]["objective"] > res.bound, "the warm start must not meet the bound here"
    assert res.status == "feasible"
    assert any("warm start" in n and "layer_descent" in n for n in res.notes), res.notes
