"""Which GPU serves each of a token's top-K picks in the ep model (the replica choice).

Without replicas every pick has one GPU. With replicas a token is served by the cover of its
experts with the fewest remote GPUs (:func:`serving_gpus`); the exact minimum covers are
searched in :mod:`placer.cost.cover`. The torch.distributed replay routes with this same
function, so the bytes it sends are the bytes the ep cost counts.
"""

from __future__ import annotations

import numpy as np

from placer.cost.cover import DEFAULT_LIMITS, ONE, CoverLimits, hitting_set_bits, lowest_bit_index, min_cover


def serving_gpus(ids: np.ndarray, home: np.ndarray, rg: np.ndarray, count: np.ndarray,
                 hop: np.ndarray, limits: CoverLimits = DEFAULT_LIMITS) -> np.ndarray:
    """``[N, K]`` the GPU that serves each of a token's top-K picks in one layer (ep model).

    ``ids`` ``[N, K]`` expert ids, ``home`` ``[N]``, ``rg`` ``[E, R]`` replica GPUs of the layer
    (-1 padded), ``count`` ``[E]`` replicas per expert, ``hop`` ``[G, G]``; ``limits`` choose
    among the exact searches (the result does not depend on them).

    The chosen GPUs form a cover of the token's experts with the fewest remote GPUs (the home
    GPU is free): experts with one replica force their GPU; a replicated expert with a replica on
    the home GPU or on a forced GPU is served there (the token goes there anyway); the remaining
    replicated experts get an exact minimum hitting set of their replica GPUs
    (:func:`~placer.cost.cover.hitting_set_bits` up to ``limits.bitmask_max_gpus`` GPUs or
    ``limits.local_max_candidates`` candidate GPUs per token, :func:`~placer.cost.cover.min_cover`
    beyond). Ties between minimum covers: smallest sum of ``hop[home, g]`` over the remote GPUs
    (prefers the home node), then the lexicographically smallest sorted GPU ids.
    """
    g = rg[ids, 0]
    if rg.shape[1] == 1:
        return g
    rep = count[ids] > 1
    rows = np.flatnonzero(rep.any(axis=1))
    if rows.size == 0:
        return g
    if hop.shape[0] <= limits.bitmask_max_gpus:
        return _serving_gpus_bits(ids, home, rg, g, rep, hop, limits)
    out = g.copy()
    sub_rep = rep[rows]
    cand = rg[ids[rows]]                                   # [n, K, R]
    hs = home[rows]
    forced = np.concatenate([np.where(sub_rep, -2, g[rows]), hs[:, None]], axis=1)   # [n, K+1]
    hit = (cand[:, :, :, None] == forced[:, None, None, :]).any(axis=3) & (cand >= 0)
    has = hit.any(axis=2)
    first = np.argmax(hit, axis=2)
    picked = np.take_along_axis(cand, first[:, :, None], axis=2)[:, :, 0]
    # a replica on the home GPU wins over one on another visited GPU (no copy either way, but
    # the expert then runs at home)
    picked = np.where((cand == hs[:, None, None]).any(axis=2), hs[:, None], picked)
    sub = g[rows]
    covered = sub_rep & has
    sub[covered] = picked[covered]
    unc = sub_rep & ~has
    if unc.any() and unc.shape[1] * cand.shape[2] <= limits.local_max_candidates:
        _serve_uncovered_local(sub, unc, cand, hs, hop, limits)
        out[rows] = sub
        return out
    # an uncovered expert whose replicas share no GPU with another uncovered expert's needs a GPU
    # of its own: the cheapest from home, then the lowest id (see hitting_set_bits)
    K = unc.shape[1]
    shared = np.zeros(unc.shape, bool)
    multi = np.flatnonzero(unc.sum(axis=1) > 1)             # a lone uncovered expert shares nothing
    if multi.size:
        c, um = cand[multi], unc[multi]
        same = (c[:, :, :, None, None] == c[:, None, None, :, :]) & (c >= 0)[:, :, :, None, None]
        same &= ~np.eye(K, dtype=bool)[None, :, None, :, None]
        shared[multi] = um & (same & um[:, None, None, :, None]).any(axis=(2, 3, 4))
    alone = unc & ~shared
    if alone.any():
        t, k = np.nonzero(alone)
        c = cand[t, k]                                      # [a, R]
        cost = np.where(c >= 0, hop[hs[t][:, None], np.maximum(c, 0)], np.inf)
        lowest = np.where(cost == cost.min(axis=1, keepdims=True), c, np.iinfo(np.int64).max).min(axis=1)
        sub[t, k] = lowest
    u = shared.sum(axis=1)
    # shared columns first, in column order
    order = np.argsort(~shared, axis=1, kind="stable")
    for size in np.unique(u[u > 0]):
        size = int(size)
        tok = np.flatnonzero(u == size)
        cols = order[tok, :size]                            # [m, size]
        c = cand[tok[:, None], cols]                        # [m, size, R]
        choice = min_cover(c, hs[tok], hop, limits)         # [m, size]
        sub[tok[:, None], cols] = choice
    out[rows] = sub
    return out


def _serve_uncovered_local(sub: np.ndarray, unc: np.ndarray, cand: np.ndarray, home: np.ndarray,
                           hop: np.ndarray, limits: CoverLimits) -> None:
    """Serve the uncovered replicated picks (``unc`` ``[n, K]``) with the bit-mask search when
    there are more GPUs than bits: each token's candidate GPUs (at most K x R) are renumbered
    0, 1, ... in ascending GPU order, which keeps costs and the lexicographic tie-break intact.
    Writes the chosen global GPUs into ``sub`` ``[n, K]``."""
    t_idx = np.flatnonzero(unc.any(axis=1))
    m, K, R = len(t_idx), unc.shape[1], cand.shape[2]
    G = hop.shape[0]
    flat = np.where(unc[t_idx][:, :, None] & (cand[t_idx] >= 0), cand[t_idx], G).reshape(m, K * R)
    order = np.argsort(flat, axis=1, kind="stable")
    srt = np.take_along_axis(flat, order, axis=1)
    new = np.ones(srt.shape, bool)
    new[:, 1:] = srt[:, 1:] != srt[:, :-1]
    rank = np.cumsum(new, axis=1) - 1                     # local id of each sorted entry
    local = np.empty_like(rank)
    np.put_along_axis(local, order, rank, axis=1)
    table = np.zeros((m, K * R), np.int64)                # local id -> global GPU
    r_idx, c_idx = np.nonzero(new & (srt < G))
    table[r_idx, rank[r_idx, c_idx]] = srt[r_idx, c_idx]
    valid = (flat < G).reshape(m, K, R)
    bits = np.where(valid, np.left_shift(ONE, local.reshape(m, K, R).astype(np.uint64)), np.uint64(0))
    masks = np.bitwise_or.reduce(bits, axis=2)            # [m, K], 0 for covered picks
    costs = hop[home[t_idx][:, None], table]              # [m, K*R] cost of each local GPU
    chosen = hitting_set_bits(masks, np.arange(m), costs, limits)
    served_local = lowest_bit_index(np.where(masks != 0, masks & chosen[:, None], ONE))
    served = np.take_along_axis(table, served_local, axis=1)
    sub[t_idx] = np.where(unc[t_idx], served, sub[t_idx])


def _serving_gpus_bits(ids: np.ndarray, home: np.ndarray, rg: np.ndarray, g: np.ndarray,
                       rep: np.ndarray, hop: np.ndarray, limits: CoverLimits) -> np.ndarray:
    """:func:`serving_gpus` with GPU sets as uint64 bit masks (G <= 64).

    ``g`` ``[N, K]`` first replica of each pick, ``rep`` ``[N, K]`` whether it is replicated.
    Only the replicated picks are processed (as flat indices), the others keep their one GPU.
    """
    N, K = ids.shape
    gpu_bit = np.left_shift(ONE, np.arange(hop.shape[0], dtype=np.uint64))
    expert_mask = np.bitwise_or.reduce(np.where(rg >= 0, gpu_bit[np.maximum(rg, 0)], np.uint64(0)), axis=1)
    out = g.copy()
    flat_out = out.reshape(-1)
    rep_flat = rep.reshape(-1)
    home_bit = gpu_bit[home]
    visited = home_bit | np.bitwise_or.reduce(np.where(rep, np.uint64(0), gpu_bit[g]), axis=1)
    fi = np.flatnonzero(rep_flat)            # replicated picks, token-major
    ti = fi // K
    Mf = expert_mask[ids.reshape(-1)[fi]]
    # a replicated expert with a replica at home or on a GPU the token visits anyway is served
    # there, at home when possible
    on_visited = Mf & visited[ti]
    covered = on_visited != 0
    at_home = (Mf & home_bit[ti]) != 0
    pick = np.where(at_home, home[ti], lowest_bit_index(np.where(covered, on_visited, ONE)))
    flat_out[fi[covered]] = pick[covered]
    uf, um = fi[~covered], Mf[~covered]
    if uf.size:
        ut = uf // K
        first = np.ones(ut.size, bool)       # ut is sorted (token-major)
        first[1:] = ut[1:] != ut[:-1]
        todo, pos = ut[first], np.cumsum(first) - 1
        masks = np.zeros((len(todo), K), np.uint64)   # 0 = nothing to meet
        masks[pos, uf % K] = um
        chosen = hitting_set_bits(masks, home[todo], hop, limits)
        flat_out[uf] = lowest_bit_index(um & chosen[pos])
    return out
