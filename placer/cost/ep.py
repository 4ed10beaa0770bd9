"""The ep cost model: standard expert parallelism, two all-to-alls per layer, with dedup.

As in DeepSpeed-MoE, Megatron-LM and DeepEP: each token lives on a home GPU (its data-parallel
rank; :func:`default_home`). At every layer it is dispatched once to every distinct remote GPU
that serves one of its top-K experts (:func:`~placer.cost.routing.serving_gpus` picks among
replicas) and combined back. Unit: token copies (bytes and seconds given a hidden size).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from placer.cost.alltoall import alltoall_time
from placer.cost.cover import DEFAULT_LIMITS, CoverLimits
from placer.cost.inputs import bytes_per_copy, check_compatible, replica_gpus
from placer.cost.registry import CostModel, register
from placer.cost.results import EPCost
from placer.cost.routing import serving_gpus
from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.model.topology import Topology
from placer.model.trace import DEFAULT_CHUNK_TOKENS, Trace


def ep_cost(trace: Trace, placement: Placement, topology: Topology, hidden_size: int | None = None,
            dtype_bytes: int = 2, home: np.ndarray | None = None,
            chunk_tokens: int = DEFAULT_CHUNK_TOKENS, progress: Callable[[int], None] | None = None,
            limits: CoverLimits = DEFAULT_LIMITS) -> EPCost:
    """The ep cost of ``placement`` on ``trace`` (see :class:`EPCost` and :func:`serving_gpus`).

    ``home`` ``[T]`` overrides the home GPU of each token (default :func:`default_home`).
    ``limits`` choose among the exact replica-cover searches (the result does not depend on
    them). ``progress`` is called with the tokens of every chunk read. Tokens a router dropped
    at a layer are not dispatched there.
    """
    if not isinstance(trace, Trace):
        raise PlacerError("the ep cost needs a per-token trace (dedup depends on each token's whole top-K set), "
                          "not aggregate counts; give a trace file")
    check_compatible(trace, placement, topology)
    if hidden_size is not None:
        bytes_per_copy(hidden_size, dtype_bytes)
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
            gpus = serving_gpus(x, h, rg[l], count[l], hop, limits)
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
                  hidden_size=None if hidden_size is None else int(hidden_size), dtype_bytes=int(dtype_bytes),
                  layer_traffic=traffic)


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


register(CostModel("ep", lambda data, placement, topology, o: ep_cost(
    data, placement, topology, hidden_size=o.hidden_size, dtype_bytes=o.dtype_bytes, home=o.home,
    chunk_tokens=o.chunk_tokens, progress=o.progress).summary(),
    lambda data: None if isinstance(data, Trace) else "needs a per-token trace, not aggregate counts"))
