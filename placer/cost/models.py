"""The cost models every placement is judged by: ``coherent``, ``ep`` and ``load``.

Notation: L MoE layers, T tokens, top-K, E logical experts, G GPUs, S slots per GPU,
``hop[a, b]`` the topology's unitless hop cost (0 same GPU, 1 same node, ``inter_node_cost``
across nodes). ``docs/cost-models.md`` gives the full definitions; in short:

- **coherent** (ExFlow, one all-to-all per layer; a token stays where its expert ran): a
  token's cost between layers l and l+1 is the mean over its K x K pairs (i at l, j at l+1) of
  ``hop(gpu(l, i), gpu(l+1, j))``; with replicas each pair uses its nearest replicas (minimum
  hop over replica pairs; ties: lowest physical slots). Unit: hop-weighted token transitions.
- **ep** (standard expert parallelism, two all-to-alls per layer with dedup): each token has a
  home GPU (default: sequence s lives on GPU ``s % G``); per layer it is sent once to each
  distinct remote GPU serving one of its top-K experts, and combined back. Unit: token copies
  (and bytes, and seconds, given a hidden size).
- **load**: token picks per GPU per layer; a replicated expert's picks split evenly over its
  replicas. Imbalance = max / mean over GPUs.

Tokens a capacity-limited router dropped (``Trace.dropped``) are neither dispatched nor counted,
as in :class:`~placer.model.profile.Profile`.

Everything is vectorised over tokens (no Python loop over tokens) and reads a Trace chunk by
chunk (``Trace.iter_chunks``; the load counts through :meth:`Profile.from_trace`), so memory is
bounded by the chunk and memory-mapped traces of any length work. Speed at DeepSeek-V3 shape:
``docs/benchmarks.md``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from placer.cost import objectives
from placer.cost.objectives import nearest_pairs
from placer.errors import PlacerError
from placer.fileio import to_jsonable
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import DEFAULT_CHUNK_TOKENS, Trace

COST_MODELS = ("coherent", "ep", "load")
# Above this many replica combinations per token the exact cover search runs per token in Python
# (branch and bound) instead of vectorised over tokens; both return the same unique cover.
_MAX_VECTOR_COMBOS = 4096
_EPS = 1e-9
_PAIR_BLOCK = 4096
# Up to this many GPUs, sets of GPUs are uint64 bit masks (the fast exact cover search); beyond,
# a token's candidate GPUs are renumbered into 64 bits when K x (replicas per expert) <= 64.
_BITMASK_MAX_GPUS = 64
_LOCAL_MAX_CANDIDATES = 64
_ONE = np.uint64(1)


# ---------------------------------------------------------------------------- results
@dataclass
class CoherentCost:
    """Coherent (ExFlow) cost: hop-weighted layer transitions.

    - ``total``: sum over tokens and transitions l -> l+1 of the mean over the token's K x K
      expert pairs of the (nearest-replica) hop cost. Unit: hop-weighted token transitions.
    - ``per_transition``: ``total / (num_tokens * (L - 1))``; with top-1 and one node (0/1
      hops) the share of layer transitions that change GPU (ExFlow's metric).
    - ``per_layer``: ``[L-1]`` the total split by transition l -> l+1.
    - ``traffic``: ``[G, G]`` expected token moves from GPU a to GPU b (fractional: each of a
      token's K x K pairs weighs 1/K^2), summed over transitions; diagonal 0.
      ``(hop * traffic).sum() == total``.
    - ``time_s``: with a hidden size, the alpha-beta estimate (:func:`alltoall_time`) of one
      all-to-all per transition carrying that transition's traffic, summed (seconds);
      ``per_layer_time_s`` ``[L-1]``. None without a hidden size.
    """

    total: float
    per_transition: float
    per_layer: np.ndarray
    traffic: np.ndarray
    num_tokens: int
    inter_node_share: float
    time_s: float | None = None
    per_layer_time_s: np.ndarray | None = None

    @property
    def max_link(self) -> float:
        """The largest off-diagonal traffic entry (token moves on the busiest GPU pair)."""
        return float(self.traffic.max()) if self.traffic.size else 0.0

    def summary(self) -> dict[str, Any]:
        return {"model": "coherent", "unit": "hop-weighted token transitions",
                "total": self.total, "per_transition": self.per_transition,
                "inter_node_share": self.inter_node_share, "max_link": self.max_link,
                "time_s": self.time_s, "per_layer": self.per_layer,
                "per_layer_time_s": self.per_layer_time_s, "traffic": self.traffic}


@dataclass
class EPCost:
    """Standard two-all-to-all expert-parallel cost with dedup.

    - ``copies``: dispatch copies sent off the home GPU, all layers (combine sends as many back).
    - ``bytes``: dispatch + combine bytes, ``2 * copies * hidden_size * dtype_bytes``; None
      without a hidden size.
    - ``per_layer``: ``[L]`` copies per layer.
    - ``traffic``: ``[G, G]`` dispatch copies from home GPU a to expert GPU b, all layers
      (combine traffic is its transpose).
    - ``inter_node_share``: share of copies that cross nodes.
    - ``mean_gpus_spanned``: mean over (token, layer) of the number of distinct GPUs serving
      the token's top-K (home included only when it serves one of them).
    - ``time_s``: alpha-beta estimate of the dispatch + combine time, summed over layers
      (seconds); None without a hidden size. ``per_layer_time_s`` ``[L]`` likewise.
    """

    copies: int
    bytes: float | None
    per_layer: np.ndarray
    traffic: np.ndarray
    inter_node_share: float
    mean_gpus_spanned: float
    time_s: float | None
    per_layer_time_s: np.ndarray | None
    num_tokens: int
    hidden_size: int | None = None
    dtype_bytes: int = 2

    @property
    def max_link(self) -> int:
        """Dispatch copies on the busiest (home GPU, expert GPU) pair."""
        return int(self.traffic.max()) if self.traffic.size else 0

    @property
    def copies_per_token_layer(self) -> float:
        """Mean remote copies a token sends per layer."""
        layers = len(self.per_layer)
        return self.copies / (self.num_tokens * layers) if self.num_tokens and layers else 0.0

    def summary(self) -> dict[str, Any]:
        return {"model": "ep", "unit": "token copies (dispatch; combine sends as many back)",
                "copies": self.copies, "copies_per_token_layer": self.copies_per_token_layer,
                "bytes": self.bytes, "hidden_size": self.hidden_size, "dtype_bytes": self.dtype_bytes,
                "inter_node_share": self.inter_node_share,
                "mean_gpus_spanned": self.mean_gpus_spanned, "max_link": self.max_link,
                "time_s": self.time_s, "per_layer": self.per_layer,
                "per_layer_time_s": self.per_layer_time_s, "traffic": self.traffic}


@dataclass
class LoadCost:
    """Token picks per GPU per layer.

    - ``gpu_load``: ``[L, G]`` picks served by each GPU (float: a replicated expert's picks split
      evenly over its replicas).
    - ``imbalance``: ``[L]`` max / mean over GPUs (1.0 = perfectly balanced; 1.0 for a layer
      with no picks).
    """

    gpu_load: np.ndarray
    imbalance: np.ndarray

    @property
    def mean_imbalance(self) -> float:
        return float(self.imbalance.mean()) if self.imbalance.size else 1.0

    @property
    def max_imbalance(self) -> float:
        return float(self.imbalance.max()) if self.imbalance.size else 1.0

    def summary(self) -> dict[str, Any]:
        return {"model": "load", "unit": "token picks per GPU",
                "mean_imbalance": self.mean_imbalance, "max_imbalance": self.max_imbalance,
                "imbalance": self.imbalance, "gpu_load": self.gpu_load}


# --------------------------------------------------------------------------- checks
def _shape_of(data: Trace | Profile) -> tuple[int, int]:
    return data.num_layers, data.num_experts


def check_compatible(data: Trace | Profile, placement: Placement, topology: Topology | None = None) -> None:
    """Raise :class:`PlacerError` unless trace/profile, placement and topology fit together."""
    L, E = _shape_of(data)
    what = "trace" if isinstance(data, Trace) else "profile"
    if placement.num_layers != L:
        raise PlacerError(f"the placement has {placement.num_layers} layers but the {what} has {L} MoE layers; "
                          f"solve a placement for this {what}")
    # a trace may know fewer experts than the model (ids seen so far): those were never picked
    if placement.num_experts < E:
        raise PlacerError(f"the placement has {placement.num_experts} experts but the {what} has {E}; "
                          f"solve a placement for this {what}")
    if topology is not None and topology.num_gpus != placement.num_gpus:
        raise PlacerError(f"the placement uses {placement.num_gpus} GPUs but the topology has {topology.num_gpus}; "
                          f"pass --gpus {placement.num_gpus}")


def _pad_experts(a: np.ndarray, num_experts: int, axes: tuple[int, ...]) -> np.ndarray:
    """Zero-pad the expert axes of ``a`` to ``num_experts`` (data that saw fewer experts)."""
    pad = [(0, num_experts - a.shape[ax]) if ax in axes else (0, 0) for ax in range(a.ndim)]
    return np.pad(a, pad) if any(p[1] for p in pad) else a


def _check_bytes(hidden_size: int, dtype_bytes: int) -> int:
    """Bytes per token copy, ``hidden_size * dtype_bytes``, or a :class:`PlacerError`."""
    if int(hidden_size) < 1 or int(dtype_bytes) < 1:
        raise PlacerError(f"--hidden-size and --dtype-bytes must be positive, got {hidden_size} and {dtype_bytes}")
    return int(hidden_size) * int(dtype_bytes)


def replica_gpus(placement: Placement) -> np.ndarray:
    """``[L, E, R]`` GPU of each replica of each expert (ascending physical slot), -1 padded."""
    return objectives.replica_gpus(placement.phy2log, placement.num_experts, placement.slots_per_gpu)


# ------------------------------------------------------------------------ coherent
def coherent_cost(data: Trace | Profile, placement: Placement, topology: Topology,
                  chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
                  progress: Callable[[int], None] | None = None,
                  hidden_size: int | None = None, dtype_bytes: int = 2) -> CoherentCost:
    """The coherent (ExFlow) cost of ``placement`` on a trace or profile (see :class:`CoherentCost`).

    From a Profile: ``trans / K**2`` weighs the nearest-replica hop of every expert pair. From a
    Trace: pairs are counted directly between *placement units* (the distinct replica-GPU lists
    of a layer: one per GPU without replicas), which is G x G instead of E x E bins per layer and
    gives the same number, since the nearest-replica hop depends only on the two units.
    """
    check_compatible(data, placement, topology)
    L, G = data.num_layers, topology.num_gpus
    hop = np.asarray(topology.hop, dtype=np.float64)
    rg = replica_gpus(placement)
    if isinstance(data, Profile):
        pair_weights = _pad_experts(data.transition_weights(), placement.num_experts, (1, 2)) if L > 1 else []
        unit_gpus = [rg[l] for l in range(L)]
    else:
        unit_gpus, counts = _unit_transitions(data, rg, chunk_tokens, progress)
        pair_weights = [c / float(data.top_k ** 2) for c in counts]
    per_layer = np.zeros(max(L - 1, 0))
    layer_traffic = np.zeros((max(L - 1, 0), G, G))
    for l in range(L - 1):
        hmin, ga, gb = nearest_pairs(unit_gpus[l], unit_gpus[l + 1], hop)
        w = pair_weights[l]
        per_layer[l] = float((w * hmin).sum())
        layer_traffic[l] = np.bincount((ga * G + gb).ravel(), weights=w.ravel(), minlength=G * G).reshape(G, G)
        np.fill_diagonal(layer_traffic[l], 0.0)
    traffic = layer_traffic.sum(axis=0)
    time_s = per_layer_time = None
    if hidden_size is not None:
        unit = float(_check_bytes(hidden_size, dtype_bytes))
        per_layer_time = np.array([alltoall_time(t * unit, topology) for t in layer_traffic])
        time_s = float(per_layer_time.sum())
    total = float(per_layer.sum())
    transitions = data.num_tokens * max(L - 1, 0)
    moved = float(traffic.sum())
    inter = float(traffic[topology.inter_node].sum())
    return CoherentCost(total=total, per_transition=total / transitions if transitions else 0.0,
                        per_layer=per_layer, traffic=traffic, num_tokens=int(data.num_tokens),
                        inter_node_share=inter / moved if moved > 0 else 0.0,
                        time_s=time_s, per_layer_time_s=per_layer_time)


def _unit_transitions(trace: Trace, rg: np.ndarray, chunk_tokens: int,
                      progress: Callable[[int], None] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Count every token's K x K pairs between placement units of consecutive layers.

    ``rg`` ``[L, E, R]`` replica GPUs. Returns the units' GPU lists (``[U_l, R]`` per layer) and
    ``[U_l, U_{l+1}]`` int64 pair counts per transition; dropped tokens are skipped as in
    :meth:`Profile.from_trace`.
    """
    L = trace.num_layers
    unit_gpus, unit_of = [], []
    for l in range(L):
        ug, inv = np.unique(rg[l], axis=0, return_inverse=True)
        unit_gpus.append(ug)
        unit_of.append(inv.reshape(-1).astype(np.intp))
    sizes = [len(u) for u in unit_gpus]
    counts = [np.zeros(sizes[l] * sizes[l + 1], np.int64) for l in range(L - 1)]
    if L < 2:                   # no transitions: nothing to read
        if progress is not None:
            progress(trace.num_tokens)
        return unit_gpus, []
    K = trace.top_k
    buf = np.empty((_PAIR_BLOCK, K, K), np.intp)
    for chunk in trace.iter_chunks(chunk_tokens):
        ids = np.asarray(chunk.expert_ids)
        dropped = None if chunk.dropped is None else np.asarray(chunk.dropped)
        cur = unit_of[0][ids[0]]
        for l in range(L - 1):
            nxt = unit_of[l + 1][ids[l + 1]]
            a, b = cur * sizes[l + 1], nxt
            if dropped is not None:
                keep = ~(dropped[l] | dropped[l + 1])
                a, b = a[keep], b[keep]
            # blocks of tokens keep the K x K index buffer in cache (about 1.7x faster)
            for s in range(0, len(a), _PAIR_BLOCK):
                n = len(a[s:s + _PAIR_BLOCK])
                np.add(a[s:s + n, :, None], b[s:s + n, None, :], out=buf[:n])
                counts[l] += np.bincount(buf[:n].ravel(), minlength=len(counts[l]))
            cur = nxt
        if progress is not None:
            progress(chunk.num_tokens)
    return unit_gpus, [c.reshape(sizes[l], sizes[l + 1]) for l, c in enumerate(counts)]


# ------------------------------------------------------------------------------- ep
def default_home(trace: Trace, num_gpus: int) -> np.ndarray:
    """``[T]`` home GPU of every token: sequence s lives on GPU ``s % num_gpus`` (round robin).

    A trace without sequence boundaries (one sequence) is cut into G equal token blocks
    instead, token t on GPU ``t * G // T``, as a batch sharded over data-parallel ranks would
    be; otherwise every token would live on GPU 0.
    """
    off = trace.offsets
    if len(off) == 2:
        T = trace.num_tokens
        return (np.arange(T, dtype=np.int64) * num_gpus) // max(T, 1)
    seq = np.repeat(np.arange(len(off) - 1), np.diff(off))
    return (seq % num_gpus).astype(np.int64)


def first_occurrence(g: np.ndarray, num_gpus: int | None = None) -> np.ndarray:
    """``[N, K]`` bool: ``g[n, k]`` differs from every ``g[n, j]``, j < k.

    With at most 64 GPUs a per-token uint64 bit set of the GPUs seen so far does it in O(K);
    otherwise pairwise compares (O(K^2), still cheaper than a row sort for small K).
    """
    N, K = g.shape
    new = np.ones(g.shape, bool)
    if num_gpus is not None and num_gpus <= 64:
        bits = np.left_shift(np.uint64(1), g.astype(np.uint64))
        seen = bits[:, 0].copy()
        for k in range(1, K):
            b = bits[:, k]
            np.equal(seen & b, 0, out=new[:, k])
            seen |= b
        return new
    for k in range(1, K):
        new[:, k] = np.all(g[:, k:k + 1] != g[:, :k], axis=1)
    return new


def serving_gpus(ids: np.ndarray, home: np.ndarray, rg: np.ndarray, count: np.ndarray,
                 hop: np.ndarray) -> np.ndarray:
    """``[N, K]`` the GPU that serves each of a token's top-K picks in one layer (ep model).

    ``ids`` ``[N, K]`` expert ids, ``home`` ``[N]``, ``rg`` ``[E, R]`` replica GPUs of the layer
    (-1 padded), ``count`` ``[E]`` replicas per expert.

    The chosen GPUs form a cover of the token's experts with the fewest remote GPUs (the home
    GPU is free): experts with one replica force their GPU; a replicated expert with a replica on
    the home GPU or on a forced GPU is served there (the token goes there anyway); the remaining
    replicated experts get an exact minimum hitting set of their replica GPUs
    (:func:`_hitting_set_bits` up to 64 GPUs, :func:`_min_cover` beyond). Ties between minimum covers: smallest sum of ``hop[home, g]`` over the
    remote GPUs (prefers the home node), then the lexicographically smallest sorted GPU ids.
    """
    g = rg[ids, 0]
    if rg.shape[1] == 1:
        return g
    rep = count[ids] > 1
    rows = np.flatnonzero(rep.any(axis=1))
    if rows.size == 0:
        return g
    if hop.shape[0] <= _BITMASK_MAX_GPUS:
        return _serving_gpus_bits(ids, home, rg, g, rep, hop)
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
    if unc.any() and unc.shape[1] * cand.shape[2] <= _LOCAL_MAX_CANDIDATES:
        _serve_uncovered_local(sub, unc, cand, hs, hop)
        out[rows] = sub
        return out
    # an uncovered expert whose replicas share no GPU with another uncovered expert's needs a GPU
    # of its own: the cheapest from home, then the lowest id (see _hitting_set_bits)
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
        choice = _min_cover(c, hs[tok], hop)                # [m, size]
        sub[tok[:, None], cols] = choice
    out[rows] = sub
    return out


def _serve_uncovered_local(sub: np.ndarray, unc: np.ndarray, cand: np.ndarray, home: np.ndarray,
                           hop: np.ndarray) -> None:
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
    bits = np.where(valid, np.left_shift(_ONE, local.reshape(m, K, R).astype(np.uint64)), np.uint64(0))
    masks = np.bitwise_or.reduce(bits, axis=2)            # [m, K], 0 for covered picks
    costs = hop[home[t_idx][:, None], table]              # [m, K*R] cost of each local GPU
    chosen = _hitting_set_bits(masks, np.arange(m), costs)
    served_local = _lowest_bit_index(np.where(masks != 0, masks & chosen[:, None], _ONE))
    served = np.take_along_axis(table, served_local, axis=1)
    sub[t_idx] = np.where(unc[t_idx], served, sub[t_idx])


def _popcount(x: np.ndarray) -> np.ndarray:
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


def _lowest_bit_index(x: np.ndarray) -> np.ndarray:
    """Index of the lowest set bit of each non-zero uint64."""
    low = x & (~x + _ONE)
    return _popcount(low - _ONE)


def _nth_bit_index(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index of the n-th lowest set bit (0-based) of each uint64, and whether it exists."""
    x = x.copy()
    for _ in range(n):
        x &= x - _ONE
    ok = x != 0
    return np.where(ok, _lowest_bit_index(np.where(ok, x, _ONE)), 0), ok


def _serving_gpus_bits(ids: np.ndarray, home: np.ndarray, rg: np.ndarray, g: np.ndarray,
                       rep: np.ndarray, hop: np.ndarray) -> np.ndarray:
    """:func:`serving_gpus` with GPU sets as uint64 bit masks (G <= 64).

    Only the replicated picks are processed (as flat indices), the others keep their one GPU.
    """
    N, K = ids.shape
    gpu_bit = np.left_shift(_ONE, np.arange(hop.shape[0], dtype=np.uint64))
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
    pick = np.where(at_home, home[ti], _lowest_bit_index(np.where(covered, on_visited, _ONE)))
    flat_out[fi[covered]] = pick[covered]
    uf, um = fi[~covered], Mf[~covered]
    if uf.size:
        ut = uf // K
        first = np.ones(ut.size, bool)       # ut is sorted (token-major)
        first[1:] = ut[1:] != ut[:-1]
        todo, pos = ut[first], np.cumsum(first) - 1
        masks = np.zeros((len(todo), K), np.uint64)   # 0 = nothing to meet
        masks[pos, uf % K] = um
        chosen = _hitting_set_bits(masks, home[todo], hop)
        flat_out[uf] = _lowest_bit_index(um & chosen[pos])
    return out


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


def _hitting_set_bits(masks: np.ndarray, home: np.ndarray, hop: np.ndarray) -> np.ndarray:
    """Minimum set of GPUs meeting every replica set, as a uint64 mask per token.

    ``masks`` ``[m, K]`` uint64 replica sets, 0 where there is no set to meet (none holds the
    home GPU); ``home`` ``[m]`` the row of ``hop`` that holds each token's costs: ``hop[home[t],
    g]`` is the cost of GPU (bit) g for token t. Ties: smallest sum of ``hop[home, g]``, then the
    lexicographically smallest sorted ids (see :func:`serving_gpus`). A set that shares no GPU
    with the token's other sets needs a GPU of its own and takes its cheapest one directly; the
    sets that share GPUs go to :func:`_hitting_set_search`. The two parts use disjoint GPUs, so
    the union of their optimal, tie-broken answers is optimal and tie-broken for the whole.
    """
    m, K = masks.shape
    gpu_bit = np.left_shift(_ONE, np.arange(hop.shape[1], dtype=np.uint64))
    width = int(_popcount(masks).max())
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
        chosen[tok] |= _hitting_set_search(sub, home[tok], hop, width)
    return chosen


def _hitting_set_search(masks: np.ndarray, home: np.ndarray, hop: np.ndarray, width: int) -> np.ndarray:
    """Exact minimum hitting set (uint64 mask per token) by iterative deepening on its size h.

    ``masks`` ``[m, K]`` (0 = no set), ``home`` ``[m]``. For each h, branch on which GPU of the
    first set not yet met joins (h - 1 levels); the last GPU must lie in the AND of the sets
    still unmet, and the cheapest (then lowest id) is taken. Every minimum hitting set is
    reached, so the result is exact. ``width ** (h - 1)`` branches per size (width = most
    replicas of an expert), vectorised over the tokens not yet solved; beyond
    ``_MAX_VECTOR_COMBOS`` the remaining tokens go to the per-token search.
    """
    m, K = masks.shape
    G = hop.shape[1]
    gpu_bit = np.left_shift(_ONE, np.arange(G, dtype=np.uint64))
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
        if width ** (size - 1) > _MAX_VECTOR_COMBOS:
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
            lex_less = (full & diff & (~diff + _ONE)) != 0
            better = ok & ((h < found_h - _EPS) | ((np.abs(h - found_h) <= _EPS) & lex_less))
            found = np.where(better, full, found)
            found_h = np.where(better, h, found_h)
        solved = np.isfinite(found_h)
        best[todo[solved]] = found[solved]
        todo = todo[~solved]
    return best


def _min_cover(cand: np.ndarray, home: np.ndarray, hop: np.ndarray) -> np.ndarray:
    """Pick one replica per expert: fewest distinct GPUs, then cheapest from home, then lowest ids.

    ``cand`` ``[m, u, R]`` replica GPUs (-1 padded), none on the home GPU. Returns ``[m, u]``.
    Exact: every hitting set of the experts' replica sets is reached by some choice vector, and
    all ``width ** u`` choice vectors are visited (vectorised over the m tokens). The key is
    ``(number of distinct GPUs, sum of hop[home, g] over them, sorted GPU ids)``, compared
    lexicographically, so the answer does not depend on the visiting order.
    """
    m, u, R = cand.shape
    width = int((cand >= 0).sum(axis=2).max())
    if width ** u > _MAX_VECTOR_COMBOS:
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
    """:func:`_min_cover` for one token: depth-first search with pruning on (count, hop sum).

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


def alltoall_time(bytes_matrix: np.ndarray, topology: Topology) -> float:
    """Alpha-beta time (seconds) of one all-to-all with ``bytes_matrix[a, b]`` bytes from a to b.

    A GPU sends its messages one after another through its port: its send time is the sum over
    destinations of ``latency_s + bytes / bandwidth`` (non-empty messages only), likewise for
    receiving; the slowest GPU bounds the step: ``max over GPUs of max(send, receive)``.
    """
    B = np.asarray(bytes_matrix, dtype=np.float64)
    off = ~np.eye(B.shape[0], dtype=bool)
    msg = (B > 0) & off
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(msg, topology.latency_s + B / topology.bandwidth, 0.0)
    return float(max(t.sum(axis=1).max(), t.sum(axis=0).max())) if B.size else 0.0


def ep_cost(trace: Trace, placement: Placement, topology: Topology, hidden_size: int | None = None,
            dtype_bytes: int = 2, home: np.ndarray | None = None,
            chunk_tokens: int = DEFAULT_CHUNK_TOKENS, progress: Callable[[int], None] | None = None) -> EPCost:
    """The ep cost of ``placement`` on ``trace`` (see :class:`EPCost` and :func:`serving_gpus`).

    ``home`` ``[T]`` overrides the home GPU of each token (default :func:`default_home`).
    """
    if not isinstance(trace, Trace):
        raise PlacerError("the ep cost needs a per-token trace (dedup depends on each token's whole top-K set), "
                          "not aggregate counts; give a trace file")
    check_compatible(trace, placement, topology)
    if hidden_size is not None:
        _check_bytes(hidden_size, dtype_bytes)
    L, T, G = trace.num_layers, trace.num_tokens, topology.num_gpus
    if home is None:
        home = default_home(trace, G)
    home = np.asarray(home)
    if home.shape != (T,) or not np.issubdtype(home.dtype, np.integer) or (T and (home.min() < 0 or home.max() >= G)):
        raise PlacerError(f"home must be [T={T}] GPU ids in [0, {G})")
    home = home.astype(np.int64)
    rg = replica_gpus(placement)
    count = placement.logcnt
    hop = np.asarray(topology.hop, dtype=np.float64)
    traffic = np.zeros((L, G * G), np.int64)
    spanned = 0
    served = 0
    for t0, chunk in zip(range(0, T, chunk_tokens), trace.iter_chunks(chunk_tokens)):
        ids = np.asarray(chunk.expert_ids)
        h_chunk = home[t0:t0 + chunk.num_tokens]
        for l in range(L):
            x, h = ids[l], h_chunk
            if chunk.dropped is not None:
                keep = ~np.asarray(chunk.dropped[l])
                x, h = x[keep], h[keep]
            gpus = serving_gpus(x, h, rg[l], count[l], hop)
            new = first_occurrence(gpus, G)
            spanned += int(new.sum())
            served += len(x)
            remote = new & (gpus != h[:, None])
            traffic[l] += np.bincount((h[:, None] * G + gpus)[remote], minlength=G * G)
        if progress is not None:
            progress(chunk.num_tokens)
    traffic = traffic.reshape(L, G, G)
    per_layer = traffic.sum(axis=(1, 2))
    copies = int(per_layer.sum())
    total_traffic = traffic.sum(axis=0)
    inter = int(total_traffic[topology.inter_node].sum())
    nbytes = time_s = per_layer_time = None
    if hidden_size is not None:
        unit = float(hidden_size) * float(dtype_bytes)
        nbytes = 2.0 * copies * unit
        # combine is the transpose of dispatch: the same max over GPUs of max(send, receive)
        per_layer_time = np.array([2.0 * alltoall_time(traffic[l] * unit, topology) for l in range(L)])
        time_s = float(per_layer_time.sum())
    return EPCost(copies=copies, bytes=nbytes, per_layer=per_layer, traffic=total_traffic,
                  inter_node_share=inter / copies if copies else 0.0,
                  mean_gpus_spanned=spanned / served if served else 0.0,
                  time_s=time_s, per_layer_time_s=per_layer_time, num_tokens=T,
                  hidden_size=None if hidden_size is None else int(hidden_size), dtype_bytes=int(dtype_bytes))


# ----------------------------------------------------------------------------- load
def load_cost(data: Trace | Profile, placement: Placement, chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
              progress: Callable[[int], None] | None = None) -> LoadCost:
    """Token picks per GPU per layer and their imbalance (see :class:`LoadCost`)."""
    check_compatible(data, placement)
    load = (data.load if isinstance(data, Profile)
            else Profile.from_trace(data, chunk_tokens=chunk_tokens, coact=False, trans=False,
                                    progress=progress).load)
    share = _pad_experts(load.astype(np.float64), placement.num_experts, (1,)) / placement.logcnt
    gpu_load = np.einsum("le,leg->lg", share, placement.expert_gpus.astype(np.float64))
    mean = gpu_load.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        imbalance = np.where(mean > 0, gpu_load.max(axis=1) / mean, 1.0)
    return LoadCost(gpu_load=gpu_load, imbalance=imbalance)


# ------------------------------------------------------------------------- evaluate
def passes_over_trace(data: Trace | Profile, costs: Sequence[str]) -> int:
    """How many times :func:`evaluate` reads the tokens of ``data`` for ``costs`` (for progress)."""
    return len([c for c in costs if c in COST_MODELS]) if isinstance(data, Trace) else 0


def evaluate(data: Trace | Profile, placement: Placement, topology: Topology,
             costs: Sequence[str] = COST_MODELS, hidden_size: int | None = None, dtype_bytes: int = 2,
             home: np.ndarray | None = None, chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
             matrices: bool = True, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """A JSON-able summary of the chosen cost models (plain Python types, arrays as lists).

    ``ep`` needs a Trace and ``coherent`` transition counts: without them their entry says it
    was skipped and why.
    ``matrices=False`` leaves out the ``[G, G]`` traffic and ``[L, G]`` load arrays.
    ``progress`` is called with the tokens of every chunk read (one pass per trace-based model).
    """
    unknown = [c for c in costs if c not in COST_MODELS]
    if unknown:
        raise PlacerError(f"unknown cost model {unknown[0]!r}; choose from {', '.join(COST_MODELS)}")
    check_compatible(data, placement, topology)
    L, E = _shape_of(data)
    out: dict[str, Any] = {
        "data": {"kind": "trace" if isinstance(data, Trace) else "profile", "num_layers": L,
                 "num_experts": E, "num_tokens": int(data.num_tokens), "top_k": int(data.top_k)},
        "placement": {"num_gpus": placement.num_gpus, "slots_per_gpu": placement.slots_per_gpu,
                      "replicas_per_layer": placement.num_replicas},
        "topology": topology.describe(),
    }
    big = ("traffic", "gpu_load")
    for name in costs:
        if name == "coherent" and isinstance(data, Profile) and data.trans is None and L > 1:
            out["coherent"] = {"model": "coherent", "skipped": "needs inter-layer transitions; these counts have loads only"}
            continue
        if name == "coherent":
            res = coherent_cost(data, placement, topology, chunk_tokens=chunk_tokens, progress=progress,
                                hidden_size=hidden_size, dtype_bytes=dtype_bytes).summary()
        elif name == "ep":
            if not isinstance(data, Trace):
                out["ep"] = {"model": "ep", "skipped": "needs a per-token trace, not aggregate counts"}
                continue
            res = ep_cost(data, placement, topology, hidden_size=hidden_size, dtype_bytes=dtype_bytes,
                          home=home, chunk_tokens=chunk_tokens, progress=progress).summary()
        else:
            res = load_cost(data, placement, chunk_tokens=chunk_tokens, progress=progress).summary()
        if not matrices:
            res = {k: v for k, v in res.items() if k not in big}
        out[name] = res
    return to_jsonable(out)
