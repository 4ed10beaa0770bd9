"""Balance that holds on tokens a placement was not fitted on: swaps that lower the busiest GPU
over several windows of the training tokens at once (issue 13's drift rule; the windows and the
measurements are in :mod:`placer.solvers.drift`).

A placement balanced on its training tokens (EPLB's packing, or a search under a load cap) is
balanced for their mean routing only. Routing drifts from batch to batch, and co-activated
experts drift together, so a traffic-minimising placement that stacks them on one GPU loses its
balance on the next batch more than a packing that ignores them.

Per layer, each window's loads (``window_loads [K, L, E]`` token picks, plus the whole training
profile) are divided by that window's mean GPU load; the layer's *peak* is the largest result
over windows and GPUs. A swap of two instances is eligible when it lowers the peak by at least
:data:`KEEP` of the best swap's drop; of those, the one that costs least traffic
(:func:`~.moves.swap_gains`, which also keeps the problem's cap, distinct replica GPUs and S
slots per GPU) is made. Layers go worst first; each stops when no swap lowers its peak, all at
the deadline.

Shapes: L layers, E experts, G GPUs, P instances a layer, K windows.
"""

from __future__ import annotations

import time

import numpy as np

from placer.solvers.search.moves import move_costs, swap_gains
from placer.solvers.search.problem import Problem

KEEP = 0.5          # eligible swaps lower the peak by at least this share of the best one's drop
COST_EVERY = 8      # swaps between recomputed move costs (they only rank swaps by traffic)
TOL = 1e-9


def instance_window_loads(prob: Problem, window_loads: np.ndarray, l: int) -> np.ndarray:
    """``[K + 1, P]`` each instance's share of layer l's picks in every window and in the whole
    training profile, divided by that window's mean GPU load (windows without picks dropped)."""
    ie = prob.inst_expert[l]
    rows = np.vstack([window_loads[:, l, :], prob.load[l][None]]).astype(np.float64)
    per = rows[:, ie] / prob.cnt[l, ie][None, :]
    mean = rows.sum(1) / prob.G
    keep = mean > 0
    return per[keep] / mean[keep, None]


def _peak_after(gl: np.ndarray, per: np.ndarray, g: np.ndarray, g0: int, rows: np.ndarray) -> np.ndarray:
    """``[A, P]``: the peak after swapping instance ``rows[i]`` (on GPU ``g0``) with instance b.

    ``gl [K, G]`` normalised GPU loads, ``per [K, P]`` normalised instance loads, ``g [P]`` GPUs.
    The GPUs other than g0 and b's keep their loads: per window, the largest of them is the
    largest GPU but g0, or the second largest where that is b's GPU.
    """
    d = per[:, None, :] - per[:, rows, None]              # [K, a, b]: load_b - load_a
    new_a = gl[:, g0][:, None, None] + d
    new_b = gl[:, g][:, None, :] - d
    others = gl.copy()
    others[:, g0] = -np.inf
    top = np.argsort(-others, axis=1)[:, :2]
    first = np.take_along_axis(others, top, axis=1)                     # [K, 2]
    rest = np.where(top[:, :1] == g[None, :], first[:, 1:2], first[:, :1])   # [K, b]
    return np.maximum(np.maximum(new_a, new_b), rest[:, None, :]).max(0)


def _window_gpu_loads(prob: Problem, g: np.ndarray, per: np.ndarray) -> np.ndarray:
    """``[K, G]`` each window's GPU loads for the layer's GPUs ``g [P]`` and ``per [K, P]``."""
    return np.stack([np.bincount(g, weights=w, minlength=prob.G) for w in per])


def layer_scores(prob: Problem, gpu: np.ndarray, window_loads: np.ndarray) -> np.ndarray:
    """``[L]`` each layer's peak over the windows for layout ``gpu``."""
    out = np.empty(prob.L)
    for l in range(prob.L):
        out[l] = _window_gpu_loads(prob, gpu[l], instance_window_loads(prob, window_loads, l)).max()
    return out


def balance_windows(prob: Problem, gpu: np.ndarray, window_loads: np.ndarray, deadline: float) -> int:
    """Lower each layer's peak over the windows by swaps, in place (module docstring).

    ``gpu [L, P]`` a feasible layout of ``prob``; ``window_loads [K, L, E]`` token picks of K
    windows of the training tokens. Returns the number of swaps made.
    """
    swaps = 0
    for l in np.argsort(-layer_scores(prob, gpu, window_loads), kind="stable"):
        per = instance_window_loads(prob, window_loads, l)
        cost = None
        for step in range(4 * prob.P):
            if time.perf_counter() > deadline:
                return swaps
            g = gpu[l]
            gl = _window_gpu_loads(prob, g, per)
            # only a swap out of the peak GPU can lower the peak
            g0 = int(np.unravel_index(int(np.argmax(gl)), gl.shape)[1])
            rows = np.flatnonzero(g == g0)
            drop = gl.max() - _peak_after(gl, per, g, g0, rows)
            if step % COST_EVERY == 0:
                cost = move_costs(prob, gpu, l)
            traffic = swap_gains(prob, gpu, l, cost, rows)
            drop[~np.isfinite(traffic)] = -np.inf
            best = drop.max()
            if not best > TOL:
                break
            i, b = np.unravel_index(int(np.argmin(np.where(drop >= KEEP * best, traffic, np.inf))), drop.shape)
            a = rows[i]
            gpu[l, a], gpu[l, b] = g[b], g[a]
            swaps += 1
    return swaps
