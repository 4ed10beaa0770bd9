"""Exact minimum covers of a token's experts by their replica GPUs (the ep model's replica choice).

Each replicated expert a token picked offers a set of GPUs (its replicas); the token is served
by a set of GPUs that meets every such set. These searches find the *minimum* such set, ties
broken by the smallest sum of ``hop[home, g]`` over its GPUs, then by the lexicographically
smallest sorted GPU ids, so the answer is unique and does not depend on the order of the picks
or of the slots (:func:`~placer.cost.routing.serving_gpus` states the whole rule).

Two exact searches: :func:`hitting_set_bits` on uint64 GPU bit masks (fast, at most 64 GPUs per
token), and :func:`min_cover` on GPU ids (any G). Both are vectorised over tokens and fall back
to a per-token branch and bound (:func:`_min_cover_one`) where the number of branches exceeds
``CoverLimits.max_vector_combos``. Which one runs is set by :class:`CoverLimits`; every setting
returns the same covers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from placer.errors import PlacerError

_EPS = 1e-9
ONE = np.uint64(1)
_MASK_BITS = 64


@dataclass(frozen=True)
class CoverLimits:
    """Where each exact cover search takes over. Results do not depend on these, only speed.

    - ``max_vector_combos``: most replica combinations per token that are searched vectorised
      over tokens; above, tokens are searched one by one in Python (branch and bound).
    - ``bitmask_max_gpus``: up to this many GPUs (at most 64), GPU sets are uint64 bit masks.
    - ``local_max_candidates``: beyond ``bitmask_max_gpus``, a token's candidate GPUs
      (K x replicas per expert, at most 64) are renumbered into one uint64 mask when they fit in
      this many bits; otherwise the search on GPU ids (:func:`min_cover`) runs.
    """

    max_vector_combos: int = 4096
    bitmask_max_gpus: int = _MASK_BITS
    local_max_candidates: int = _MASK_BITS

    def __post_init__(self) -> None:
        for name in ("max_vector_combos", "bitmask_max_gpus", "local_max_candidates"):
            if int(getattr(self, name)) < 0:
                raise PlacerError(f"CoverLimits.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("bitmask_max_gpus", "local_max_candidates"):
            if int(getattr(self, name)) > _MASK_BITS:
                raise PlacerError(f"CoverLimits.{name} must be at most {_MASK_BITS} (bits of a uint64 mask), "
                                  f"got {getattr(self, name)}")


DEFAULT_LIMITS = CoverLimits()
"""The limits :func:`~placer.cost.ep.ep_cost` and :func:`~placer.cost.routing.serving_gpus` use
unless given others: vectorised up to 4096 combinations, bit masks up to 64 GPUs or 64
candidate GPUs per token."""


# ------------------------------------------------------------------------------- bits
def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (int64 result)."""
    if hasattr(np, "bitwise_count"):      # numpy >= 2.0
        return np.bitwise_count(x).astype(np.int64)
    return _popcount_swar(x)


def _popcount_swar(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 by the SWAR bit trick, for numpy without ``bitwise_count``."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return ((x * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.int64)


def lowest_bit_index(x: np.ndarray) -> np.ndarray:
    """Index of the lowest set bit of each non-zero uint64."""
    low = x & (~x + ONE)
    return popcount(low - ONE)


def _nth_bit_index(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index of the n-th lowest set bit (0-based) of each uint64, and whether it exists."""
    x = x.copy()
    for _ in range(n):
        x &= x - ONE
    ok = x != 0
    return np.where(ok, lowest_bit_index(np.where(ok, x, ONE)), 0), ok


def _cheapest_bit(masks: np.ndarray, home: np.ndarray, hop: np.ndarray, width: int) -> np.ndarray:
    """``[m]`` the GPU in each non-zero mask with the least ``hop[home, g]``, then lowest id."""
    best = np.zeros(len(masks), np.int64)
    best_c = np.full(len(masks), np.inf)
    for r in range(width):
        gpu, ok = _nth_bit_index(masks, r)
        c = np.where(ok, hop[home, gpu], np.inf)
        better = c < best_c
        best = np.where(better, gpu, best)
        best_c = np.where(better, c, best_c)
    return best


# ------------------------------------------------------------------- bit-mask search
def hitting_set_bits(masks: np.ndarray, home: np.ndarray, hop: np.ndarray, limits: CoverLimits) -> np.ndarray:
    """Minimum set of GPUs meeting every replica set, as a uint64 mask per token.

    ``masks`` ``[m, K]`` uint64 replica sets, 0 where there is no set to meet (none holds the
    home GPU); ``home`` ``[m]`` the row of ``hop`` that holds each token's costs: ``hop[home[t],
    g]`` is the cost of GPU (bit) g for token t. Ties as in the module docstring. A set that
    shares no GPU with the token's other sets needs a GPU of its own and takes its cheapest one
    directly; the sets that share GPUs go to :func:`_hitting_set_search`. The two parts use
    disjoint GPUs, so the union of their optimal, tie-broken answers is optimal and tie-broken
    for the whole.
    """
    m, K = masks.shape
    gpu_bit = np.left_shift(ONE, np.arange(hop.shape[1], dtype=np.uint64))
    width = int(popcount(masks).max())
    # set i shares a GPU with another set iff it meets the OR of the others (prefix | suffix)
    mt = np.ascontiguousarray(masks.T)                       # [K, m]: rows are contiguous
    prefix = np.zeros((K + 1, m), np.uint64)
    suffix = np.zeros((K + 1, m), np.uint64)
    for i in range(K):
        np.bitwise_or(prefix[i], mt[i], out=prefix[i + 1])
        np.bitwise_or(suffix[K - i], mt[K - 1 - i], out=suffix[K - 1 - i])
    shared_t = (mt & (prefix[:K] | suffix[1:])) != 0
    chosen = np.zeros(m, np.uint64)
    for i in range(K):
        alone = np.flatnonzero(~shared_t[i] & (mt[i] != 0))
        if alone.size:
            chosen[alone] |= gpu_bit[_cheapest_bit(mt[i, alone], home[alone], hop, width)]
    shared = shared_t.T
    tok = np.flatnonzero(shared.any(axis=1))
    if tok.size:
        sub = np.where(shared[tok], masks[tok], np.uint64(0))
        chosen[tok] |= _hitting_set_search(sub, home[tok], hop, width, limits)
    return chosen


def _hitting_set_search(masks: np.ndarray, home: np.ndarray, hop: np.ndarray, width: int,
                        limits: CoverLimits) -> np.ndarray:
    """Exact minimum hitting set (uint64 mask per token) by iterative deepening on its size h.

    ``masks`` ``[m, K]`` (0 = no set), ``home`` ``[m]``. For each h, branch on which GPU of the
    first set not yet met joins (h - 1 levels); the last GPU must lie in the AND of the sets
    still unmet, and the cheapest (then lowest id) is taken. Every minimum hitting set is
    reached, so the result is exact. ``width ** (h - 1)`` branches per size (width = most
    replicas of an expert), vectorised over the tokens not yet solved; beyond
    ``limits.max_vector_combos`` the remaining tokens go to the per-token search.
    """
    m, K = masks.shape
    G = hop.shape[1]
    gpu_bit = np.left_shift(ONE, np.arange(G, dtype=np.uint64))
    best = np.zeros(m, np.uint64)
    all_ones = ~np.uint64(0)
    present = masks != 0
    todo = np.arange(m)
    for size in range(1, K + 1):
        if todo.size == 0:
            break
        M, P, H = masks[todo], present[todo], home[todo]
        n = len(todo)
        rows = np.arange(n)
        if width ** (size - 1) > limits.max_vector_combos:
            for i, t in enumerate(todo):
                sets = [[g for g in range(G) if (int(x) >> g) & 1] for x in M[i] if x]
                best[t] = np.bitwise_or.reduce(gpu_bit[_min_cover_one(sets, int(H[i]), hop)])
            break
        found = np.zeros(n, np.uint64)
        found_h = np.full(n, np.inf)
        for branch in itertools.product(range(width), repeat=size - 1):
            chosen = np.zeros(n, np.uint64)
            h = np.zeros(n)
            ok = np.ones(n, bool)
            for j in branch:
                unmet = ((M & chosen[:, None]) == 0) & P
                ok &= unmet.any(axis=1)
                gpu, exists = _nth_bit_index(M[rows, np.argmax(unmet, axis=1)], j)
                ok &= exists
                chosen |= np.where(ok, gpu_bit[gpu], np.uint64(0))
                h += np.where(ok, hop[H, gpu], 0.0)
            unmet = ((M & chosen[:, None]) == 0) & P
            ok &= unmet.any(axis=1)                          # else a smaller set would do
            meet_all = np.bitwise_and.reduce(np.where(unmet, M, all_ones), axis=1)
            ok &= meet_all != 0
            if not ok.any():
                continue
            # the last GPU: cheapest, then lowest id (the lexicographically smallest completion)
            last = _cheapest_bit(np.where(ok, meet_all, np.uint64(0)), H, hop, width)
            full = chosen | gpu_bit[last]
            h = h + hop[H, last]
            diff = full ^ found
            lex_less = (full & diff & (~diff + ONE)) != 0
            better = ok & ((h < found_h - _EPS) | ((np.abs(h - found_h) <= _EPS) & lex_less))
            found = np.where(better, full, found)
            found_h = np.where(better, h, found_h)
        solved = np.isfinite(found_h)
        best[todo[solved]] = found[solved]
        todo = todo[~solved]
    return best


# ------------------------------------------------------------------- search on GPU ids
def min_cover(cand: np.ndarray, home: np.ndarray, hop: np.ndarray, limits: CoverLimits) -> np.ndarray:
    """Pick one replica per expert: fewest distinct GPUs, then cheapest from home, then lowest ids.

    ``cand`` ``[m, u, R]`` replica GPUs (-1 padded), none on the home GPU; ``home`` ``[m]``.
    Returns ``[m, u]``. Exact: every hitting set of the experts' replica sets is reached by some
    choice vector, and all ``width ** u`` choice vectors are visited (vectorised over the m
    tokens; one token at a time beyond ``limits.max_vector_combos``). The key is ``(number of
    distinct GPUs, sum of hop[home, g] over them, sorted GPU ids)``, compared
    lexicographically, so the answer does not depend on the visiting order.
    """
    m, u, R = cand.shape
    width = int((cand >= 0).sum(axis=2).max())
    if width ** u > limits.max_vector_combos:
        return np.stack([_min_cover_one(cand[i], int(home[i]), hop) for i in range(m)])
    sentinel = hop.shape[0]
    best_n = np.full(m, np.iinfo(np.int64).max)
    best_h = np.full(m, np.inf)
    best_key = np.full((m, u), sentinel, np.int64)
    best = np.zeros((m, u), np.int64)
    cols = np.arange(u)
    rows = np.arange(m)
    for combo in itertools.product(range(width), repeat=u):
        pick = cand[:, cols, list(combo)]                   # [m, u]
        valid = np.all(pick >= 0, axis=1)
        key = np.sort(pick, axis=1)
        key[:, 1:][key[:, 1:] == key[:, :-1]] = sentinel
        key = np.sort(key, axis=1)                          # distinct GPUs ascending, then sentinels
        real = key < sentinel
        n = real.sum(axis=1)
        h = np.where(real, hop[home[:, None], np.where(real, key, 0)], 0.0).sum(axis=1)
        diff = key != best_key
        at = np.argmax(diff, axis=1)
        lex_less = diff.any(axis=1) & (key[rows, at] < best_key[rows, at])
        better = valid & ((n < best_n) | ((n == best_n) & ((h < best_h - _EPS)
                                                           | ((np.abs(h - best_h) <= _EPS) & lex_less))))
        best_n = np.where(better, n, best_n)
        best_h = np.where(better, h, best_h)
        best_key[better] = key[better]
        best[better] = pick[better]
    return best


def _min_cover_one(cand: Any, home: int, hop: np.ndarray) -> np.ndarray:
    """:func:`min_cover` for one token: depth-first search with pruning on (count, hop sum).

    ``cand``: per expert, its replica GPUs (rows of an array padded with -1, or lists).
    """
    lists = [[int(x) for x in row if x >= 0] for row in cand]
    u = len(lists)
    best: list[Any] = [None, np.inf, np.inf, ()]           # choice, n, h, sorted GPUs

    def dfs(k: int, chosen: list[int], seen: set[int], h: float) -> None:
        n = len(seen)
        if n > best[1] or (n == best[1] and h > best[2] + _EPS):
            return
        if k == u:
            key = tuple(sorted(seen))
            if n < best[1] or h < best[2] - _EPS or key < best[3]:
                best[0], best[1], best[2], best[3] = list(chosen), n, h, key
            return
        for gpu in lists[k]:
            fresh = gpu not in seen
            if fresh:
                seen.add(gpu)
            chosen.append(gpu)
            dfs(k + 1, chosen, seen, h + (float(hop[home, gpu]) if fresh else 0.0))
            chosen.pop()
            if fresh:
                seen.discard(gpu)

    dfs(0, [], set(), 0.0)
    return np.array(best[0], np.int64)
