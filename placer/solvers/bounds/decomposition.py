"""The eigenvalue and degree bounds on one split of the weights, maximised over the split.

One level (``parts`` groups of ``size`` slots a layer, no replicas): a placement cuts
``cut(w)`` of the graphs of :mod:`.spectral`: ``chain``, c consecutive layers with transitions
``ws [c-1, E, E]`` (the cut is the sum of the c - 1 pairs' cuts; a layer pair is c = 2), or
``layer``, one layer's symmetric co-activation ``c [E, E]`` (unordered pairs, diagonal ignored).

Claim (chain). For every ``w1 [c-1, E, E]``, ``u [c E]``, ``a, b [c-1, E]`` (any signs)::

    cut(ws) >= DH(w1, u) + sum_t [ sum_ij min(ws_tij - w1_tij, a_ti + b_tj) - size * (sum a_t + sum b_t) ]

with ``DH`` the value of :func:`.spectral.chain_value`. Proof: the cut is linear in the weights,
``cut(ws) = cut(w1) + cut(w2)`` with ``w2 = ws - w1``; ``cut(w1) >= DH(w1, u)`` for any real
weights (:mod:`.spectral`). For pair t let ``y_ij = 1`` when i (layer t) and j (layer t+1)
share a group: every row and column of y sums to exactly ``size`` (a group holds ``size``
experts of each layer), so ``keep_t(w2) = sum_ij w2_tij y_ij = sum_ij (w2_tij - a_ti - b_tj) y_ij
+ size (sum a_t + sum b_t) <= sum_ij max(0, w2_tij - a_ti - b_tj) + size (sum a_t + sum b_t)``,
and ``cut_t(w2) = sum(w2_t) - keep_t(w2)`` is at least pair t's term
(``x - max(0, x - s) = min(x, s)``).

Claim (layer), the same with one potential per expert: every expert shares its group with
exactly ``size - 1`` others, so for symmetric ``c1`` and any ``u [E]``, ``a [E]``::

    cut(c) >= DH(c1, u) + sum_{i<j} min(c_ij - c1_ij, a_i + a_j) - (size - 1) * sum(a)

The right side is concave in the variables (DH is, and a sum of minima of affine functions is),
so its maximum is at least that of each part alone (``w1 = w``, zero potentials: the eigenvalue
bound; ``w1 = 0`` with the optimal potentials: the b-matching bound with exact degrees, by LP
duality of the bipartite b-matching polytope) and often well above both: the eigenvalue part
prices the global cluster structure, the potentials each expert's degree. A chain of c layers
is never weaker than its pairs apart (the sum of the k - 1 smallest eigenvalues is superadditive,
Ky Fan) and sees what one pair cannot: that layer t+1's split must serve both its neighbours.

It is maximised by L-BFGS on the supergradient (restarted from the best point when its line
search gives up); EVERY evaluated point is a valid bound (lowered by the relative safety margin
of :mod:`.spectral`), so stopping early at a deadline, a step cap or on stalling is safe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import minimize

from placer.solvers.bounds.spectral import SAFETY, chain_value, householder, layer_value


@dataclass(frozen=True)
class Effort:
    """How long one ascent runs: until ``deadline`` (``time.perf_counter()`` seconds), at most
    ``max_evals`` evaluations, or until ``patience`` evaluations raise the best value by less
    than ``rel_tol`` (relative)."""

    deadline: float
    max_evals: int = 300
    patience: int = 40
    rel_tol: float = 1e-4


class _Stop(Exception):
    pass


# a claim as a function of its variables: (valid bound, supergradient)
Claim = Callable[[np.ndarray], tuple[float, np.ndarray]]


def split_cut_bound(w: np.ndarray, parts: int, size: int, within: bool, effort: Effort,
                    floor: float = 0.0) -> tuple[float, int, str]:
    """``(bound, evaluations, method)``: the best valid value found within ``effort`` for the cut
    of ``w``: ``[c-1, E, E]`` the transitions of a chain of c consecutive layers, or (``within``)
    ``[E, E]`` one layer's co-activation.

    Two phases: the eigenvalue claim alone (``w1 = w``, potentials 0: only ``u`` moves, cheap
    and robust on sparse graphs), then the split from where it ended: at ``w1 = w`` when it beat
    ``floor`` (the b-matching value), else at ``w1 = w / 2`` (dense graphs, where the degrees
    matter). Starts are jittered by a seeded 1 % of the mean weight: at zero potentials every
    zero weight is a kink where L-BFGS's line search would stop at once.
    """
    W = np.array(w, dtype=np.float64)
    if within:
        np.fill_diagonal(W, 0.0)
        deg, pots = W.sum(axis=1), W.shape[0]
    else:
        deg = np.zeros((W.shape[0] + 1, W.shape[1]))
        deg[:-1] += W.sum(axis=2)
        deg[1:] += W.sum(axis=1)
        deg, pots = deg.ravel(), 2 * W.shape[0] * W.shape[1]
    rng = np.random.default_rng(0)
    jitter = 0.01 * (W.sum() / max(1, np.count_nonzero(W)))
    now = time.perf_counter()
    first = Effort(min(effort.deadline, now + (effort.deadline - now) / 3), effort.max_evals // 3,
                   effort.patience, effort.rel_tol)
    u0 = -0.2 * deg + jitter * rng.standard_normal(deg.shape)
    eig_best, u, n1 = _maximise(eigen_claim(W, parts, size, within), u0, first)
    frac = 1.0 if eig_best >= floor else 0.5
    x0 = np.concatenate([frac * W.ravel(), frac * u, np.zeros(pots)])
    x0 += 0.1 * jitter * rng.standard_normal(x0.shape)
    rest = Effort(effort.deadline, effort.max_evals - n1, effort.patience, effort.rel_tol)
    split_best, _, n2 = _maximise((layer_claim if within else chain_claim)(W, parts, size), x0, rest)
    if split_best > eig_best:
        return split_best, n1 + n2, "eigenvalue/degree split"
    return eig_best, n1 + n2, "eigenvalue"


def eigen_claim(w: np.ndarray, parts: int, size: int, within: bool) -> Claim:
    """The eigenvalue bound of :mod:`.spectral` on all of ``w`` as a function of ``u`` alone."""
    v = householder(w.shape[-1])
    fn = layer_value if within else chain_value

    def value(u: np.ndarray) -> tuple[float, np.ndarray]:
        val, grad_u, _ = fn(w, u, v, parts, size)
        return val, grad_u

    return value


def chain_claim(ws: np.ndarray, parts: int, size: int) -> Claim:
    """The chain claim for ``ws`` ``[c-1, E, E]`` as a function of ``x = [w1 ((c-1) E E),
    u (c E), a ((c-1) E), b ((c-1) E)]`` (``a[t]``, ``b[t]``: the potentials of pair t's rows and
    columns), returning ``(valid bound, supergradient)``."""
    W = np.asarray(ws, dtype=np.float64)
    P, E = W.shape[0], W.shape[1]
    v = householder(E)
    nw, nu = P * E * E, (P + 1) * E

    def value(x: np.ndarray) -> tuple[float, np.ndarray]:
        w1, u = x[:nw].reshape(P, E, E), x[nw:nw + nu]
        a, b = x[nw + nu:nw + nu + P * E].reshape(P, E), x[nw + nu + P * E:].reshape(P, E)
        dh, gu, gw = chain_value(w1, u, v, parts, size)
        w2, ab = W - w1, a[:, :, None] + b[:, None, :]
        pot = ab < w2                                   # where the degree term pays a_i + b_j
        low = np.where(pot, ab, w2)
        deg = low.sum() - size * (a.sum() + b.sum())
        margin = SAFETY * (np.abs(low).sum() + size * (np.abs(a).sum() + np.abs(b).sum()))
        grad = np.concatenate([(gw - ~pot).ravel(), gu, (pot.sum(axis=2) - size).ravel(),
                               (pot.sum(axis=1) - size).ravel()])
        return dh + deg - margin, grad

    return value


def layer_claim(c: np.ndarray, parts: int, size: int) -> Claim:
    """The layer claim for symmetric ``c`` ``[E, E]`` as a function of ``x = [X (E*E), u (E),
    a (E)]`` (``c1 = (X + X^T) / 2``, diagonal ignored)."""
    C = np.array(c, dtype=np.float64)
    np.fill_diagonal(C, 0.0)
    E = C.shape[0]
    v = householder(E)
    off = ~np.eye(E, dtype=bool)

    def value(x: np.ndarray) -> tuple[float, np.ndarray]:
        X, u, a = x[:E * E].reshape(E, E), x[E * E:E * E + E], x[E * E + E:]
        c1 = 0.5 * (X + X.T)
        np.fill_diagonal(c1, 0.0)
        dh, gu, gc = layer_value(c1, u, v, parts, size)
        c2, aa = C - c1, a[:, None] + a[None, :]
        pot = (aa < c2) & off
        low = np.where(pot, aa, c2)
        np.fill_diagonal(low, 0.0)
        deg = 0.5 * low.sum() - (size - 1) * a.sum()
        margin = SAFETY * (0.5 * np.abs(low).sum() + (size - 1) * np.abs(a).sum())
        gX = 0.5 * (gc - (off & ~pot))
        return dh + deg - margin, np.concatenate([gX.ravel(), gu, pot.sum(axis=1) - (size - 1)])

    return value


def _maximise(value: Claim, x0: np.ndarray, effort: Effort) -> tuple[float, np.ndarray, int]:
    """``(best value, its point, evaluations)`` over the points L-BFGS evaluates from ``x0``
    (restarted from the best point while it improves), within ``effort``."""
    best = {"value": -np.inf, "x": x0, "evals": 0, "history": []}

    def negated(x: np.ndarray) -> tuple[float, np.ndarray]:
        if best["evals"] >= effort.max_evals or time.perf_counter() >= effort.deadline:
            raise _Stop
        val, grad = value(x)
        best["evals"] += 1
        if val > best["value"]:
            best["value"], best["x"] = val, x.copy()
        hist = best["history"]
        hist.append(best["value"])
        if len(hist) > effort.patience and hist[-1] - hist[-1 - effort.patience] <= effort.rel_tol * abs(hist[-1]):
            raise _Stop
        return -val, -grad

    start = x0
    while True:
        before = best["value"]
        try:
            minimize(negated, start, jac=True, method="L-BFGS-B",
                     options={"maxiter": effort.max_evals, "maxfun": effort.max_evals, "ftol": 0.0, "gtol": 0.0})
        except _Stop:
            break
        if not best["value"] > before + effort.rel_tol * abs(best["value"]):
            break
        start = best["x"]
    return float(best["value"]), best["x"], int(best["evals"])
