"""Large-neighbourhood search: re-optimise a window of layers between two GPUs exactly.

One move takes GPUs a and b, a window of w consecutive layers, and in each of those layers up to
m single-copy experts from a and as many from b (the sub-experts). Everything else stays fixed.
The sub-experts of a layer may be re-split between a and b in any way that keeps the counts
(``C(2m, m)`` ways, the states of that layer); the best split of the whole window is a shortest
path through the layers (the layer-chain programme, :func:`placer.solvers.exact.chain.chain_dp`):

- a state's own cost: every sub-expert's edges to the fixed experts (linear in its GPU: the
  neighbour layers' fixed experts, with nearest copies where they are replicated; for ep its
  layer's fixed co-activated experts), plus for ep the cut among the layer's sub-experts;
- a transition's cost (coherent): the edges between consecutive layers' sub-experts;
- the load cap: states that put more than the cap on a or b are not allowed.

So one move can move many experts of several layers at once, which the per-layer moves of
:mod:`.refine` cannot: the neighbourhood is exact, not sampled. Sub-experts are chosen by how much
they would gain from the other GPU alone (plus seeded noise), GPU pairs in proportion to the
traffic between them in the window. Every move is checked on the objective itself
(:func:`~.problem.window_cost`) before it is kept, so the search never gets worse, also where the
linear model is only a guide (ep on an asymmetric topology).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from placer.solvers.exact.chain import balanced_assignments, chain_dp, pair_cut_state_cost
from placer.solvers.search.moves import move_costs
from placer.solvers.search.problem import REL_TOL, Problem, layer_loads, window_cost

MAX_STATES = 1000           # C(2m, m) states per layer at most: m <= 5 (252 states); m = 6 is 924


@dataclass
class LnsStats:
    """What the window moves did: ``tried``, ``kept`` and the objective they removed (``gain``)."""

    tried: int = 0
    kept: int = 0
    gain: float = 0.0


def sub_size(S: int, m: int) -> int:
    """Sub-experts per GPU and layer: at most ``m``, at most S, and at most :data:`MAX_STATES` states."""
    k = min(m, S)
    while k > 1 and math.comb(2 * k, k) > MAX_STATES:
        k -= 1
    return k


def window_move(prob: Problem, gpu: np.ndarray, a: int, b: int, lo: int, hi: int, k: int,
                rng: np.random.Generator) -> float:
    """Re-split up to ``k`` sub-experts per GPU between GPUs ``a`` and ``b`` in layers
    ``lo .. hi-1`` optimally (module docstring); keeps the move when the objective drops and
    returns the drop (0 when nothing changed). ``gpu [L, P]`` is updated in place."""
    layers = range(lo, hi)
    subs = []
    for l in layers:
        sub = _pick(prob, gpu, l, a, b, k, rng)
        if sub is None:
            return 0.0
        subs.append(sub)
    n = 2 * k
    states = balanced_assignments(n, 2)                       # [N, n] 0 -> a, 1 -> b
    hop2 = prob.move_hop[np.ix_([a, b], [a, b])]
    sc = np.zeros((len(subs), len(states)))
    allowed = np.ones(sc.shape, bool)
    for t, (l, sub) in enumerate(zip(layers, subs)):
        lin = _fixed_costs(prob, gpu, l, sub, subs, t, lo, a, b)       # [n, 2]
        sc[t] = lin[np.arange(n)[None, :], states].sum(axis=1)
        if prob.C is not None:
            C = prob.C[l][np.ix_(prob.inst_expert[l][sub], prob.inst_expert[l][sub])]
            sc[t] += pair_cut_state_cost(C[None], hop2, states)[0]
        if np.isfinite(prob.cap[l]):
            rest = layer_loads(prob, l, gpu[l])[[a, b]] - np.bincount(
                (gpu[l, sub] == b).astype(np.int64), weights=prob.inst_load[l][sub], minlength=2)
            ld = prob.inst_load[l][sub]
            on_b = (states * ld[None, :]).sum(axis=1)
            allowed[t] = (rest[0] + ld.sum() - on_b <= prob.cap[l]) & (rest[1] + on_b <= prob.cap[l])
    current = np.array([np.flatnonzero((states == (gpu[l, sub] == b)).all(axis=1))[0]
                        for l, sub in zip(layers, subs)])
    if prob.W is not None and len(subs) > 1:
        Wsub = np.stack([prob.W[l][np.ix_(prob.inst_expert[l][s0], prob.inst_expert[l + 1][s1])]
                         for l, s0, s1 in zip(layers, subs, subs[1:])])
        best, _ = chain_dp(Wsub, hop2, n, len(subs), sc, allowed, states)
    else:
        best = states[np.argmin(np.where(allowed, sc, np.inf), axis=1)]
    new_idx = [np.flatnonzero((states == row).all(axis=1))[0] for row in best]
    if np.array_equal(new_idx, current):
        return 0.0
    w_lo, w_hi = lo, hi
    before = window_cost(prob, gpu, w_lo, w_hi)
    saved = gpu[lo:hi].copy()
    for (l, sub), row in zip(zip(layers, subs), best):
        gpu[l, sub] = np.where(row == 1, b, a)
    after = window_cost(prob, gpu, w_lo, w_hi)
    if after < before - REL_TOL * max(1.0, abs(before)):
        return before - after
    gpu[lo:hi] = saved
    return 0.0


def _pick(prob: Problem, gpu: np.ndarray, l: int, a: int, b: int, k: int,
          rng: np.random.Generator) -> np.ndarray | None:
    """``[2k]`` instances of layer l: k single-copy instances on a, then k on b, those that would
    gain most from the other GPU first (noise breaks ties and varies repeated picks)."""
    single = prob.cnt[l, prob.inst_expert[l]] == 1
    on_a = np.flatnonzero((gpu[l] == a) & single)
    on_b = np.flatnonzero((gpu[l] == b) & single)
    if len(on_a) < k or len(on_b) < k:
        return None
    cost = move_costs(prob, gpu, l)
    scale = float(np.abs(cost).max()) or 1.0
    pull_a = cost[on_a, b] - cost[on_a, a] + rng.random(len(on_a)) * 0.1 * scale
    pull_b = cost[on_b, a] - cost[on_b, b] + rng.random(len(on_b)) * 0.1 * scale
    return np.concatenate([on_a[np.argsort(pull_a, kind="stable")[:k]], on_b[np.argsort(pull_b, kind="stable")[:k]]])


def _fixed_costs(prob: Problem, gpu: np.ndarray, l: int, sub: np.ndarray, subs: list[np.ndarray], t: int,
                 lo: int, a: int, b: int) -> np.ndarray:
    """``[n, 2]``: each sub-expert's edges to the fixed experts with it on a / on b. The move
    costs count every neighbour at its current GPU; the edges to the other sub-experts (in the
    window's neighbour layers for coherent, in the layer for ep) are taken out again, because the
    programme prices them itself."""
    lin = move_costs(prob, gpu, l)[sub][:, [a, b]]
    hop = prob.move_hop
    ie = prob.inst_expert
    if prob.W is not None:
        if t > 0:                                              # edges from the previous window layer
            prev = subs[t - 1]
            w = prob.W[l - 1][np.ix_(ie[l - 1][prev], ie[l][sub])]        # [prev, sub]
            lin -= np.stack([w.T @ hop[gpu[l - 1, prev], g] for g in (a, b)], axis=1)
        if t + 1 < len(subs):                                  # edges into the next window layer
            nxt = subs[t + 1]
            w = prob.W[l][np.ix_(ie[l][sub], ie[l + 1][nxt])]             # [sub, next]
            lin -= np.stack([w @ hop[g, gpu[l + 1, nxt]] for g in (a, b)], axis=1)
    else:
        w = prob.C[l][np.ix_(ie[l][sub], ie[l][sub])]
        lin -= np.stack([w @ hop[g, gpu[l, sub]] for g in (a, b)], axis=1)
    return lin


def gpu_pair(prob: Problem, gpu: np.ndarray, lo: int, hi: int, rng: np.random.Generator) -> tuple[int, int]:
    """Two GPUs, drawn in proportion to the weight of the edges between them in the window
    (plus a floor, so every pair is drawn now and then)."""
    G = prob.G
    T = np.zeros((G, G))
    if prob.W is not None:
        for l in range(max(lo - 1, 0), min(hi, prob.L - 1)):
            w = prob.W[l][np.ix_(prob.inst_expert[l], prob.inst_expert[l + 1])]
            np.add.at(T, (gpu[l][:, None], gpu[l + 1][None, :]), w / np.outer(prob.cnt[l, prob.inst_expert[l]],
                                                                                prob.cnt[l + 1, prob.inst_expert[l + 1]]))
    else:
        for l in range(lo, hi):
            c = prob.C[l][np.ix_(prob.inst_expert[l], prob.inst_expert[l])]
            np.add.at(T, (gpu[l][:, None], gpu[l][None, :]), c)
    T = T + T.T
    np.fill_diagonal(T, 0.0)
    iu = np.triu_indices(G, 1)
    p = T[iu] + 0.05 * (T[iu].mean() + 1e-12)
    pick = int(rng.choice(len(p), p=p / p.sum()))
    return int(iu[0][pick]), int(iu[1][pick])


def lns_round(prob: Problem, gpu: np.ndarray, rng: np.random.Generator, m: int, max_window: int,
              stats: LnsStats) -> float:
    """One window move at a random place (window of 1 .. ``max_window`` layers; ep: one layer,
    its layers are independent); returns the objective it removed."""
    if prob.G < 2:
        return 0.0
    k = sub_size(prob.S, m)
    w = 1 if prob.W is None else int(rng.integers(1, min(max_window, prob.L) + 1))
    lo = int(rng.integers(0, prob.L - w + 1))
    a, b = gpu_pair(prob, gpu, lo, lo + w, rng)
    stats.tried += 1
    gain = window_move(prob, gpu, a, b, lo, lo + w, k, rng)
    if gain > 0:
        stats.kept += 1
        stats.gain += gain
    return gain
