"""The bound's ascents in a second process (:mod:`placer.solvers.bounds.background`): the bound
it sends back is valid (never above the enumerated optimum), the solver uses it where two cores
are free, a child that dies leaves the bound the solver holds, and no child outlives a solve."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints
from placer.solvers.base import solve as run_solver
from placer.solvers.bounds import background, begin_bound, proven_floor
from support.brute import optimum
from support.generate import random_trace

two_cores = pytest.mark.skipif(background.usable_cores() < 2, reason="the bound runs beside the search only with two cores")


@two_cores
@pytest.mark.parametrize("L,E,G,seed", [(3, 6, 2, 0), (4, 6, 3, 1), (3, 8, 2, 2)])
def test_the_bound_from_beside_the_search_is_valid(L, E, G, seed):
    trace = random_trace(seed, L, E, 2, 400, affinity=0.6)
    prof, topo = Profile.from_trace(trace), Topology.uniform(G)
    cons = Constraints(cost="coherent", time_limit=5, seed=0)
    res = run_solver("partition", prof, topo, cons, {"kicks": 20})
    assert res.details["bound_beside"] is True
    best = optimum(trace, topo)
    assert res.bound <= best * (1 + 1e-9) + 1e-9
    assert res.bound <= res.objective * (1 + 1e-9) + 1e-9
    assert multiprocessing.active_children() == []
    # the same bound kind as the ascents here compute: off, it still holds
    off = run_solver("partition", prof, topo, cons, {"kicks": 20, "bound_beside": False})
    assert off.details["bound_beside"] is False and off.bound <= best * (1 + 1e-9) + 1e-9


def _flows_done(seed: int):
    """A bound begun (its flows done) on a 4-layer, 16-expert trace on 4 GPUs."""
    prof = Profile.from_trace(random_trace(seed, 4, 16, 2, 2000, affinity=0.7))
    return begin_bound(prof, Topology.uniform(4), Constraints(cost="coherent", time_limit=30, seed=0),
                       time.perf_counter() + 30)


@two_cores
def test_a_child_that_dies_leaves_no_answer_and_no_process():
    pending = _flows_done(3)
    running = background.start(pending, time.perf_counter() + 30)
    assert running is not None and running.process.is_alive()
    running.process.kill()
    assert background.collect(running, time.perf_counter() + 5) is None
    assert multiprocessing.active_children() == []
    # what the solver then reports: the flows' bound, which is valid on its own
    assert proven_floor(pending) >= 0


@two_cores
def test_an_answer_comes_back_by_the_deadline():
    pending = _flows_done(4)
    began = time.perf_counter()
    running = background.start(pending, began + 1.0)
    value, method = background.collect(running, began + 1.0 + background.GRACE_S + 5)
    assert time.perf_counter() - began < 5
    assert value >= proven_floor(pending) * (1 - 1e-9) and "coherent" in method
    assert multiprocessing.active_children() == []


def test_nothing_starts_without_work():
    trace = random_trace(5, 1, 8, 2, 200)
    prof, topo = Profile.from_trace(trace), Topology.uniform(2)
    pending = begin_bound(prof, topo, Constraints(cost="coherent", time_limit=5, seed=0), time.perf_counter() + 5)
    assert pending.done is not None and background.start(pending, time.perf_counter() + 5) is None


def test_replicas_keep_the_bound_after_the_search():
    """With replicas the bound is the pooled b-matching alone: no ascents, no child."""
    prof = Profile.from_trace(random_trace(6, 3, 8, 2, 400, affinity=0.6))
    cons = Constraints(cost="coherent", time_limit=5, seed=0, replicas=2)
    res = run_solver("partition", prof, Topology.uniform(2), cons, {"kicks": 5})
    assert res.details["bound_beside"] is False and res.bound is not None
    assert multiprocessing.active_children() == []
