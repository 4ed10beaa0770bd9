"""Repairs that make a layout meet every constraint: exactly S instances per GPU, no two copies
of an expert on one GPU, and the per-layer load cap (token picks per GPU).

Starts (METIS is only approximately balanced, random shuffles ignore loads) and perturbations
go through these before the refinement, which then keeps every constraint. Each repair picks
among the moves that fix the violation the one that costs least in traffic
(:func:`~.moves.move_costs`, computed once per layer: it only ranks candidates, so it may go
stale while the repair runs).
"""

from __future__ import annotations

import numpy as np

from placer.errors import PlacerError
from placer.solvers.search.moves import duplicate_mask, move_costs, pair_deltas, swapped_loads
from placer.solvers.search.problem import Problem, layer_loads, packed_layer


def repair_counts(prob: Problem, gpu: np.ndarray, l: int) -> int:
    """Exact balance (S instances per GPU) by minimum-loss single moves; returns moves made."""
    ie = prob.inst_expert[l]
    moves = 0
    cost = None
    while True:
        counts = np.bincount(gpu[l], minlength=prob.G)
        over, under = counts > prob.S, counts < prob.S
        if not over.any():
            return moves
        if cost is None:
            # computed once: with replicas the costs of a moved expert's other copies go stale,
            # which only guides the choice; balance itself is exact
            cost = move_costs(prob, gpu, l)
        cur = cost[np.arange(prob.P), gpu[l]]
        delta = cost - cur[:, None]
        delta[~over[gpu[l]]] = np.inf
        delta[:, ~under] = np.inf
        if prob.replicated:
            has = np.zeros((prob.E, prob.G), bool)
            has[ie, gpu[l]] = True
            dup = np.where(has[ie], np.inf, 0.0)
            if np.isfinite(delta + dup).any():
                delta = delta + dup
        x, g = np.unravel_index(int(np.argmin(delta)), delta.shape)
        gpu[l, x] = g
        moves += 1


def fix_duplicates(prob: Problem, gpu: np.ndarray, l: int) -> None:
    """Swap replicas apart until no GPU holds two instances of one expert (cheapest swap first)."""
    if not prob.replicated:
        return
    ie = prob.inst_expert[l]
    cost = None
    for _ in range(prob.P * 2):
        cnt = np.zeros((prob.E, prob.G), np.int64)
        np.add.at(cnt, (ie, gpu[l]), 1)
        dups = np.argwhere(cnt > 1)
        if not len(dups):
            return
        e, g = dups[0]
        x = int(np.flatnonzero((ie == e) & (gpu[l] == g))[-1])
        if cost is None:
            cost = move_costs(prob, gpu, l)
        cur = cost[np.arange(prob.P), gpu[l]]
        h = gpu[l]
        ok = (h != g) & (cnt[e, h] == 0) & (cnt[ie, g] == 0) & (ie != e)
        if not ok.any():
            break
        delta = (cost[x, h] - cur[x]) + (cost[:, g] - cur)
        y = int(np.argmin(np.where(ok, delta, np.inf)))
        gpu[l, x], gpu[l, y] = h[y], g
    gpu[l] = _dealt(prob, l)     # single swaps got stuck: a construction that always works


def _dealt(prob: Problem, l: int) -> np.ndarray:
    """``[P]`` a duplicate-free balanced assignment: instances grouped by expert, dealt to GPUs
    in turn (an expert's <= G instances sit in consecutive positions, so on distinct GPUs)."""
    out = np.empty(prob.P, np.int64)
    out[np.argsort(prob.inst_expert[l], kind="stable")] = np.arange(prob.P) % prob.G
    return out


def fix_cap(prob: Problem, gpu: np.ndarray, l: int) -> bool:
    """Swaps that cut the load above the cap (cheapest in traffic among the best); True if met.

    Only swaps with an instance on a GPU above the cap can cut the excess, so the pairs priced are
    ``[A, P]`` with A the instances on those GPUs (not all P x P: at 128 GPUs with 128 replicas
    the full matrices took 15 s of a 20 s limit).
    """
    cap = prob.cap[l]
    if not np.isfinite(cap):
        return True
    ie = prob.inst_expert[l]
    cost = None
    for _ in range(prob.P * 4):
        g = gpu[l]
        loads = layer_loads(prob, l, g)
        if loads.max() <= cap:
            return True
        rows = np.flatnonzero(loads[g] > cap)
        _, new_a, new_b = swapped_loads(prob, l, g, rows)
        exc = np.maximum(loads - cap, 0.0)
        change = (np.maximum(new_a - cap, 0) + np.maximum(new_b - cap, 0)
                  - exc[g[rows]][:, None] - exc[g][None, :])
        change[duplicate_mask(prob, g, ie, rows)] = np.inf
        best = change.min()
        if not best < -1e-9 * max(1.0, cap):
            return False
        if cost is None:
            cost = move_costs(prob, gpu, l)   # once per layer: it only breaks ties in traffic
        delta = np.where(change <= best + 1e-9 * max(1.0, cap), pair_deltas(cost, g, rows), np.inf)
        i, b = np.unravel_index(int(np.argmin(delta)), delta.shape)
        a = rows[i]
        gpu[l, a], gpu[l, b] = g[b], g[a]
    return bool(layer_loads(prob, l, gpu[l]).max() <= cap)


def meet_cap(prob: Problem, gpu: np.ndarray, l: int) -> bool:
    """The load cap of layer l by :func:`fix_cap`, else from balanced packing (EPLB-style) when
    the swaps get stuck; True if met. Counts and distinct copies must hold already."""
    if fix_cap(prob, gpu, l):
        return True
    gpu[l] = packed_layer(prob, l)
    fix_duplicates(prob, gpu, l)
    return fix_cap(prob, gpu, l)


def make_feasible(prob: Problem, gpu: np.ndarray) -> None:
    """Exact balance, distinct replica GPUs and the load cap in every layer, in place."""
    for l in range(prob.L):
        repair_counts(prob, gpu, l)
        fix_duplicates(prob, gpu, l)
        if not meet_cap(prob, gpu, l):
            mean = prob.load[l].sum() / prob.G
            got = layer_loads(prob, l, gpu[l]).max() / mean
            raise PlacerError(f"no placement found with per-layer load max/mean <= {prob.cap[l] / mean:.3f} at MoE layer {l} "
                              f"(best found {got:.3f}); raise --max-imbalance or add --replicas")


def check_cap_feasible(prob: Problem) -> None:
    """Fail early when one instance alone exceeds the cap (no placement can meet it)."""
    for l in range(prob.L):
        if np.isfinite(prob.cap[l]) and prob.inst_load[l].max() > prob.cap[l]:
            mean = prob.load[l].sum() / prob.G
            need = prob.inst_load[l].max() / mean
            raise PlacerError(f"--max-imbalance {prob.cap[l] / mean:.3f} is impossible at MoE layer {l}: one expert "
                              f"{'replica ' if prob.replicated else ''}alone carries {need:.3f}x the mean GPU load; "
                              f"use --max-imbalance {np.ceil(need * 1000) / 1000:.3f} or more, or add --replicas")
