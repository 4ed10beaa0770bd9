"""The alpha-beta time of one all-to-all, the time figure of the coherent and ep cost models."""

from __future__ import annotations

import numpy as np

from placer.model.topology import Topology


def alltoall_time(bytes_matrix: np.ndarray, topology: Topology) -> float:
    """Alpha-beta time (seconds) of one all-to-all with ``bytes_matrix[a, b]`` bytes from a to b.

    ``bytes_matrix`` ``[G, G]`` (the diagonal stays on its GPU and is ignored). A GPU sends its
    messages one after another through its port: its send time is the sum over destinations of
    ``latency_s + bytes / bandwidth`` (non-empty messages only), likewise for receiving; the
    slowest GPU bounds the step: ``max over GPUs of max(send, receive)``.
    """
    B = np.asarray(bytes_matrix, dtype=np.float64)
    off = ~np.eye(B.shape[0], dtype=bool)
    msg = (B > 0) & off
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(msg, topology.latency_s + B / topology.bandwidth, 0.0)
    return float(max(t.sum(axis=1).max(), t.sum(axis=0).max())) if B.size else 0.0
