"""Who sends which token rows to whom, layer by layer (numpy only; every rank computes the same).

Shapes: L layers, T tokens, K picks per token, E experts, G ranks (one rank = one GPU).

Modes (the replay in :mod:`placer.validate.worker` follows these plans exactly):

- ``ep``: token t lives on its home rank ``home[t]`` (sequence s -> rank s % G, the cost model's
  home policy). At each layer every pick k is processed on one rank ``dest[t, k]`` holding that
  expert; the token is sent once to each distinct remote destination (dedup) with a K-bit mask of
  the picks to run there, and each destination sends back ONE row: the gate-weighted sum of its
  picks' outputs. Dispatch and combine therefore move the same number of rows.
  Replicas: chosen by the cost model itself (:func:`placer.cost.serving_gpus`): the home rank
  serves every pick it holds, the rest go to the fewest remote ranks (exact minimum cover, ties:
  lexicographically smallest sorted ranks).
- ``coherent`` (one all-to-all per layer transition, no replicas): the unit is an *instance*
  (token t, pick k) at layer l, on the rank of expert ``ids[l, t, k]``. Instance (t, i) computes
  the partial ``p_i = g_i * FFN_i(rmsnorm(x_l)) + [i is the top-1 pick] * x_l`` (the residual
  stream travels with the highest-weight pick) and sends it to each of the K instances (t, j) of
  layer l+1; instance (t, j) sums its K partials into ``x_{l+1}``. Partials for instances on the
  same rank are copied locally. This moves exactly one row per (i, j) pair whose ranks differ,
  which is the coherent cost model's K x K pair accounting (each pair weighs 1/K^2 there).
  Layer-0 inputs are materialised from the seeded activations on each instance's rank, and a
  final exchange brings the last layer's partials home; neither is a layer transition, so the
  cost model does not count them and they are reported apart.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.model.topology import Topology


def gate_weights(gate: np.ndarray | None, shape: tuple[int, int, int]) -> np.ndarray:
    """``[L, T, K]`` float32 gate weights: the trace's, or 1/K each when it has none."""
    if gate is None:
        return np.full(shape, 1.0 / shape[2], np.float32)
    return np.asarray(gate, dtype=np.float32)


def top1_column(gate: np.ndarray | None, shape: tuple[int, int, int]) -> np.ndarray:
    """``[L, T]`` the column of each token's highest-weight pick (column 0 without weights)."""
    if gate is None:
        return np.zeros(shape[:2], np.int64)
    return np.argmax(np.asarray(gate), axis=2)


# ------------------------------------------------------------------------------------------ ep
def ep_dest(ids: np.ndarray, home: np.ndarray, placement: Placement, layer: int) -> np.ndarray:
    """``[T, K]`` rank that processes each pick at one layer: the cost model's own choice.

    ``ids`` ``[T, K]`` expert ids, ``home`` ``[T]``. This is :func:`placer.cost.serving_gpus`
    on one node (every hop 1), so the replay picks replicas exactly as ``ep_cost`` counts them.
    """
    from placer.cost import replica_gpus, serving_gpus
    hop = Topology.uniform(placement.num_gpus).hop
    return serving_gpus(np.asarray(ids, np.int64), home, replica_gpus(placement)[layer],
                        placement.logcnt[layer], hop)


@dataclass
class Exchange:
    """One all-to-all: rows sorted by (src, dst, then the plan's own order).

    ``src``, ``dst`` ``[M]`` ranks; ``counts`` ``[G, G]`` rows from src to dst (self included:
    a send to oneself is a local copy and crosses no link).
    """

    src: np.ndarray
    dst: np.ndarray
    counts: np.ndarray

    def rows_of(self, rank: int) -> slice:
        start = int(self.counts[:rank].sum())
        return slice(start, start + int(self.counts[rank].sum()))


def pair_counts(src: np.ndarray, dst: np.ndarray, world_size: int) -> np.ndarray:
    """``[G, G]`` number of rows from each rank to each rank."""
    return np.bincount(src * world_size + dst, minlength=world_size * world_size).reshape(world_size, world_size)


@dataclass
class EPLayer(Exchange):
    """Dispatch copies of one layer: ``tok`` ``[M]`` token id, ``mask`` ``[M]`` K-bit pick mask."""

    tok: np.ndarray = None
    mask: np.ndarray = None


def ep_layer(dest: np.ndarray, home: np.ndarray, world_size: int) -> EPLayer:
    """Dedup the picks ``dest [T, K]`` into one copy per (token, destination rank)."""
    T, K = dest.shape
    tok = np.repeat(np.arange(T), K)
    key = tok * world_size + dest.ravel()
    uniq, inv = np.unique(key, return_inverse=True)
    mask = np.zeros(len(uniq), np.int64)
    np.add.at(mask, inv.ravel(), np.tile(1 << np.arange(K), T))
    ctok, cdst = uniq // world_size, uniq % world_size
    csrc = home[ctok]
    order = np.lexsort((ctok, cdst, csrc))
    return EPLayer(src=csrc[order], dst=cdst[order], counts=pair_counts(csrc, cdst, world_size), tok=ctok[order], mask=mask[order])


# ------------------------------------------------------------------------------------ coherent
def coherent_gpu_of(placement: Placement) -> np.ndarray:
    """``[L, E]`` rank of each expert; the coherent replay needs a replica-free placement."""
    if placement.num_replicas:
        raise PlacerError("--mode coherent replays replica-free placements only (a replicated expert "
                          "would need its input on every replica); use --mode ep for this placement")
    return placement.gpu_of


@dataclass
class Instances:
    """Instances (t, k) of one layer on one rank, sorted by ``key = t * K + k``."""

    key: np.ndarray

    def index(self, keys: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.key, keys)


def instances(rank_of_pick: np.ndarray, rank: int) -> Instances:
    """The instances of one layer that live on ``rank``; ``rank_of_pick`` ``[T, K]``."""
    return Instances(key=np.flatnonzero(rank_of_pick.ravel() == rank).astype(np.int64))


@dataclass
class CoherentLayer(Exchange):
    """Messages of one transition: from instance ``src_key`` to instance ``dst_key`` (t*K + k)."""

    src_key: np.ndarray = None
    dst_key: np.ndarray = None


def coherent_transition(rank_now: np.ndarray, rank_next: np.ndarray, world_size: int) -> CoherentLayer:
    """Every (t, i) -> (t, j) message between layers l and l+1; ``rank_*`` ``[T, K]``."""
    T, K = rank_now.shape
    t = np.repeat(np.arange(T), K * K)
    i = np.tile(np.repeat(np.arange(K), K), T)
    j = np.tile(np.arange(K), T * K)
    src, dst = rank_now[t, i], rank_next[t, j]
    order = np.lexsort((j, i, t, dst, src))
    return CoherentLayer(src=src[order], dst=dst[order], counts=pair_counts(src, dst, world_size),
                         src_key=(t * K + i)[order], dst_key=(t * K + j)[order])


def coherent_final(rank_last: np.ndarray, home: np.ndarray, world_size: int) -> CoherentLayer:
    """The last layer's partials travel to the token's home rank (reported apart, not a transition)."""
    T, K = rank_last.shape
    t = np.repeat(np.arange(T), K)
    k = np.tile(np.arange(K), T)
    src, dst = rank_last[t, k], home[t]
    order = np.lexsort((k, t, dst, src))
    return CoherentLayer(src=src[order], dst=dst[order], counts=pair_counts(src, dst, world_size),
                         src_key=(t * K + k)[order], dst_key=t[order])
