"""Exact layer-chain dynamic programme: the optimum without a MILP when layers are small.

The coherent cost couples only consecutive layers, so it is a shortest path through the layers
whose states are the balanced assignments of one layer (``E! / (S!)^G`` of them, labelled by
GPU). With every assignment of a layer as a one-hot ``X [N, E, G]``,
``cost(a, b) = sum_ij W[i, j] hop(gA(i), gB(j)) = vec(H_a W) . vec(X_b)`` where
``H_a[g', i] = hop(gA(i), g')``: one matrix product per layer pair gives all ``N^2`` transition
costs, for ANY hop matrix, and a min-plus sweep gives the exact optimum (Viterbi). Load limits
drop states, a load weight and the ``ep`` co-activation cut are per-state costs. Work is
``O(L N^2 E G)``; it is used when ``N <= MAX_STATES`` (e.g. 8 experts on 4 GPUs: 2520 states;
16 experts on 2 GPUs: 12870).

With one expert per GPU (S = 1) in one node the problem splits further: the GPU permutation of
layer l+1 relative to layer l is free, so each layer pair is an independent maximum-weight
perfect matching (``linear_sum_assignment``), chained. Also exact, for any E.
"""

from __future__ import annotations

import math

import numpy as np

MAX_STATES = 13000
_CHUNK = 256


def num_states(E: int, G: int) -> int:
    S = E // G
    return math.factorial(E) // (math.factorial(S) ** G)


def balanced_assignments(E: int, G: int) -> np.ndarray:
    """``[N, E]`` every map expert -> GPU with exactly E / G experts per GPU (lexicographic)."""
    S = E // G
    out: list[tuple[int, ...]] = []
    left = [S] * G
    cur = [0] * E

    def rec(e: int) -> None:
        if e == E:
            out.append(tuple(cur))
            return
        for g in range(G):
            if left[g]:
                left[g] -= 1
                cur[e] = g
                rec(e + 1)
                left[g] += 1

    rec(0)
    return np.array(out, dtype=np.int64)


def chain_dp(W: np.ndarray | None, hop: np.ndarray, E: int, L: int, state_cost: np.ndarray | None = None,
             allowed: np.ndarray | None = None, states: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Exact minimum of ``sum_l cost(s_l, s_{l+1}) + sum_l state_cost[l, s_l]`` over states.

    ``W`` ``[L-1, E, E]`` transition weights (None: no coupling), ``state_cost`` ``[L, N]``,
    ``allowed`` ``[L, N]`` bool. Returns ``(gpu_of [L, E], value)``.
    """
    G = hop.shape[0]
    A = balanced_assignments(E, G) if states is None else states
    N = len(A)
    X = np.zeros((N, E, G))
    X[np.arange(N)[:, None], np.arange(E)[None, :], A] = 1.0
    Xf = X.reshape(N, E * G)
    H = hop[A]  # [N, E, G]: H[a, i, g'] = hop(gA(i), g')
    sc = np.zeros((L, N)) if state_cost is None else np.asarray(state_cost, dtype=np.float64)
    ok = np.ones((L, N), bool) if allowed is None else np.asarray(allowed, bool)
    V = np.where(ok[0], sc[0], np.inf)
    back = np.zeros((max(L - 1, 0), N), np.int32)
    for l in range(L - 1):
        # Y[a, j, g'] = sum_i W[i, j] H[a, i, g']
        Y = np.einsum("ij,aig->ajg", W[l], H, optimize=True).reshape(N, E * G)
        best = np.full(N, np.inf)
        arg = np.zeros(N, np.int64)
        for a0 in range(0, N, _CHUNK):
            a1 = min(N, a0 + _CHUNK)
            tot = V[a0:a1, None] + Y[a0:a1] @ Xf.T  # [chunk, N]
            idx = np.argmin(tot, axis=0)
            val = tot[idx, np.arange(N)]
            better = val < best
            best[better] = val[better]
            arg[better] = idx[better] + a0
        V = np.where(ok[l + 1], best + sc[l + 1], np.inf)
        back[l] = arg
    end = int(np.argmin(V))
    value = float(V[end])
    path = [end]
    for l in range(L - 2, -1, -1):
        path.append(int(back[l][path[-1]]))
    path.reverse()
    return A[np.array(path)], value


def chain_assignment(W: np.ndarray, E: int) -> np.ndarray:
    """S = 1, one node: the exact optimum by chained maximum-weight perfect matchings."""
    from scipy.optimize import linear_sum_assignment

    L = W.shape[0] + 1
    g = np.empty((L, E), np.int64)
    g[0] = np.arange(E)
    for l in range(L - 1):
        rows, cols = linear_sum_assignment(W[l], maximize=True)
        g[l + 1, cols] = g[l, rows]
    return g


def pair_cut_state_cost(C: np.ndarray, hop: np.ndarray, states: np.ndarray) -> np.ndarray:
    """``[L, N]`` within-layer co-activation cut of every state (the ``ep`` objective)."""
    L = C.shape[0]
    out = np.zeros((L, len(states)))
    for l in range(L):
        M = np.array(C[l], dtype=np.float64)
        np.fill_diagonal(M, 0.0)
        for a0 in range(0, len(states), _CHUNK):
            s = states[a0:a0 + _CHUNK]
            out[l, a0:a0 + _CHUNK] = (M[None] * hop[s[:, :, None], s[:, None, :]]).sum(axis=(1, 2)) / 2.0
    return out


def state_loads(load: np.ndarray, states: np.ndarray, G: int) -> np.ndarray:
    """``[L, N]`` max GPU load of every state per layer."""
    L = load.shape[0]
    out = np.zeros((L, len(states)))
    onehot = np.zeros((len(states), states.shape[1], G))
    onehot[np.arange(len(states))[:, None], np.arange(states.shape[1])[None, :], states] = 1.0
    for l in range(L):
        out[l] = np.einsum("e,neg->ng", load[l], onehot).max(axis=1)
    return out

