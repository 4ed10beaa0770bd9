"""Random inputs: traces ``[L, T, K]`` (independent picks or inter-layer affinity, skewed popularity,
sequences, gate weights, dropped tokens), valid placements (replicas, nodes), and the hypothesis
strategy of whole (trace, placement, topology) instances."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from placer.model.placement import Placement
from placer.model.topology import Topology
from placer.model.trace import Trace, id_dtype


def zipf(E: int) -> np.ndarray:
    """``[E]`` pick probabilities ``1 / (e + 1)``, normalised (expert 0 the most popular)."""
    p = 1.0 / np.arange(1, E + 1)
    return p / p.sum()


def skewed(E: int, skew: float) -> np.ndarray:
    """``[E]`` pick probabilities ``exp(-skew e)``, normalised (skew 0 is uniform, but drawn through
    the weights: another random stream than ``p=None``)."""
    p = np.exp(-skew * np.arange(E))
    return p / p.sum()


def random_trace(rng, L: int, E: int, K: int, T: int, *, affinity: float | None = None,
                 p: np.ndarray | None = None, seq_offsets=None, weights: bool = False, dropped: float = 0.0,
                 **meta) -> Trace:
    """A trace of ``T`` tokens, ``K`` distinct experts of ``E`` per token at each of ``L`` layers.

    ``rng``: a generator or a seed. ``affinity``: None, every pick independent; a probability, a
    token's layer-(l+1) picks are a fixed per-layer permutation of its layer-l picks with that
    probability (else fresh picks). ``p``: ``[E]`` pick probabilities (None: uniform).
    ``seq_offsets``: ``[S+1]``, or an int S for S equal sequences. ``weights``: random gate
    weights ``[L, T, K]``; ``dropped``: the share of (layer, token) entries marked dropped.
    ``meta``: further :class:`Trace` fields. Draws ids, then weights, then the dropped mask.
    """
    rng = np.random.default_rng(rng)
    ids = np.empty((L, T, K), np.int64)

    def fresh():
        return np.stack([rng.choice(E, K, replace=False, p=p) for _ in range(T)])

    ids[0] = fresh()
    if affinity is None:
        for l in range(1, L):
            ids[l] = fresh()
    else:
        maps = [rng.permutation(E) for _ in range(L)]
        for l in range(1, L):
            for t in range(T):
                ids[l, t] = maps[l][ids[l - 1, t]] if rng.random() < affinity else rng.choice(E, K, replace=False, p=p)
    if isinstance(seq_offsets, int):
        seq_offsets = np.linspace(0, T, seq_offsets + 1)
    return Trace(ids.astype(id_dtype(E)), E,
                 gate_weights=rng.random((L, T, K)).astype(np.float32) if weights else None,
                 seq_offsets=None if seq_offsets is None else np.asarray(seq_offsets).astype(np.int64),
                 dropped=rng.random((L, T)) < dropped if dropped else None, **meta).validate()


def zipf_trace(L: int = 4, E: int = 16, K: int = 2, T: int = 1200, S: int = 12, seed: int = 0) -> Trace:
    """The planning workload: Zipf-skewed popularity, no affinity, ``S`` equal sequences."""
    return random_trace(seed, L, E, K, T, p=zipf(E), seq_offsets=S, model="synthetic")


def expert_loads(E: int, min_layers: int = 1, max_layers: int = 3) -> st.SearchStrategy:
    """Hypothesis: ``[L, E]`` integer expert loads in 0..1000 (no per-token data behind them)."""
    rows = st.lists(st.integers(0, 1000), min_size=E, max_size=E)
    return st.lists(rows, min_size=min_layers, max_size=max_layers).map(np.array)


def random_placement(rng, L: int, E: int, G: int, *, replicas: int = 0,
                     gpus_per_node: int | None = None) -> Placement:
    """A valid placement of ``G * S`` slots, ``S = (E + replicas) / G``: every expert once at a
    random slot, then each free slot a random expert its GPU does not hold yet."""
    rng = np.random.default_rng(rng)
    S = (E + replicas) // G
    rows = []
    for _ in range(L):
        slots = np.full(G * S, -1)
        slots[rng.permutation(G * S)[:E]] = rng.permutation(E)
        for s in np.flatnonzero(slots < 0):
            held = set(slots[s // S * S:(s // S + 1) * S].tolist())
            slots[s] = rng.choice([e for e in range(E) if e not in held])
        rows.append(slots)
    return Placement(np.array(rows), E, G, gpus_per_node).validate()


def contiguous(L: int, E: int, G: int, gpus_per_node: int | None = None) -> Placement:
    """The Megatron default: expert e on GPU ``e // (E / G)`` at every layer."""
    return Placement.from_gpu_of(np.tile(np.arange(E) // (E // G), (L, 1)), G, gpus_per_node)


@st.composite
def instances(draw, max_replicas: int = 6, k_max: int = 3, allow_dropped: bool = True):
    """(trace, placement, topology): 1-6 GPUs in nodes, 1-3 slots per GPU, up to ``max_replicas``
    replicas, 1-3 layers, top-1..``k_max``, 1-25 tokens in up to 4 sequences, with or without
    affinity and dropped tokens, inter-node hops 1 to 18."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    G = draw(st.sampled_from([1, 2, 3, 4, 6]))
    gpn = draw(st.sampled_from([d for d in (1, 2, 3, G) if G % d == 0]))
    S = draw(st.integers(1, 3))
    E = draw(st.integers(S, G * S))
    if G * S - E > max_replicas:
        E = max(G * S - max_replicas, S)
    L = draw(st.integers(1, 3))
    K = draw(st.integers(1, min(k_max, E)))
    T = draw(st.integers(1, 25))
    cuts = sorted(draw(st.sets(st.integers(1, T - 1), max_size=3))) if T > 1 else []
    trace = random_trace(rng, L, E, K, T, affinity=draw(st.sampled_from([None, 0.5])), seq_offsets=[0, *cuts, T],
                         dropped=0.15 if allow_dropped and draw(st.booleans()) else 0.0)
    pl = random_placement(rng, L, E, G, replicas=G * S - E, gpus_per_node=gpn)
    topo = Topology.uniform(G, gpn, inter_node_cost=draw(st.sampled_from([None, 1.0, 3.0, 3.5, 18.0])))
    return trace, pl, topo
