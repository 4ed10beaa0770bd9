"""The local search: per-layer moves swept over the layers, a multi-layer relabelling move, and an
iterated local search around them. Every move keeps every constraint (see :mod:`.feasible`).

- :func:`assign_layer` (coherent, no replicas): with its neighbours fixed, a layer's best
  re-assignment is a linear assignment problem (expert e on GPU g costs ``move_costs[e, g]``,
  each GPU offers S slots), solved exactly by ``scipy.optimize.linear_sum_assignment``; rejected
  if it breaks the load cap.
- :func:`swap_layer`: Kernighan-Lin style pairwise swaps inside the layer, all gains at once
  (:func:`~.moves.swap_gains`), the best disjoint improving swaps applied together.
- :func:`relabel_suffixes` (coherent): rename the GPUs of every layer from l on by a topology
  automorphism chosen by linear assignment; joins runs of layers that agree on groups but not
  on GPU labels, which one-layer moves cannot.
- :func:`refine`: sweeps (forward, backward, ...) until nothing improves, at most 100;
  :func:`perturb_and_refine`: shuffle part of two adjacent layers, re-descend on a window, keep
  it when the objective drops.

Deterministic: the only wall-clock input is ``deadline`` (``math.inf``: none), which stops the
search early but never changes which move is taken.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
from scipy.optimize import linear_sum_assignment

from placer.solvers.search.feasible import fix_cap, fix_duplicates
from placer.solvers.search.moves import linear_costs, move_costs, replica_rows, swap_gains
from placer.solvers.search.problem import REL_TOL, Problem, layer_loads, objective, window_cost


def single_thread_blas():
    """One BLAS thread for the search: it multiplies many small matrices, where a threaded BLAS
    on a busy 2-core machine was measured 20-30x slower (threads spin for each 256 x 64 product)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


# ----------------------------------------------------------------------------- one layer
def best_assignment(prob: Problem, cost: np.ndarray) -> np.ndarray:
    """``[P]`` GPUs: the balanced layout of one layer (S instances per GPU) of least total
    ``cost [P, G]`` (instance x on GPU g), by linear assignment over the GPUs' S slots."""
    rows, cols = linear_sum_assignment(np.repeat(cost, prob.S, axis=1))
    out = np.empty(prob.P, np.int64)
    out[rows] = cols // prob.S
    return out


def assign_layer(prob: Problem, gpu: np.ndarray, l: int) -> bool:
    """Re-assign layer l optimally given its neighbours (coherent, no replicas). True if better."""
    cost = move_costs(prob, gpu, l)                     # [E, G]
    old = float(cost[np.arange(prob.P), gpu[l]].sum())
    new_g = best_assignment(prob, cost)
    if np.isfinite(prob.cap[l]) and layer_loads(prob, l, new_g).max() > prob.cap[l]:
        return False
    new = float(cost[np.arange(prob.P), new_g].sum())
    if new < old - REL_TOL * max(1.0, abs(old)):
        gpu[l] = new_g
        return True
    return False


def swap_layer(prob: Problem, gpu: np.ndarray, l: int, max_rounds: int = 200) -> bool:
    """KL/FM-style improving swaps inside layer l until none improves. True if anything changed."""
    changed = False
    # coherent: disjoint swaps' gains add up exactly; ep: swaps interact through intra-layer
    # edges, so a batch is checked on the true layer cost and falls back to the single best swap
    exact_batches = prob.C is None
    # coherent: a layer's move costs depend on its neighbours only, except the copies of an
    # expert whose other copies moved; those rows alone are recomputed after each batch
    _, Wn, Mn = linear_costs(prob, gpu, l) if exact_batches else (None, None, None)
    cost = None
    ie = prob.inst_expert[l]
    for _ in range(max_rounds):
        if cost is None or not exact_batches:
            cost = move_costs(prob, gpu, l)
        delta = swap_gains(prob, gpu, l, cost)
        scale = max(1.0, float(np.abs(cost).max()))
        a_idx, b_idx = np.nonzero(np.triu(delta < -REL_TOL * scale * 10, 1))
        if len(a_idx) == 0:
            break
        vals = delta[a_idx, b_idx]
        order = np.lexsort((b_idx, a_idx, vals))
        chosen = _disjoint(prob, gpu[l], ie, a_idx[order], b_idx[order])
        before = window_cost(prob, gpu, l, l + 1) if not exact_batches else None
        old_l = gpu[l].copy()
        for a, b in chosen:
            gpu[l, a], gpu[l, b] = old_l[b], old_l[a]
        if exact_batches and Wn is not None:
            moved = np.unique(ie[np.array(chosen).ravel()])
            rows = np.flatnonzero(np.isin(ie, moved) & (prob.cnt[l, ie] > 1))
            replica_rows(prob, gpu, l, rows, Wn, Mn, cost)
        if before is not None and not _improves(prob, gpu, l, before):
            gpu[l] = old_l
            if len(chosen) == 1:
                break
            a, b = chosen[0]
            gpu[l, a], gpu[l, b] = old_l[b], old_l[a]
            if not _improves(prob, gpu, l, before):
                gpu[l] = old_l
                break
        changed = True
    return changed


def _improves(prob: Problem, gpu: np.ndarray, l: int, before: float) -> bool:
    return window_cost(prob, gpu, l, l + 1) < before - REL_TOL * max(1.0, before)


def _disjoint(prob: Problem, g: np.ndarray, ie: np.ndarray, a_idx: np.ndarray,
              b_idx: np.ndarray) -> list[tuple[int, int]]:
    """Greedy set of swaps (best first) whose gains stay valid together.

    Without a cap or replicas, instance-disjoint swaps are independent; with a cap the GPUs must
    be disjoint (loads), with replicas the GPUs (duplicate checks) and the experts
    (nearest-replica sets) too. ``g``, ``ie``: ``[P]`` GPU and expert of each instance.
    """
    strict = prob.capped or prob.replicated
    used_i: set[int] = set()
    used_g: set[int] = set()
    used_e: set[int] = set()
    out = []
    for a, b in zip(a_idx[:8 * prob.P].tolist(), b_idx[:8 * prob.P].tolist()):
        if a in used_i or b in used_i:
            continue
        ga, gb, ea, eb = int(g[a]), int(g[b]), int(ie[a]), int(ie[b])
        if strict and (ga in used_g or gb in used_g):
            continue
        if prob.replicated and (ea in used_e or eb in used_e):
            continue
        used_i.update((a, b))
        used_g.update((ga, gb))
        used_e.update((ea, eb))
        out.append((a, b))
    return out


# ----------------------------------------------------------------------------- many layers
def _renaming(prob: Problem, M: np.ndarray) -> np.ndarray | None:
    """Best GPU renaming ``perm [G]`` for cost ``M[b, c]`` among topology automorphisms, or None.

    Renaming must keep every hop (else the suffix's own transitions would change): nodes map to
    nodes as blocks, then GPUs within the node pair; checked against ``hop`` at the end.
    """
    G, gpn = prob.G, prob.gpus_per_node
    N = G // gpn
    if N > 1 and gpn > 1:
        Mn = M.reshape(N, gpn, N, gpn)
        # node-level cost: best within-node matching for every node pair
        node_cost = np.empty((N, N))
        inner = {}
        for k in range(N):
            for q in range(N):
                r, c = linear_sum_assignment(Mn[k, :, q, :])
                node_cost[k, q] = Mn[k, r, q, c].sum()
                inner[k, q] = c
        _, sigma = linear_sum_assignment(node_cost)
        perm = np.concatenate([sigma[k] * gpn + inner[k, sigma[k]] for k in range(N)])
    else:
        _, perm = linear_sum_assignment(M)
    if np.array_equal(perm, np.arange(G)) or not np.array_equal(prob.hop[np.ix_(perm, perm)], prob.hop):
        return None
    return perm


def relabel_suffixes(prob: Problem, gpu: np.ndarray, deadline: float) -> bool:
    """Multi-layer move (coherent): rename the GPUs of all layers from l on by a permutation.

    Renaming a suffix changes only the l-1 -> l transition, and the best renaming is a linear
    assignment on the G x G traffic matrix: ``M[b, c] = sum_a T[a, b] hop[a, c]``. Loads,
    counts and replica rules are invariant under renaming. True if anything improved.
    """
    if prob.W is None or prob.G == 1:
        return False
    changed = False
    for l in range(1, prob.L):
        if time.perf_counter() >= deadline:
            break
        ia, ib = prob.inst_expert[l - 1], prob.inst_expert[l]
        w = prob.W[l - 1][np.ix_(ia, ib)] / np.outer(prob.cnt[l - 1, ia], prob.cnt[l, ib])
        T = np.zeros((prob.G, prob.G))
        np.add.at(T, (gpu[l - 1][:, None], gpu[l][None, :]), w)
        M = T.T @ prob.hop                      # [b, c]
        perm = _renaming(prob, M)
        if perm is None:
            continue
        old = float(np.trace(M))
        if not M[np.arange(prob.G), perm].sum() < old - REL_TOL * max(1.0, abs(old)) * 10:
            continue
        if prob.replicated:
            # with replicas T splits each edge over copy pairs; the nearest-pair cost decides
            before = window_cost(prob, gpu, l, l + 1)
            saved = gpu[l:].copy()
            gpu[l:] = perm[gpu[l:]]
            after = window_cost(prob, gpu, l, l + 1)
            if not after < before - REL_TOL * max(1.0, before):
                gpu[l:] = saved
                continue
        else:
            gpu[l:] = perm[gpu[l:]]
        changed = True
    return changed


def refine(prob: Problem, gpu: np.ndarray, deadline: float, layers: range | None = None) -> int:
    """Sweep layers (forward, then backward, ...) until a sweep changes nothing; returns sweeps.

    ``layers``: only these layers (a window around a perturbation); the whole model otherwise,
    with the suffix renaming move after each sweep. ``gpu [L, P]`` is updated in place.
    """
    use_assignment = prob.W is not None and not prob.replicated
    order = list(layers if layers is not None else range(prob.L))
    sweeps = 0
    while time.perf_counter() < deadline:
        sweeps += 1
        changed = False
        for l in order:
            if time.perf_counter() >= deadline:
                break
            if use_assignment:
                changed |= assign_layer(prob, gpu, l)
            changed |= swap_layer(prob, gpu, l)
        if layers is None:
            changed |= relabel_suffixes(prob, gpu, deadline)
        order.reverse()
        if not changed or sweeps >= 100:
            break
    return sweeps


def perturb_and_refine(prob: Problem, gpu: np.ndarray, best_obj: float, kicks: int | None,
                       rng: np.random.Generator, deadline: float, patience: int | None = None,
                       advance=lambda n=1: None) -> tuple[float, int, int]:
    """Iterated local search: shuffle part of two adjacent layers, re-descend on a window around
    them, keep the result only if the whole objective drops. Escapes the local optima of
    one-layer moves (a pair of experts that should move together across layers).

    Stops after ``kicks`` kicks (None: no count), after ``patience`` kicks in a row that gain
    nothing (None: never), or at ``deadline``. Returns ``(objective, accepted, kicks done)``;
    ``gpu`` is updated in place.
    """
    accepted = done = stall = 0
    while (kicks is None or done < kicks) and (patience is None or stall < patience):
        if time.perf_counter() >= deadline or prob.G == 1:
            break
        done += 1
        advance(1)
        if _kick(prob, gpu, best_obj, rng, deadline):
            accepted += 1
            stall = 0
            best_obj = objective(prob, gpu)     # exact, free of summed rounding
        else:
            stall += 1
    return best_obj, accepted, done


def _kick(prob: Problem, gpu: np.ndarray, best_obj: float, rng: np.random.Generator, deadline: float) -> bool:
    """One perturbation of two adjacent layers and a re-descent around it; True if kept."""
    l = int(rng.integers(0, prob.L))
    hi = min(prob.L, l + 2)
    lo_w, hi_w = max(0, l - 1), min(prob.L, hi + 1)     # the window refine may change
    saved = gpu[lo_w:hi_w].copy()
    ok = True
    for m in range(l, hi):
        size = int(rng.integers(2, max(3, prob.P // 4) + 1))
        pick = rng.choice(prob.P, size=min(size, prob.P), replace=False)
        gpu[m, pick] = gpu[m, rng.permutation(pick)]
        fix_duplicates(prob, gpu, m)
        ok = ok and fix_cap(prob, gpu, m)
    if ok:
        refine(prob, gpu, deadline, range(lo_w, hi_w))
        after = window_cost(prob, gpu, lo_w, hi_w)
        gpu_new = gpu[lo_w:hi_w].copy()
        gpu[lo_w:hi_w] = saved
        before = window_cost(prob, gpu, lo_w, hi_w)
        if after < before - REL_TOL * max(1.0, abs(best_obj)):
            gpu[lo_w:hi_w] = gpu_new
            return True
        return False
    gpu[lo_w:hi_w] = saved
    return False
