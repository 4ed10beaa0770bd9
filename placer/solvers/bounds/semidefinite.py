"""Pair weights from the semidefinite relaxation, proven by the eigenvalue bound (issue 12).

One level (``parts`` groups of ``size`` slots a layer, no replicas), a chain of c consecutive
layers with transitions ``ws [c-1, E, E]`` on its ``n = c E`` vertices (layer-major). The
relaxation, with ``X[v, w]`` standing for "v and w share a group"::

    min  sum_t sum_ij ws[t, i, j] (1 - X[t i, t+1 j])
    s.t. X - J / parts  PSD,  diag(X) = 1,  X >= 0,  sum_{w in layer b} X[v, w] = size  (every v, b)

is the eigenvalue bound of :mod:`.spectral` with ``X >= 0`` added (without it, the relaxation
is what that bound reaches maximised over its diagonal). Summed over the bound's segments of
ESFT intent on 4 GPUs it is 85,035 (SCS), where the eigenvalue/degree split's ascents stall at
83,933 (docs/benchmarks.md, "How tight a semidefinite relaxation is"). Its multipliers
``N >= 0`` of ``X >= 0`` are pair weights:

Claim. For every symmetric ``N >= 0`` (zero diagonal) on the chain's vertex pairs and every ``u``::

    cut(ws) >= DH(ws + N, u) - sum_{v<w} N[v, w]

with ``DH`` the eigenvalue bound on the chain graph with the pairs' weights added (within a
layer, between layers t and t+2, and on the transitions themselves: :func:`.spectral.chain_value`
takes them all). Proof: cut is linear in the weights, so ``cut(ws) = cut(ws + N) - cut(N)``;
each pair is cut at most once, so ``cut(N) <= sum(N)``; and ``cut(ws + N) >= DH(ws + N, u)``
for any real weights (:mod:`.spectral`). So any ``N``, however inexact, gives a valid bound:
the conic solver only proposes ``N``; the value is the eigenvalue bound's, maximised over ``u``
by L-BFGS, lowered by the safety margin of :mod:`.spectral` and by ``SAFETY * sum(N)``.

SCS (a first-order conic solver; HiGHS and OR-Tools have no semidefinite cone) gives ``N`` as
the dual of the nonnegativity cone. It needs some hundreds of iterations before its
multipliers are worth much (ESFT, E = 64, a 3-layer chain on 4 GPUs: 263,193 from the split's
300 evaluations; from SCS cut at 4 s 268,440, at :data:`MAX_ITERS` 272,361), about 5 s a chain
on one core, so a 10 s solve has no time for it beside its other ascents:
:func:`placer.solvers.bounds._improve` runs it on the time they leave when asked (partition's
``--param semidefinite=true``; useful from 60 s limits).
Tried and dropped: the same pair weights as variables of the split's L-BFGS ascent (bounded
below by 0): it stalls lower (82,591 on that instance at 120 s against 83,933 without them).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from placer.solvers.bounds.decomposition import Effort, _maximise
from placer.solvers.bounds.spectral import SAFETY, chain_value, householder

# the largest chain (c E vertices) the conic solver is given: 3 layers of 64 experts. The PSD
# cone's projection is O(n^3) an iteration and the cone holds n (n + 1) / 2 entries
MAX_VERTICES = 192
# below this, a chain's time slice cannot pay for the iterations its multipliers need
MIN_SECONDS = 1.0
# SCS's iterations a chain: near the relaxation's value on ESFT (segment 0 of intent on 4 GPUs:
# 272,361 against the relaxation's 272,575); a cap, not a clock, so the result does not depend
# on the machine's speed when the time suffices
MAX_ITERS = 600
ROOT2 = np.sqrt(2.0)


def available() -> bool:
    try:
        import scs  # noqa: F401
    except ImportError:
        return False
    return True


def multipliers(ws: np.ndarray, parts: int, size: int, seconds: float,
                max_iters: int = MAX_ITERS) -> np.ndarray | None:
    """``N [n, n]``: symmetric nonnegative pair weights (zero diagonal), the multipliers of
    ``X >= 0`` that SCS reaches in ``max_iters`` iterations or ``seconds`` for the chain
    ``ws [c-1, E, E]``; None when SCS is missing or fails."""
    try:
        import scs
    except ImportError:
        return None
    W = np.asarray(ws, dtype=np.float64)
    P, E = W.shape[0], W.shape[1]
    n = (P + 1) * E
    # SCS's PSD cone: the lower triangle column by column, off-diagonal entries times sqrt(2)
    cols, rows = np.triu_indices(n)                  # rows >= cols, column by column
    index = np.empty((n, n), dtype=np.int64)
    index[rows, cols] = index[cols, rows] = np.arange(len(rows))
    nv = len(rows)
    lo_r, lo_c = np.tril_indices(n, -1)
    pair = index[lo_r, lo_c]                          # the entries of X[v, w], v > w
    diag = index[np.arange(n), np.arange(n)]
    lower = np.zeros((n, n))
    for t in range(P):
        lower[(t + 1) * E:(t + 2) * E, t * E:(t + 1) * E] = W[t].T
    c = np.zeros(nv)
    c[pair] = -lower[lo_r, lo_c] / ROOT2              # min sum ws (1 - X): the constant is dropped
    # zero cone: diag(X) = 1, then every vertex's row sum within each layer = size
    vert = np.repeat(np.arange(n), n)
    other = np.tile(np.arange(n), n)
    coef = np.where(vert == other, 1.0, 1.0 / ROOT2)
    sums = n + vert * (P + 1) + other // E
    zr = np.concatenate([np.arange(n), sums])
    zc = np.concatenate([diag, index[vert, other]])
    zv = np.concatenate([np.ones(n), coef])
    nz = n + n * (P + 1)
    nl = len(pair)
    r = np.concatenate([zr, nz + np.arange(nl), nz + nl + np.arange(nv)])
    col = np.concatenate([zc, pair, np.arange(nv)])
    val = np.concatenate([zv, np.full(nl, -1.0 / ROOT2), np.full(nv, -1.0)])
    A = sp.csc_matrix((val, (r, col)), shape=(nz + nl + nv, nv))
    jk = np.zeros(nv)
    jk[diag], jk[pair] = 1.0 / parts, ROOT2 / parts
    b = np.concatenate([np.ones(n), np.full(n * (P + 1), float(size)), np.zeros(nl), -jk])
    try:
        solver = scs.SCS({"A": A, "b": b, "c": c}, {"z": nz, "l": nl, "s": [n]}, verbose=False,
                         eps_abs=1e-4, eps_rel=1e-4, max_iters=max_iters, time_limit_secs=max(0.05, seconds))
        y = solver.solve()["y"]
    except Exception:        # noqa: BLE001 - a failed proposal only costs the bound this stage
        return None
    if y is None or not np.all(np.isfinite(y)):
        return None
    N = np.zeros((n, n))
    N[lo_r, lo_c] = np.maximum(y[nz:nz + nl], 0.0)
    return N + N.T


def cut_bound_with(ws: np.ndarray, N: np.ndarray, parts: int, size: int, effort: Effort) -> tuple[float, int]:
    """``(valid bound, evaluations)``: the claim of the module docstring for the pair weights
    ``N [n, n]``, maximised over ``u`` within ``effort``."""
    W = np.asarray(ws, dtype=np.float64)
    P, E = W.shape[0], W.shape[1]
    c = P + 1
    blocks = N.reshape(c, E, c, E).transpose(0, 2, 1, 3)          # [c, c, E, E]
    adjacent = W + np.stack([blocks[t, t + 1] for t in range(P)])
    inner = np.stack([blocks[t, t] for t in range(c)])
    skip = np.stack([blocks[t, t + 2] for t in range(c - 2)]) if c > 2 else None
    paid = 0.5 * float(N.sum())
    v = householder(E)

    def value(u: np.ndarray) -> tuple[float, np.ndarray]:
        val, grad_u, _ = chain_value(adjacent, u, v, parts, size, inner, skip)
        return val - paid - SAFETY * paid, grad_u

    deg = N.sum(axis=1).reshape(c, E)
    deg[:-1] += W.sum(axis=2)
    deg[1:] += W.sum(axis=1)
    best, _, evals = _maximise(value, -0.2 * deg.ravel(), effort)
    return best, evals


def semidefinite_cut_bound(ws: np.ndarray, parts: int, size: int, deadline: float) -> float | None:
    """The claim's value for the multipliers SCS finds in :data:`MAX_ITERS` iterations or 80 % of
    the time to ``deadline``, the eigenvalue ascent over ``u`` (at most 300 evaluations) taking
    the rest; None when the chain is over
    :data:`MAX_VERTICES`, SCS is missing or fails, or the time is under :data:`MIN_SECONDS`."""
    W = np.asarray(ws, dtype=np.float64)
    now = time.perf_counter()
    if (W.shape[0] + 1) * W.shape[1] > MAX_VERTICES or deadline - now < MIN_SECONDS:
        return None
    N = multipliers(W, parts, size, 0.8 * (deadline - now))
    if N is None:
        return None
    return cut_bound_with(W, N, parts, size, Effort(deadline=deadline))[0]
