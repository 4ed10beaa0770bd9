"""The cost model's byte prediction for the tokens a replay moves (numpy only).

The replay counts hidden-state rows of ``H`` fp32 values (``dtype_bytes = 4``) that cross from one
rank to another. The prediction for the same tokens:

- ``ep``: :func:`placer.cost.ep_cost` with ``hidden_size=H, dtype_bytes=4``: dispatch plus combine
  bytes, one row each way per (token, layer, distinct remote rank), home = sequence s -> s % G.
- ``coherent``: :func:`placer.cost.coherent_cost` on one node (hop 1 between any two ranks). Its
  ``total`` is the sum over tokens and transitions of the MEAN over the K x K pick pairs of the
  hop; the replay sends one row per pair whose ranks differ, so bytes = ``K^2 * total * H * 4``
  (the product is an integer up to float rounding, which :func:`_exact` removes).

When ``placer.cost`` is not importable (a checkout without it) the same definitions are counted
here per token, plainly, and the report says so in ``predicted_by``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from placer.placement import Placement
from placer.traces.trace import Trace

DTYPE_BYTES = 4  # the replay moves fp32 activations


def predict_bytes(trace: Trace, placement: Placement, mode: str, hidden: int,
                  home: np.ndarray) -> dict[str, Any]:
    """``{"bytes": int, "per_layer": [n] ints, "traffic": [G, G] ints or None, "predicted_by": str}``.

    ``per_layer`` has L entries for ``ep`` and L-1 transitions for ``coherent``. ``home`` ``[T]``
    is the replay's home rank per token (the cost model's default policy).
    """
    try:
        from placer import cost  # noqa: F401  (lands from the cost model's branch)
    except ImportError:
        cost = None
    if cost is not None:
        return _from_cost_model(cost, trace, placement, mode, hidden, home)
    if mode == "ep":
        return _ep_count(trace, placement, hidden, home)
    return _coherent_count(trace, placement, hidden)


def _exact(x: float) -> int:
    return int(np.rint(x))


def _from_cost_model(cost, trace, placement, mode, hidden, home) -> dict[str, Any]:
    from placer.topology import Topology
    topo = Topology.uniform(placement.num_gpus)
    if mode == "ep":
        res = cost.ep_cost(trace, placement, topo, hidden_size=hidden, dtype_bytes=DTYPE_BYTES, home=home)
        row = hidden * DTYPE_BYTES
        per_layer = np.asarray(res.per_layer, dtype=np.float64)
        return {"bytes": _exact(res.bytes), "per_layer": [_exact(2 * c * row) for c in per_layer],
                "traffic": np.rint(np.asarray(res.traffic, np.float64) * 2 * row).astype(np.int64).tolist(),
                "predicted_by": "placer.cost.ep_cost"}
    res = cost.coherent_cost(trace, placement, topo)
    scale = trace.top_k ** 2 * hidden * DTYPE_BYTES
    return {"bytes": _exact(res.total * scale),
            "per_layer": [_exact(v * scale) for v in np.asarray(res.per_layer, np.float64)],
            "traffic": np.rint(np.asarray(res.traffic, np.float64) * scale).astype(np.int64).tolist(),
            "predicted_by": "placer.cost.coherent_cost"}


def _ep_count(trace: Trace, placement: Placement, hidden: int, home: np.ndarray) -> dict[str, Any]:
    from placer.validate.routing import ep_dest
    G, row = placement.num_gpus, hidden * DTYPE_BYTES
    traffic = np.zeros((G, G), np.int64)
    per_layer = []
    ids = np.asarray(trace.expert_ids, np.int64)
    eg = placement.expert_gpus
    for l in range(trace.num_layers):
        dest = ep_dest(ids[l], home, eg[l])
        remote = np.zeros((len(home), G), bool)
        remote[np.repeat(np.arange(len(home)), trace.top_k), dest.ravel()] = True
        remote[np.arange(len(home)), home] = False
        t, d = np.nonzero(remote)
        np.add.at(traffic, (home[t], d), row)   # dispatch
        np.add.at(traffic, (d, home[t]), row)   # combine
        per_layer.append(2 * len(t) * row)
    return {"bytes": int(sum(per_layer)), "per_layer": per_layer, "traffic": traffic.tolist(),
            "predicted_by": "placer.validate.predict (placer.cost not available)"}


def _coherent_count(trace: Trace, placement: Placement, hidden: int) -> dict[str, Any]:
    G, K, row = placement.num_gpus, trace.top_k, hidden * DTYPE_BYTES
    gpu = placement.gpu_of
    ids = np.asarray(trace.expert_ids, np.int64)
    traffic = np.zeros((G, G), np.int64)
    per_layer = []
    for l in range(trace.num_layers - 1):
        a = gpu[l][ids[l]]          # [T, K]
        b = gpu[l + 1][ids[l + 1]]  # [T, K]
        src = np.repeat(a, K, axis=1).ravel()
        dst = np.tile(b, (1, K)).ravel()
        off = src != dst
        np.add.at(traffic, (src[off], dst[off]), row)
        per_layer.append(int(off.sum()) * row)
    return {"bytes": int(sum(per_layer)), "per_layer": per_layer, "traffic": traffic.tolist(),
            "predicted_by": "placer.validate.predict (placer.cost not available)"}
