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
as in :class:`~placer.profile.Profile`.

Everything is vectorised over tokens and processed chunk by chunk (``Trace.iter_chunks`` for
the coherent and load counts through :meth:`Profile.from_trace`), so memory is bounded by the
chunk and memory-mapped traces of any length work.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from placer.errors import PlacerError
from placer.fileio import to_jsonable
from placer.placement import Placement
from placer.profile import Profile
from placer.topology import Topology
from placer.traces.trace import DEFAULT_CHUNK_TOKENS, Trace

COST_MODELS = ("coherent", "ep", "load")
# Above this many replica combinations per token the exact cover search runs per token in Python
# (branch and bound) instead of vectorised over tokens; both return the same unique cover.
_MAX_VECTOR_COMBOS = 4096
_EPS = 1e-9


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
    """

    total: float
    per_transition: float
    per_layer: np.ndarray
    traffic: np.ndarray
    num_tokens: int
    inter_node_share: float

    @property
    def max_link(self) -> float:
        """The largest off-diagonal traffic entry (token moves on the busiest GPU pair)."""
        return float(self.traffic.max()) if self.traffic.size else 0.0

    def summary(self) -> dict[str, Any]:
        return {"model": "coherent", "unit": "hop-weighted token transitions",
                "total": self.total, "per_transition": self.per_transition,
                "inter_node_share": self.inter_node_share, "max_link": self.max_link,
                "per_layer": self.per_layer, "traffic": self.traffic}


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
    if placement.num_experts != E:
        raise PlacerError(f"the placement has {placement.num_experts} experts but the {what} has {E}; "
                          f"solve a placement for this {what}")
    if topology is not None and topology.num_gpus != placement.num_gpus:
        raise PlacerError(f"the placement uses {placement.num_gpus} GPUs but the topology has {topology.num_gpus}; "
                          f"pass --gpus {placement.num_gpus}")


def replica_gpus(placement: Placement) -> np.ndarray:
    """``[L, E, R]`` GPU of each replica of each expert (ascending physical slot), -1 padded."""
    l2p = placement.log2phy
    return np.where(l2p >= 0, l2p // placement.slots_per_gpu, -1)


# ------------------------------------------------------------------------ coherent
def nearest_pairs(rg_a: np.ndarray, rg_b: np.ndarray, hop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every expert pair (i at layer l, j at layer l+1), the nearest replica pair.

    ``rg_a`` ``[E, Ra]`` and ``rg_b`` ``[E, Rb]`` are replica GPUs (-1 padded) of the two layers.
    Returns ``(hop_min, gpu_a, gpu_b)``, each ``[E, E]``: the minimum hop over replica pairs and
    the GPUs achieving it (ties: the lowest physical slots, i.e. the first pair found).
    """
    E = rg_a.shape[0]
    best = np.full((E, rg_b.shape[0]), np.inf)
    ga = np.zeros(best.shape, np.int64)
    gb = np.zeros(best.shape, np.int64)
    for r1 in range(rg_a.shape[1]):
        a = rg_a[:, r1]
        for r2 in range(rg_b.shape[1]):
            b = rg_b[:, r2]
            h = hop[np.maximum(a, 0)[:, None], np.maximum(b, 0)[None, :]]
            h = np.where((a >= 0)[:, None] & (b >= 0)[None, :], h, np.inf)
            better = h < best
            best = np.where(better, h, best)
            ga = np.where(better, a[:, None], ga)
            gb = np.where(better, b[None, :], gb)
    return best, ga, gb


def coherent_cost(data: Trace | Profile, placement: Placement, topology: Topology,
                  chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> CoherentCost:
    """The coherent (ExFlow) cost of ``placement`` on a trace or profile (see :class:`CoherentCost`).

    A Trace is first reduced to its transition counts (:meth:`Profile.from_trace`, chunked):
    the cost depends on tokens only through ``trans[l, i, j]``, so both inputs give the same
    number.
    """
    check_compatible(data, placement, topology)
    profile = data if isinstance(data, Profile) else Profile.from_trace(data, chunk_tokens=chunk_tokens, coact=False)
    L, G = profile.num_layers, topology.num_gpus
    hop = np.asarray(topology.hop, dtype=np.float64)
    per_layer = np.zeros(max(L - 1, 0))
    traffic = np.zeros(G * G)
    if L > 1:
        weights = profile.transition_weights()
        rg = replica_gpus(placement)
        for l in range(L - 1):
            hmin, ga, gb = nearest_pairs(rg[l], rg[l + 1], hop)
            w = weights[l]
            per_layer[l] = float((w * hmin).sum())
            traffic += np.bincount((ga * G + gb).ravel(), weights=w.ravel(), minlength=G * G)
    traffic = traffic.reshape(G, G)
    np.fill_diagonal(traffic, 0.0)
    total = float(per_layer.sum())
    transitions = profile.num_tokens * max(L - 1, 0)
    moved = float(traffic.sum())
    inter = float(traffic[topology.inter_node].sum())
    return CoherentCost(total=total, per_transition=total / transitions if transitions else 0.0,
                        per_layer=per_layer, traffic=traffic, num_tokens=int(profile.num_tokens),
                        inter_node_share=inter / moved if moved > 0 else 0.0)


# ------------------------------------------------------------------------------- ep
def default_home(trace: Trace, num_gpus: int) -> np.ndarray:
    """``[T]`` home GPU of every token: sequence s lives on GPU ``s % num_gpus`` (round robin)."""
    off = trace.offsets
    seq = np.repeat(np.arange(len(off) - 1), np.diff(off))
    return (seq % num_gpus).astype(np.int64)


def first_occurrence(g: np.ndarray) -> np.ndarray:
    """``[N, K]`` bool: ``g[n, k]`` differs from every ``g[n, j]``, j < k (dedup by pairwise compare,
    cheaper than a row sort for small K)."""
    new = np.ones(g.shape, bool)
    for k in range(1, g.shape[1]):
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
    (:func:`_min_cover`). Ties between minimum covers: smallest sum of ``hop[home, g]`` over the
    remote GPUs (prefers the home node), then the lexicographically smallest sorted GPU ids.
    """
    g = rg[ids, 0]
    if rg.shape[1] == 1:
        return g
    rep = count[ids] > 1
    rows = np.flatnonzero(rep.any(axis=1))
    if rows.size == 0:
        return g
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
    u = unc.sum(axis=1)
    # uncovered columns first, in column order
    order = np.argsort(~unc, axis=1, kind="stable")
    for size in np.unique(u[u > 0]):
        size = int(size)
        tok = np.flatnonzero(u == size)
        cols = order[tok, :size]                            # [m, size]
        c = cand[tok[:, None], cols]                        # [m, size, R]
        choice = _min_cover(c, hs[tok], hop)                # [m, size]
        sub[tok[:, None], cols] = choice
    out[rows] = sub
    return out


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


def _min_cover_one(cand: np.ndarray, home: int, hop: np.ndarray) -> np.ndarray:
    """:func:`_min_cover` for one token: depth-first search with pruning on (count, hop sum)."""
    u = cand.shape[0]
    lists = [[int(x) for x in row if x >= 0] for row in cand]
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
            chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> EPCost:
    """The ep cost of ``placement`` on ``trace`` (see :class:`EPCost` and :func:`serving_gpus`).

    ``home`` ``[T]`` overrides the home GPU of each token (default :func:`default_home`).
    """
    if not isinstance(trace, Trace):
        raise PlacerError("the ep cost needs a per-token trace (dedup depends on each token's whole top-K set), "
                          "not aggregate counts; give a trace file")
    check_compatible(trace, placement, topology)
    if hidden_size is not None and (int(hidden_size) < 1 or int(dtype_bytes) < 1):
        raise PlacerError(f"--hidden-size and --dtype-bytes must be positive, got {hidden_size} and {dtype_bytes}")
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
        ids = np.asarray(chunk.expert_ids).astype(np.int64)
        h_chunk = home[t0:t0 + chunk.num_tokens]
        for l in range(L):
            x, h = ids[l], h_chunk
            if chunk.dropped is not None:
                keep = ~np.asarray(chunk.dropped[l])
                x, h = x[keep], h[keep]
            gpus = serving_gpus(x, h, rg[l], count[l], hop)
            new = first_occurrence(gpus)
            spanned += int(new.sum())
            served += len(x)
            remote = new & (gpus != h[:, None])
            traffic[l] += np.bincount((h[:, None] * G + gpus)[remote], minlength=G * G)
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
def load_cost(data: Trace | Profile, placement: Placement, chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> LoadCost:
    """Token picks per GPU per layer and their imbalance (see :class:`LoadCost`)."""
    check_compatible(data, placement)
    load = (data.load if isinstance(data, Profile)
            else Profile.from_trace(data, chunk_tokens=chunk_tokens, coact=False, trans=False).load)
    share = load.astype(np.float64) / placement.logcnt
    gpu_load = np.einsum("le,leg->lg", share, placement.expert_gpus.astype(np.float64))
    mean = gpu_load.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        imbalance = np.where(mean > 0, gpu_load.max(axis=1) / mean, 1.0)
    return LoadCost(gpu_load=gpu_load, imbalance=imbalance)


# ------------------------------------------------------------------------- evaluate
def evaluate(data: Trace | Profile, placement: Placement, topology: Topology,
             costs: Sequence[str] = COST_MODELS, hidden_size: int | None = None, dtype_bytes: int = 2,
             home: np.ndarray | None = None, chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
             matrices: bool = True) -> dict[str, Any]:
    """A JSON-able summary of the chosen cost models (plain Python types, arrays as lists).

    ``ep`` needs a Trace: with a Profile its entry says it was skipped and why.
    ``matrices=False`` leaves out the ``[G, G]`` traffic and ``[L, G]`` load arrays.
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
        if name == "coherent":
            res = coherent_cost(data, placement, topology, chunk_tokens=chunk_tokens).summary()
        elif name == "ep":
            if not isinstance(data, Trace):
                out["ep"] = {"model": "ep", "skipped": "needs a per-token trace, not aggregate counts"}
                continue
            res = ep_cost(data, placement, topology, hidden_size=hidden_size, dtype_bytes=dtype_bytes,
                          home=home, chunk_tokens=chunk_tokens).summary()
        else:
            res = load_cost(data, placement, chunk_tokens=chunk_tokens).summary()
        if not matrices:
            res = {k: v for k, v in res.items() if k not in big}
        out[name] = res
    return to_jsonable(out)
