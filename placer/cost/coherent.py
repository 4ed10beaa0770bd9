"""The coherent cost model (ExFlow's context-coherent expert parallelism).

One all-to-all per layer; a token stays on the GPU of the expert that processed it. Its cost
between layers l and l+1 is the mean over its K x K pairs (i at l, j at l+1) of
``hop(gpu(l, i), gpu(l+1, j))``; with replicas each pair uses its nearest replicas
(:func:`~placer.cost.objectives.nearest_pairs`). Unit: hop-weighted token transitions.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from placer.cost import objectives
from placer.cost.alltoall import alltoall_time
from placer.cost.inputs import bytes_per_copy, check_compatible, pad_experts, replica_gpus
from placer.cost.objectives import nearest_pairs
from placer.cost.registry import CostModel, register
from placer.cost.results import CoherentCost
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.model.trace import DEFAULT_CHUNK_TOKENS, Trace

# tokens per block of K x K pair indices: the block's index buffer stays in cache
_PAIR_BLOCK = 4096


def coherent_cost(data: Trace | Profile, placement: Placement, topology: Topology,
                  chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
                  progress: Callable[[int], None] | None = None,
                  hidden_size: int | None = None, dtype_bytes: int = 2) -> CoherentCost:
    """The coherent (ExFlow) cost of ``placement`` on a trace or profile (see :class:`CoherentCost`).

    From a Profile: the per-layer cost is the objective itself
    (:func:`~placer.cost.objectives.coherent_per_layer` on ``trans / K**2``). From a Trace:
    pairs are counted directly between *placement units* (the distinct replica-GPU lists of a
    layer: one per GPU without replicas), which is G x G instead of E x E bins per layer and
    gives the same number, since the nearest-replica hop depends only on the two units.
    ``progress`` is called with the tokens of every chunk read.
    """
    check_compatible(data, placement, topology)
    L, G = data.num_layers, topology.num_gpus
    hop = np.asarray(topology.hop, dtype=np.float64)
    rg = replica_gpus(placement)
    per_layer = np.zeros(max(L - 1, 0))
    by_units = isinstance(data, Trace)
    if by_units:
        unit_gpus, counts = _unit_transitions(data, rg, chunk_tokens, progress)
        pair_weights = [c / float(data.top_k ** 2) for c in counts]
    else:
        pair_weights = pad_experts(data.transition_weights(), placement.num_experts, (1, 2)) if L > 1 else []
        unit_gpus = [rg[l] for l in range(L)]
        if L > 1:
            per_layer = objectives.coherent_per_layer(pair_weights, rg, hop)
    layer_traffic = np.zeros((max(L - 1, 0), G, G))
    for l in range(L - 1):
        hmin, ga, gb = nearest_pairs(unit_gpus[l], unit_gpus[l + 1], hop)
        w = pair_weights[l]
        if by_units:        # the objective's sum, on unit pairs instead of expert pairs
            per_layer[l] = float((w * hmin).sum())
        layer_traffic[l] = np.bincount((ga * G + gb).ravel(), weights=w.ravel(), minlength=G * G).reshape(G, G)
        np.fill_diagonal(layer_traffic[l], 0.0)
    traffic = layer_traffic.sum(axis=0)
    time_s = per_layer_time = None
    if hidden_size is not None:
        unit = float(bytes_per_copy(hidden_size, dtype_bytes))
        per_layer_time = np.array([alltoall_time(t * unit, topology) for t in layer_traffic])
        time_s = float(per_layer_time.sum())
    total = float(per_layer.sum())
    transitions = data.num_tokens * max(L - 1, 0)
    moved = float(traffic.sum())
    inter = float(traffic[topology.inter_node].sum())
    return CoherentCost(total=total, per_transition=total / transitions if transitions else 0.0,
                        per_layer=per_layer, traffic=traffic, num_tokens=int(data.num_tokens),
                        inter_node_share=inter / moved if moved > 0 else 0.0,
                        time_s=time_s, per_layer_time_s=per_layer_time, layer_traffic=layer_traffic)


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


def _skip(data: Trace | Profile) -> str | None:
    if isinstance(data, Profile) and data.trans is None and data.num_layers > 1:
        return "needs inter-layer transitions; these counts have loads only"
    return None


register(CostModel("coherent", lambda data, placement, topology, o: coherent_cost(
    data, placement, topology, chunk_tokens=o.chunk_tokens, progress=o.progress, hidden_size=o.hidden_size,
    dtype_bytes=o.dtype_bytes).summary(), _skip))
