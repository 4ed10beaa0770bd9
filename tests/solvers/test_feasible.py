"""The local search's repairs: row-restricted move prices equal the full ones, and the repair of
a layout that ignores loads meets every constraint."""

from __future__ import annotations

import numpy as np

from placer.cost import load_cost
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.base import Constraints
from placer.solvers.search.feasible import make_feasible
from placer.solvers.search.moves import duplicate_mask, move_costs, pair_deltas, swap_gains, swapped_loads
from placer.solvers.search.problem import build_problem, layer_loads, to_placement
from support.generate import random_trace


def _problem(replicas: int, cap: float | None):
    trace = random_trace(4, 3, 12, 2, 800, affinity=0.6, seq_offsets=8)
    profile = Profile.from_trace(trace)
    topo = Topology.for_cluster(4)
    cons = Constraints(replicas=replicas, max_imbalance=cap, cost="ep", seed=0)
    return build_problem(profile, topo, cons), profile


def test_row_restricted_prices_equal_the_full_matrices():
    for replicas in (0, 4):
        prob, _ = _problem(replicas, None)
        rng = np.random.default_rng(replicas)
        gpu = np.stack([rng.permutation(np.repeat(np.arange(prob.G), prob.S)) for _ in range(prob.L)])
        cost = move_costs(prob, gpu, 1)
        rows = np.array([0, 3, prob.P - 1])
        np.testing.assert_allclose(pair_deltas(cost, gpu[1], rows), pair_deltas(cost, gpu[1])[rows])
        ie = prob.inst_expert[1]
        np.testing.assert_array_equal(duplicate_mask(prob, gpu[1], ie, rows), duplicate_mask(prob, gpu[1], ie)[rows])
        full, part = swapped_loads(prob, 1, gpu[1]), swapped_loads(prob, 1, gpu[1], rows)
        np.testing.assert_array_equal(part[1], full[1][rows])
        np.testing.assert_array_equal(part[2], full[2][rows])
        prob.cap[:] = 1.2 * prob.load.sum(1) / prob.G           # the cap's mask too
        np.testing.assert_array_equal(swap_gains(prob, gpu, 1, cost, rows), swap_gains(prob, gpu, 1, cost)[rows])


def test_repair_of_a_load_blind_layout_meets_every_constraint():
    for replicas, cap in ((0, 1.1), (4, 1.05)):
        prob, profile = _problem(replicas, cap)
        rng = np.random.default_rng(7)
        # a bad start: every layer dealt by instance number, ignoring loads
        gpu = np.tile(np.arange(prob.P) % prob.G, (prob.L, 1))
        rng.shuffle(gpu, axis=1)
        make_feasible(prob, gpu)
        for l in range(prob.L):
            assert np.all(np.bincount(gpu[l], minlength=prob.G) == prob.S)
            assert len(set(zip(prob.inst_expert[l].tolist(), gpu[l].tolist()))) == prob.P
            assert layer_loads(prob, l, gpu[l]).max() <= prob.cap[l]
        assert load_cost(profile, to_placement(prob, gpu)).max_imbalance <= cap + 1e-9
