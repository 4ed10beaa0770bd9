"""Lower bounds on the communication cost of ANY placement, cheap at any model size.

``lower_bound(profile, topology, constraints) -> (value, name)``. ``value`` is in the units of the
cost model ``constraints.cost`` (see :mod:`placer.solvers.base`):

- ``coherent``: ``sum_l sum_ij trans[l,i,j] / K**2 * hop(g(l,i), g(l+1,j))`` (with replicas each
  pair uses its nearest replicas);
- ``ep``: the pairwise co-activation cut the exact models minimise for ``--cost ep``:
  ``sum_l sum_{i<j} coact[l,i,j] * hop(g(l,i), g(l,j))``: co-activated expert pairs of one
  token that sit on different GPUs (hop weighted). For top-2 this is the number of extra
  dispatch copies dedup cannot save; it is NOT the ``ep_cost`` copy count.

Proof sketch (coherent; the ep case is the same on ``coact[l]`` within a layer).

1. Split the hop cost. Let ``h1`` be the smallest hop between two GPUs of one node and ``h2`` the
   smallest hop between GPUs of different nodes, ``h = min(h1, h2)``. For every GPU pair
   ``hop(a, b) >= h * [a != b] + max(0, h2 - h) * [node(a) != node(b)]`` (check the three
   cases: same GPU, same node, other node). Hence, with ``W_l = sum_ij w[l,i,j]`` and
   ``keep_l`` / ``keepN_l`` the weight of pairs on one GPU / one node,
   ``cost >= sum_l h * (W_l - keep_l) + max(0, h2 - h) * (W_l - keepN_l)``, and it suffices to
   bound ``keep_l`` and ``keepN_l`` from above, independently for every layer pair.
2. Degree caps. A GPU holds S slots per layer. An expert i of layer l with ``c_i`` copies
   (``c_i <= min(G, 1 + replicas)``) shares a GPU with at most ``S * c_i`` experts of layer
   l+1, and symmetrically for j; one GPU co-locates at most ``S * S`` pairs, so all GPUs at most
   ``G * S * S`` distinct pairs. The set of co-located pairs is therefore a subgraph of the
   complete bipartite graph (layer l experts x layer l+1 experts) with row degrees
   ``<= S * min(G, 1 + R)``, column degrees likewise and at most ``G S^2`` edges; ``keep_l`` is
   its weight, so ``keep_l <=`` the maximum-weight such b-matching. Bipartite b-matching is a
   network flow (source -> rows -> columns -> sink, unit arc capacities, capacity-limited source),
   solved exactly as a min-cost flow (OR-Tools, integer costs: the counts themselves, so
   the flow optimum is exact). The node level is the same with ``gpus_per_node * S`` slots.
   Without replicas this is at least as strong as "each expert keeps at most the affinity of
   its S strongest partners" in both directions (it satisfies both caps at once).
3. ep: within a layer i shares a GPU with at most ``S - 1`` (``(S - 1) * c_i`` with replicas)
   other experts; the b-matching over ordered pairs counts every co-located unordered pair twice,
   so half its value bounds the kept co-activation weight.

The bound ignores ``max_imbalance`` (a relaxation stays valid) and costs one min-cost flow on
``E^2`` arcs per layer pair: well under a minute at DeepSeek-V3 size (58 x 256, 64 GPUs).
"""

from __future__ import annotations

import numpy as np

from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.solvers.base import Constraints
from placer.model.topology import Topology

# Integer weights keep the flow exact; float counts (aggregate inputs) are scaled by this and
# rounded UP, which can only raise the bound on kept weight, so the cost bound stays valid.
_FLOAT_SCALE = 2.0 ** 20


def lower_bound(profile: Profile, topology: Topology, constraints: Constraints) -> tuple[float, str]:
    """A valid lower bound on the ``constraints.cost`` objective of any placement, and its name.

    See the module docstring for units and the proof. Raises :class:`PlacerError` when the
    profile lacks the statistics the cost model needs.
    """
    E, G = profile.num_experts, topology.num_gpus
    S = constraints.slots_per_gpu(E, G)
    if constraints.cost == "coherent":
        return coherent_lower_bound(profile, topology, S, constraints.replicas)
    if constraints.cost == "ep":
        return ep_lower_bound(profile, topology, S, constraints.replicas)
    raise PlacerError(f"unknown cost model '{constraints.cost}'; use coherent or ep")


def hop_levels(topology: Topology) -> tuple[float, float]:
    """``(h, extra)``: ``hop(a, b) >= h [a != b] + extra [node(a) != node(b)]`` for all GPU pairs.

    Exact (equality) for :meth:`Topology.uniform`; a valid lower envelope for any hop matrix.
    """
    G, gpn = topology.num_gpus, topology.gpus_per_node
    if G == 1:
        return 0.0, 0.0
    hop = np.asarray(topology.hop, dtype=np.float64)
    off = ~np.eye(G, dtype=bool)
    inter = topology.inter_node
    h1 = float(hop[off & ~inter].min()) if gpn > 1 else np.inf
    h2 = float(hop[inter].min()) if topology.num_nodes > 1 else np.inf
    h = min(h1, h2)
    extra = max(0.0, h2 - h) if np.isfinite(h2) else 0.0
    return h, extra


def coherent_lower_bound(profile: Profile, topology: Topology, slots_per_gpu: int,
                         replicas: int = 0) -> tuple[float, str]:
    """Bound on the coherent cost (units: expected hop-weighted token transitions, see module)."""
    if profile.trans is None:
        raise PlacerError("the coherent cost needs inter-layer transition counts, which this profile lacks; "
                          "give a per-token trace or counts with layer-pair matrices, or use --cost ep")
    if topology.num_gpus == 1 or profile.num_layers < 2:
        return 0.0, "one GPU or one layer: nothing moves"
    total = sum(_split_weight_bound(profile.trans[l], topology, slots_per_gpu, replicas, within=False)
                for l in range(profile.num_layers - 1))
    name = "per-layer-pair b-matching (each expert keeps at most S partners on its GPU, both directions)"
    if hop_levels(topology)[1] > 0:
        name += " + node-level b-matching for the inter-node part"
    return max(0.0, total / float(profile.top_k ** 2)), name


def ep_lower_bound(profile: Profile, topology: Topology, slots_per_gpu: int,
                   replicas: int = 0) -> tuple[float, str]:
    """Bound on the pairwise co-activation cut (the exact models' ``ep`` objective, see module)."""
    if profile.coact is None:
        raise PlacerError("the ep objective needs co-activation counts, which this profile lacks; "
                          "build the profile from a per-token trace")
    if topology.num_gpus == 1 or profile.top_k < 2:
        return 0.0, "one GPU or top-1: no co-activated pairs to split"
    total = sum(_split_weight_bound(profile.coact[l], topology, slots_per_gpu, replicas, within=True)
                for l in range(profile.num_layers))
    name = "per-layer b-matching on co-activation (each expert shares its GPU with at most S-1 others)"
    if hop_levels(topology)[1] > 0:
        name += " + node-level b-matching"
    return max(0.0, total), name


def _split_weight_bound(weights: np.ndarray, topology: Topology, S: int, replicas: int, within: bool) -> float:
    """Lower bound on ``sum_ij w_ij hop(g(i), g(j))`` for one layer pair (``within``: one layer,
    unordered pairs, diagonal ignored), from the b-matching caps of the module docstring."""
    W = np.array(weights, dtype=np.float64)
    if within:
        np.fill_diagonal(W, 0.0)
    G, E = topology.num_gpus, W.shape[0]
    gpn, nodes = topology.gpus_per_node, topology.num_nodes
    copies = min(G, 1 + replicas)
    h, extra = hop_levels(topology)
    d = int(within)  # an expert is not its own partner within a layer
    # ordered pairs are counted twice within a layer: halve both the total and the kept weight
    half = 0.5 if within else 1.0
    total = W.sum()
    keep = keep_upper_bound(W, min(E - d, (S - d) * copies), G * S * (S - d), diagonal=not within)
    out = h * half * (total - keep)
    if extra > 0:
        ns = gpn * S
        keep_n = keep_upper_bound(W, min(E - d, (ns - d) * min(nodes, copies)), nodes * ns * (ns - d),
                                  diagonal=not within)
        out += extra * half * (total - keep_n)
    return float(out)


def b_matching_max(weights: np.ndarray, degree_cap: int, edge_cap: int, diagonal: bool = True) -> float:
    """Maximum weight of an edge set of the complete bipartite graph rows x columns of ``weights``.

    ``weights`` ``[E, E]`` non-negative integers; each edge used at most once, every row and
    every column in at most ``degree_cap`` edges, at most ``edge_cap`` edges in all; without
    ``diagonal`` the edges (i, i) are excluded. Solved exactly as a min-cost flow.
    """
    from ortools.graph.python import min_cost_flow

    W = np.asarray(weights)
    E = W.shape[0]
    flow = int(min(edge_cap, E * degree_cap))
    if flow <= 0 or degree_cap <= 0:
        return 0.0
    rows, cols = np.nonzero(W > 0)
    if not diagonal:
        keep = rows != cols
        rows, cols = rows[keep], cols[keep]
    if len(rows) == 0:
        return 0.0
    # nodes: 0 source, 1..E rows, E+1..2E columns, 2E+1 sink; zero-weight edges are not needed
    # because a bypass arc source -> sink carries the flow that no positive edge wants.
    src, sink = 0, 2 * E + 1
    idx = np.arange(E, dtype=np.int64)
    tails = np.concatenate([np.zeros(E, np.int64), rows + 1, idx + E + 1, [src]])
    heads = np.concatenate([idx + 1, cols + E + 1, np.full(E, sink, np.int64), [sink]])
    caps = np.concatenate([np.full(E, degree_cap, np.int64), np.ones(len(rows), np.int64),
                           np.full(E, degree_cap, np.int64), [flow]])
    costs = np.concatenate([np.zeros(E, np.int64), -W[rows, cols].astype(np.int64),
                            np.zeros(E, np.int64), [0]])
    mcf = min_cost_flow.SimpleMinCostFlow()
    mcf.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)
    supplies = np.zeros(2 * E + 2, np.int64)
    supplies[src], supplies[sink] = flow, -flow
    mcf.set_nodes_supplies(np.arange(2 * E + 2, dtype=np.int64), supplies)
    status = mcf.solve()
    if status != mcf.OPTIMAL:
        raise RuntimeError(f"min-cost flow for the bound failed with status {status}")
    return float(-mcf.optimal_cost())


def keep_upper_bound(weights: np.ndarray, degree_cap: int, edge_cap: int, diagonal: bool = True) -> float:
    """Upper bound on the weight of any co-located pair set (degree and edge caps, see
    :func:`b_matching_max`), in the units of ``weights`` (float weights are scaled and rounded up)."""
    W, scale = _integer_weights(weights)
    return b_matching_max(W, degree_cap, edge_cap, diagonal) / scale


def _is_integral(a: np.ndarray) -> bool:
    a = np.asarray(a)
    return np.issubdtype(a.dtype, np.integer) or bool(np.all(a == np.round(a)))


def _integer_weights(a: np.ndarray) -> tuple[np.ndarray, float]:
    """``(W, scale)``: integer weights with ``W / scale >= a`` (exact when ``a`` is integral)."""
    a = np.asarray(a)
    if _is_integral(a):
        return a.astype(np.int64), 1.0
    return np.ceil(a.astype(np.float64) * _FLOAT_SCALE).astype(np.int64), _FLOAT_SCALE
