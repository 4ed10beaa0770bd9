"""The cluster: G GPUs in nodes, a hop cost and a bandwidth between every pair.

- ``hop``       ``[G, G]`` float64, unitless: 0 on the diagonal (same GPU), 1 within a node,
  ``inter_node_cost`` across nodes. The coherent and ep cost models weigh traffic with it.
- ``bandwidth`` ``[G, G]`` float64, bytes/s per direction between two GPUs (inf on the
  diagonal). The time estimate uses it.
- ``latency_s`` seconds, the alpha of the alpha-beta model, paid once per message.

The default inter-node hop cost is the bandwidth ratio, NVLink (900 GB/s) over a 400 Gb/s NIC
(50 GB/s) = 18: moving a token across nodes costs as much time as moving 18 within one.
"""

from __future__ import annotations

import tokenize
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from placer.errors import PlacerError

NVLINK_BYTES_PER_S = 900e9
NIC_BYTES_PER_S = 400e9 / 8
DEFAULT_LATENCY_S = 5e-6
DEFAULT_GPUS_PER_NODE = 8        # a node of today's GPU servers (DGX/HGX: 8 GPUs on NVLink)


@dataclass(frozen=True, eq=False)
class Topology:
    """G GPUs, ``gpus_per_node`` per node, hop costs and bandwidths (see module docstring)."""

    num_gpus: int
    gpus_per_node: int
    hop: np.ndarray
    bandwidth: np.ndarray
    latency_s: float = DEFAULT_LATENCY_S

    @property
    def num_nodes(self) -> int:
        return self.num_gpus // self.gpus_per_node

    @property
    def node_of(self) -> np.ndarray:
        """``[G]`` node index of each GPU."""
        return np.arange(self.num_gpus) // self.gpus_per_node

    @property
    def inter_node(self) -> np.ndarray:
        """``[G, G]`` bool: the two GPUs sit in different nodes."""
        n = self.node_of
        return n[:, None] != n[None, :]

    @classmethod
    def uniform(cls, num_gpus: int, gpus_per_node: int | None = None,
                inter_node_cost: float | None = None,
                intra_bandwidth: float = NVLINK_BYTES_PER_S,
                inter_bandwidth: float = NIC_BYTES_PER_S,
                latency_s: float = DEFAULT_LATENCY_S) -> "Topology":
        """Nodes of ``gpus_per_node`` GPUs (default: one node of all GPUs).

        ``inter_node_cost`` defaults to ``intra_bandwidth / inter_bandwidth``.
        """
        if num_gpus < 1:
            raise PlacerError(f"--gpus must be at least 1, got {num_gpus}")
        check_gpus(num_gpus)
        gpn = num_gpus if gpus_per_node is None else int(gpus_per_node)
        if gpn < 1 or num_gpus % gpn:
            raise PlacerError(f"--gpus {num_gpus} is not a whole number of nodes of --gpus-per-node {gpn}; "
                              f"use a divisor of {num_gpus}")
        if intra_bandwidth <= 0 or inter_bandwidth <= 0:
            raise PlacerError("bandwidths must be positive")
        cost = intra_bandwidth / inter_bandwidth if inter_node_cost is None else float(inter_node_cost)
        if cost < 0 or not np.isfinite(cost):
            raise PlacerError(f"--inter-node-cost must be a non-negative number, got {inter_node_cost}")
        node = np.arange(num_gpus) // gpn
        inter = node[:, None] != node[None, :]
        hop = np.where(inter, cost, 1.0)
        np.fill_diagonal(hop, 0.0)
        bw = np.where(inter, float(inter_bandwidth), float(intra_bandwidth))
        np.fill_diagonal(bw, np.inf)
        return cls(num_gpus, gpn, hop, bw, float(latency_s))

    @classmethod
    def from_bandwidth_matrix(cls, bandwidth: np.ndarray, gpus_per_node: int | None = None,
                              latency_s: float = DEFAULT_LATENCY_S, name: str = "bandwidth matrix") -> "Topology":
        """A topology from a ``[G, G]`` bandwidth matrix in bytes/s (diagonal ignored).

        Hop costs are ``max_bandwidth / bandwidth``: the fastest link costs 1.
        """
        from placer.model.fields import check_kind
        check_kind(np.asarray(bandwidth), f"{name}", "iuf", "bandwidths in bytes/s (real numbers)",
                   "give G rows of G numbers in bytes/s")
        bw = np.asarray(bandwidth, dtype=np.float64)
        if bw.ndim != 2 or bw.shape[0] != bw.shape[1] or bw.shape[0] < 1:
            raise PlacerError(f"{name}: a bandwidth matrix must be square [G, G], got shape {list(bw.shape)}")
        G = bw.shape[0]
        off = ~np.eye(G, dtype=bool)
        if np.any(~np.isfinite(bw[off])) or np.any(bw[off] <= 0):
            raise PlacerError(f"{name}: off-diagonal bandwidths must be positive finite numbers (bytes/s)")
        bw = bw.copy()
        np.fill_diagonal(bw, np.inf)
        fastest = bw[off].max() if G > 1 else 1.0
        hop = np.where(off, fastest / bw, 0.0)
        gpn = G if gpus_per_node is None else int(gpus_per_node)
        if gpn < 1 or G % gpn:
            raise PlacerError(f"{name}: {G} GPUs are not a whole number of nodes of {gpn}")
        return cls(G, gpn, hop, bw, float(latency_s))

    @classmethod
    def from_file(cls, path: str | Path, gpus_per_node: int | None = None) -> "Topology":
        """A topology from the ``[G, G]`` bandwidth matrix (bytes/s) in ``path`` (see
        :func:`read_bandwidth_matrix`)."""
        return cls.from_bandwidth_matrix(read_bandwidth_matrix(path), gpus_per_node, name=str(path))

    @classmethod
    def for_cluster(cls, num_gpus: int, gpus_per_node: int | None = None, inter_node_cost: float | None = None,
                    bandwidth_file: str | Path | None = None, intra_bandwidth: float = NVLINK_BYTES_PER_S,
                    inter_bandwidth: float = NIC_BYTES_PER_S) -> "Topology":
        """What every command builds from its options: the bandwidth matrix of ``bandwidth_file``
        when given, else uniform nodes. ``gpus_per_node`` defaults to 8 when G is a multiple of 8
        (a node of today's GPU servers), else one node of all G; a larger ``gpus_per_node`` than
        G means one node (a sweep over G keeps one node size)."""
        gpn = min(gpus_per_node, num_gpus) if gpus_per_node is not None else (
            DEFAULT_GPUS_PER_NODE if num_gpus % DEFAULT_GPUS_PER_NODE == 0 else num_gpus)
        if bandwidth_file:
            bw = read_bandwidth_matrix(bandwidth_file)
            if bw.shape[0] != num_gpus:
                raise PlacerError(f"{bandwidth_file}: the bandwidth matrix is for {bw.shape[0]} GPUs, not {num_gpus}; "
                                  f"give a {num_gpus} x {num_gpus} matrix")
            return cls.from_bandwidth_matrix(bw, gpn, name=str(bandwidth_file))
        return cls.uniform(num_gpus, gpn, inter_node_cost, intra_bandwidth, inter_bandwidth)

    def describe(self) -> dict:
        return {"num_gpus": self.num_gpus, "gpus_per_node": self.gpus_per_node,
                "num_nodes": self.num_nodes,
                "hop_intra_node": float(self.hop[0, 1]) if self.gpus_per_node > 1 else None,
                "hop_inter_node": float(self.hop[0, self.gpus_per_node]) if self.num_nodes > 1 else None}


def check_gpus(num_gpus: int) -> None:
    """Refuse a GPU count whose ``[G, G]`` matrices would exceed the memory budget."""
    from placer.limits import check_budget, topology_bytes
    check_budget(topology_bytes(num_gpus), f"--gpus {num_gpus} (G x G hop and bandwidth matrices)",
                 "use fewer GPUs: a placement needs at most one GPU per expert slot")


def read_bandwidth_matrix(path: str | Path) -> np.ndarray:
    """A ``[G, G]`` bandwidth matrix (bytes/s) from ``.npy`` or whitespace/CSV text (square:
    checked by :meth:`Topology.from_bandwidth_matrix`). The ``.npy`` header is checked (numbers,
    two dimensions, within the memory budget) before its data is read."""
    from placer.fileio import read_bytes

    path = Path(path)
    raw = read_bytes(path, "--topology")
    try:
        if path.suffix == ".npy":
            return _npy_matrix(path, raw)
        text = raw.decode("utf-8").replace(",", " ")
        rows = [[float(x) for x in line.split()] for line in text.splitlines() if line.strip()]
        if not rows or any(len(r) != len(rows) for r in rows):
            raise ValueError(f"{len(rows)} rows of lengths {sorted({len(r) for r in rows})}")
        return np.array(rows)
    except (ValueError, OSError, EOFError, UnicodeDecodeError, SyntaxError, tokenize.TokenError) as exc:
        raise PlacerError(f"{path}: cannot read a bandwidth matrix ({' '.join(str(exc).split())[:100]}); "
                          f"give G rows of G numbers in bytes/s") from None


def _npy_matrix(path: Path, raw: bytes) -> np.ndarray:
    import io

    from placer.limits import check_budget, npy_header
    fh = io.BytesIO(raw)
    shape, _fortran, dtype = npy_header(fh)
    if dtype.hasobject or dtype.kind not in "iuf" or len(shape) != 2:
        raise ValueError(f"the array is {dtype} of shape {list(shape)}, not a [G, G] matrix of numbers")
    check_budget(int(np.prod(shape, dtype=object)) * dtype.itemsize, f"{path}: a {list(shape)} matrix",
                 "give a G x G matrix for the cluster's G GPUs")
    fh.seek(0)
    return np.load(fh, allow_pickle=False)
