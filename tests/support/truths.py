"""Reference truths, computed token by token from the definitions (docs/design.md, "Cost models"),
independently of ``placer.cost`` and ``placer.model.profile``.

Holdings are ``held [L, E, G]`` bool: GPU g holds a replica of expert e at layer l. Between
replicas, a token uses the nearest pair (ties to the lowest GPU ids, the earlier layer first).
Dropped (layer, token) entries count nowhere; a transition counts only if neither end is dropped.
"""

from __future__ import annotations

import itertools

import numpy as np

from placer.model.placement import Placement
from placer.model.trace import Trace


def holding(placement: Placement | np.ndarray, num_gpus: int | None = None) -> np.ndarray:
    """``held [L, E, G]`` of a placement (read from its ``phy2log``), or of a replica-free
    ``gpu_of [L, E]`` array on ``num_gpus`` GPUs."""
    if isinstance(placement, Placement):
        L, P = placement.phy2log.shape
        held = np.zeros((L, placement.num_experts, placement.num_gpus), bool)
        for l, p in itertools.product(range(L), range(P)):
            held[l, placement.phy2log[l, p], p // placement.slots_per_gpu] = True
        return held
    gpu_of = np.asarray(placement)
    L, E = gpu_of.shape
    held = np.zeros((L, E, num_gpus), bool)
    held[np.arange(L)[:, None], np.arange(E)[None, :], gpu_of] = True
    return held


def _ids(trace: Trace) -> np.ndarray:
    return np.asarray(trace.expert_ids).astype(np.int64)


def _kept(trace: Trace, l: int) -> np.ndarray:
    """``[T]`` bool: the token is not dropped at layer l."""
    return np.ones(trace.num_tokens, bool) if trace.dropped is None else ~np.asarray(trace.dropped[l], bool)


def _nearest(held_a: np.ndarray, held_b: np.ndarray, hop: np.ndarray):
    """For every expert pair (i, j): the smallest hop from a GPU holding i (``held_a [E, G]``) to
    one holding j (``held_b``), and that GPU pair ``a [E, E]``, ``b [E, E]``."""
    G = hop.shape[0]
    masked = np.where(held_a[:, None, :, None] & held_b[None, :, None, :], hop, np.inf)
    flat = masked.reshape(*masked.shape[:2], G * G)
    k = flat.argmin(axis=2)          # the first minimum: lowest a, then lowest b
    return np.take_along_axis(flat, k[..., None], axis=2)[..., 0], k // G, k % G


def home_gpus(trace: Trace, G: int) -> np.ndarray:
    """``[T]`` each token's home GPU (its data-parallel rank): sequence s on GPU ``s % G``; one
    sequence: G equal blocks of tokens."""
    T, off = trace.num_tokens, trace.offsets
    if len(off) == 2:
        return np.array([next(g for g in range(G) if t < (g + 1) * T / G) for t in range(T)], np.int64)
    return np.concatenate([[s % G] * int(off[s + 1] - off[s]) for s in range(len(off) - 1)]).astype(np.int64)


def token_counts(trace: Trace):
    """What a profile holds, one token at a time: ``load [L, E]`` picks, ``trans [L-1, E, E]``
    (every K x K pair of consecutive layers), ``trans_top1 [L-1, E, E]`` (the top-1 picks),
    ``coact [L, E, E]`` (tokens picking both i and j; diagonal: the loads)."""
    ids, top1, E = _ids(trace), trace.top1(), trace.num_experts
    L, T, K = ids.shape
    load = np.zeros((L, E), np.int64)
    trans = np.zeros((max(L - 1, 0), E, E), np.int64)
    trans1 = np.zeros_like(trans)
    coact = np.zeros((L, E, E), np.int64)
    for l in range(L):
        kept = _kept(trace, l)
        for t in np.flatnonzero(kept):
            for a in ids[l, t]:
                load[l, a] += 1
                for b in ids[l, t]:
                    if a != b:
                        coact[l, a, b] += 1
            if l + 1 < L and _kept(trace, l + 1)[t]:
                for a in ids[l, t]:
                    for b in ids[l + 1, t]:
                        trans[l, a, b] += 1
                trans1[l, top1[l, t], top1[l + 1, t]] += 1
        coact[l][np.diag_indices(E)] = load[l]
    return load, trans, trans1, coact


def coherent_by_token(trace: Trace, held: np.ndarray, hop: np.ndarray):
    """The coherent cost: per token and layer transition, the mean over its K x K pick pairs of
    the nearest-replica hop. Returns ``per_layer [L-1]`` (summed over tokens) and ``pairs
    [L-1, G, G]``, the pick pairs that cross from GPU a to GPU b (``pairs / K**2``: tokens)."""
    ids = _ids(trace)
    L, T, K = ids.shape
    G = hop.shape[0]
    per_layer = np.zeros(max(L - 1, 0))
    pairs = np.zeros((max(L - 1, 0), G, G), np.int64)
    for l in range(L - 1):
        D, A, B = _nearest(held[l], held[l + 1], hop)
        kept = _kept(trace, l) & _kept(trace, l + 1)
        i, j = ids[l, kept][:, :, None], ids[l + 1, kept][:, None, :]
        per_layer[l] = D[i, j].sum() / K**2
        np.add.at(pairs[l], (A[i, j].ravel(), B[i, j].ravel()), 1)
        pairs[l][np.diag_indices(G)] = 0
    return per_layer, pairs


def pairwise_by_token(trace: Trace, held: np.ndarray, hop: np.ndarray) -> float:
    """The exact models' ``ep`` (pairwise) cost: per token and layer, the nearest-replica hop
    between every unordered pair of its K picks."""
    ids = _ids(trace)
    total = 0.0
    for l in range(ids.shape[0]):
        D = _nearest(held[l], held[l], hop)[0]
        picks = ids[l, _kept(trace, l)]
        for a, b in itertools.combinations(range(ids.shape[2]), 2):
            total += D[picks[:, a], picks[:, b]].sum()
    return float(total)


def loads_by_token(trace: Trace, held: np.ndarray) -> np.ndarray:
    """``[L, G]`` picks per GPU, a replicated expert's picks split evenly over its replicas."""
    ids = _ids(trace)
    out = np.zeros((ids.shape[0], held.shape[2]))
    for l in range(ids.shape[0]):
        share = held[l] / held[l].sum(axis=1, keepdims=True)
        out[l] = share[ids[l, _kept(trace, l)].ravel()].sum(axis=0)
    return out


def objective_by_token(trace: Trace, held: np.ndarray, hop: np.ndarray, cost: str = "coherent",
                       load_weight: float = 0.0) -> float:
    """The solvers' objective: the coherent or the pairwise ``ep`` cost, plus ``load_weight``
    times the sum over layers of the busiest GPU's picks."""
    value = coherent_by_token(trace, held, hop)[0].sum() if cost == "coherent" else pairwise_by_token(trace, held, hop)
    return float(value + load_weight * loads_by_token(trace, held).max(axis=1).sum())


def ep_by_token(trace: Trace, held: np.ndarray, hop: np.ndarray, home):
    """Standard expert parallelism: each token is sent once to every remote GPU of the smallest
    set that, with its home, holds all its picks (brute force over all sets: fewest GPUs, then
    the cheapest hops from home, then the lowest ids). Returns ``traffic [L, G, G]`` (copies from
    home to GPU), the GPUs spanned (home counted when it serves a pick) and the tokens served."""
    ids = _ids(trace)
    L, T, K = ids.shape
    G = hop.shape[0]
    traffic = np.zeros((L, G, G), np.int64)
    spanned = served = 0
    for l, t in itertools.product(range(L), range(T)):
        if not _kept(trace, l)[t]:
            continue
        h = int(home[t])
        holders = [set(np.flatnonzero(held[l, e]).tolist()) for e in ids[l, t]]
        remote = [g for g in range(G) if g != h]
        best = None
        for size in range(G + 1):
            for C in itertools.combinations(remote, size):
                if all(hs & (set(C) | {h}) for hs in holders):
                    cost = sum(hop[h, g] for g in C)
                    if best is None or cost < best[1] - 1e-9:
                        best = (C, cost)
            if best is not None:
                break
        for g in best[0]:
            traffic[l, h, g] += 1
        spanned += len(best[0]) + any(h in hs for hs in holders)
        served += 1
    return traffic, spanned, served


def slot_loads(load: np.ndarray, phy2log: np.ndarray, G: int) -> np.ndarray:
    """``[L, G]`` GPU loads from expert loads ``load [L, E]``: each slot carries its expert's load
    divided by the expert's number of copies."""
    out = np.zeros((len(phy2log), G))
    for l, row in enumerate(phy2log):
        for p, e in enumerate(row):
            out[l, p // (len(row) // G)] += load[l][e] / list(row).count(e)
    return out


def slot_imbalance(load: np.ndarray, phy2log: np.ndarray, G: int) -> np.ndarray:
    """``[L]`` busiest GPU's load over the mean (1 for a layer without load), from :func:`slot_loads`."""
    loads = slot_loads(load, phy2log, G)
    mean = loads.mean(axis=1)
    return np.where(mean > 0, loads.max(axis=1) / np.where(mean > 0, mean, 1), 1.0)
