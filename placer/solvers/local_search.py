"""A cheap exact-per-layer local search on ``gpu_of`` tables (``layer_descent`` and warm starts).

Shapes: ``gpu_of`` ``[L, E]`` int (replica-free placement), ``W`` ``[L-1, E, E]`` transition
weights, ``C`` ``[L, E, E]`` co-activation counts, ``hop`` ``[G, G]``.

Layer descent: in the coherent cost, experts of one layer never interact with each other, only
with the (fixed) neighbouring layers. So with layers l-1 and l+1 fixed, the best layer l is a
linear assignment: expert e on GPU g costs ``A[e, g] = sum_j W[l-1, j, e] hop(g(l-1, j), g) +
sum_j W[l, e, j] hop(g, g(l+1, j))``, and each GPU offers S slots. scipy's
``linear_sum_assignment`` solves it exactly; sweeping the layers forwards and backwards until no
layer improves is a block-coordinate descent that never gets worse. It is the ``layer_descent``
solver (:mod:`placer.solvers.layer_descent`) and the warm start of the exact models.
"""

from __future__ import annotations

import time

import numpy as np

from placer.cost.objectives import coherent
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.solvers.baselines import first_copy_gpus
from placer.solvers.packing import balanced_packing


def layer_descent(W: np.ndarray, hop: np.ndarray, start: np.ndarray, load: np.ndarray | None = None,
                  max_gpu_load: np.ndarray | None = None, deadline: float | None = None,
                  max_sweeps: int = 50) -> np.ndarray:
    """Improve ``start`` ``[L, E]`` by exact per-layer reassignment (see module docstring).

    With ``max_gpu_load`` ``[L]`` a new layer is only accepted when no GPU exceeds it.
    """
    from scipy.optimize import linear_sum_assignment

    g = np.array(start, dtype=np.int64)
    L, E = g.shape
    G = hop.shape[0]
    S = E // G
    if L < 2 or G == 1:
        return g
    order = list(range(L)) + list(range(L - 2, 0, -1))
    for _ in range(max_sweeps):
        improved = False
        for l in order:
            A = np.zeros((E, G))
            if l > 0:
                A += W[l - 1].T @ hop[g[l - 1]]
            if l < L - 1:
                A += W[l] @ hop[:, g[l + 1]].T
            cur = float(A[np.arange(E), g[l]].sum())
            rows, cols = linear_sum_assignment(np.repeat(A, S, axis=1))
            new = np.empty(E, np.int64)
            new[rows] = cols // S
            val = float(A[np.arange(E), new].sum())
            if val < cur - 1e-9 * max(1.0, abs(cur)):
                if max_gpu_load is not None and load is not None:
                    if np.bincount(new, weights=load[l], minlength=G).max() > max_gpu_load[l] + 1e-9:
                        continue
                g[l] = new
                improved = True
            if deadline is not None and time.perf_counter() > deadline:
                return g
        if not improved:
            break
    return g


def descent_start_points(profile: Profile, G: int, seed: int) -> list[np.ndarray]:
    """Deterministic starts: contiguous, load-balanced (LPT) and two seeded random ones."""
    L, E = profile.num_layers, profile.num_experts
    rng = np.random.default_rng(seed)
    contiguous = first_copy_gpus("contiguous", L, E, G)
    starts = [contiguous, balanced_packing(profile.load.astype(np.float64), G)[0]]
    for _ in range(2):
        starts.append(np.stack([rng.permutation(contiguous[0]) for _ in range(L)]))
    return starts


def best_descent(profile: Profile, topology: Topology, seed: int = 0,
                 max_gpu_load: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Layer descent from each start point; the best ``(gpu_of, coherent objective)``.

    No wall-clock cut (the result would depend on machine load): the sweep cap bounds the work.
    """
    W = profile.transition_weights()
    G = topology.num_gpus
    load = profile.load.astype(np.float64)
    best, best_val = None, np.inf
    for start in descent_start_points(profile, G, seed):
        if max_gpu_load is not None:
            gl = np.stack([np.bincount(start[l], weights=load[l], minlength=G) for l in range(len(start))])
            if np.any(gl.max(axis=1) > max_gpu_load + 1e-9):
                continue
        g = layer_descent(W, topology.hop, start, load, max_gpu_load)
        val = coherent(W, g, topology.hop)
        if val < best_val - 1e-12:
            best, best_val = g, val
    return best, best_val


def swap_descent(gpu_of: np.ndarray, hop: np.ndarray, W: np.ndarray | None = None, C: np.ndarray | None = None,
                 load: np.ndarray | None = None, max_gpu_load: np.ndarray | None = None,
                 max_swaps: int = 20000) -> np.ndarray:
    """Best-improvement pairwise swaps within each layer, keeping every GPU under ``max_gpu_load``.

    Objective: the coherent cost on ``W [L-1, E, E]`` (if given) plus the within-layer pair cut on
    ``C [L, E, E]`` (if given). Swapping experts i (GPU a) and j (GPU b) of layer l changes it by
    ``A[i,b] - A[i,a] + A[j,a] - A[j,b] + 2 C[i,j] hop(a, b)``, where ``A[e, g]`` is e's cost on
    GPU g with everything else fixed (neighbouring layers for W, the layer's other experts for
    C), so every move is evaluated exactly. Unlike :func:`layer_descent` it keeps load limits.
    """
    g = np.array(gpu_of, dtype=np.int64)
    L, E = g.shape
    G = hop.shape[0]
    if G == 1:
        return g
    swaps = 0
    for _ in range(100):
        improved = False
        for l in range(L):
            Cl = None
            if C is not None:
                Cl = np.array(C[l], dtype=np.float64)
                np.fill_diagonal(Cl, 0.0)
            gl = None if load is None else np.bincount(g[l], weights=load[l], minlength=G)
            while swaps < max_swaps:
                A = np.zeros((E, G))
                if W is not None and l > 0:
                    A += W[l - 1].T @ hop[g[l - 1]]
                if W is not None and l < L - 1:
                    A += W[l] @ hop[:, g[l + 1]].T
                if Cl is not None:
                    A += Cl @ hop[g[l]]
                own = A[np.arange(E), g[l]]
                Aj = A[:, g[l]]  # Aj[i, j] = A[i, g(j)]
                delta = Aj - own[:, None] + Aj.T - own[None, :]
                if Cl is not None:
                    delta += 2.0 * Cl * hop[np.ix_(g[l], g[l])]
                delta[g[l][:, None] == g[l][None, :]] = 0.0
                if max_gpu_load is not None and load is not None:
                    ld = load[l]
                    diff = ld[None, :] - ld[:, None]  # moving i out, j in: GPU of i gains ld[j] - ld[i]
                    ok = (gl[g[l]][:, None] + diff <= max_gpu_load[l] + 1e-9) & \
                         (gl[g[l]][None, :] - diff <= max_gpu_load[l] + 1e-9)
                    delta = np.where(ok, delta, 0.0)
                k = int(np.argmin(delta))
                i, j = divmod(k, E)
                if delta[i, j] >= -1e-9 * max(1.0, float(np.abs(own).sum())):
                    break
                a, b = g[l, i], g[l, j]
                g[l, i], g[l, j] = b, a
                if gl is not None:
                    gl[a] += load[l, j] - load[l, i]
                    gl[b] += load[l, i] - load[l, j]
                swaps += 1
                improved = True
        if not improved or swaps >= max_swaps:
            break
    return g
