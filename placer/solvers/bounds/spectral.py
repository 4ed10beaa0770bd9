"""The projected Donath-Hoffman eigenvalue bound on the cut of a balanced partition.

Setting. A graph on n vertices with symmetric weights ``A`` (zero diagonal) and Laplacian
``L = diag(A 1) - A``, split into k parts of m vertices each (``k m = n``); the vertices fall into
blocks and every part holds the same number of vertices of each block. The two graphs of the
bounds (shapes ``[E, E]``, E experts, one level of ``parts`` groups of ``size`` slots a layer):

- ``chain`` (coherent): c consecutive layers (a layer pair: c = 2), n = c E, blocks = the layers,
  A holds each consecutive pair's transitions; a group holds ``size`` experts of each layer:
  m = c size (the cut is the sum of the pairs' cuts);
- ``layer`` (ep): one layer's co-activation graph, n = E, one block, m = size.

Claim. For every diagonal ``D = diag(u)``, with ``P`` an orthonormal basis of the vectors whose
sum over every block is zero (``n - blocks`` columns)::

    cut >= (m / 2) * sum of the k - 1 smallest eigenvalues of P^T (L + D) P - (k - 1) / (2 k) * sum(u)

Proof. Let ``x_g`` be the 0/1 indicator of part g. Each cut edge leaves two parts, so
``2 cut = sum_g x_g^T L x_g``; the parts cover every vertex once, so ``sum_g x_g^T D x_g = tr D``.
Write ``x_g = (m / n) 1 + z_g``: every part holds ``m / blocks`` vertices of every block, so
``z_g`` sums to zero on every block (``z_g = P y_g``), and ``sum_g z_g = 1 - k (m / n) 1 = 0``.
Expanding with ``1^T L = 0`` and ``1^T D 1 = tr D``:
``sum_g x_g^T (L + D) x_g = sum_g z_g^T (L + D) z_g + (1 / k) tr D``, so
``2 cut = sum_g y_g^T P^T (L + D) P y_g - (1 - 1 / k) tr D``. Now ``z_g^T z_h = m [g = h] - m^2 / n``,
so ``Y Y^T`` (``Y = [y_g]``) has the nonzero eigenvalues of ``Y^T Y = m (I - J / k)``: m, k - 1
times. Hence ``Y Y^T = m Pi`` with Pi a projector of rank k - 1 and, by Ky Fan,
``tr(P^T (L + D) P Y Y^T) >= m * (sum of the k - 1 smallest eigenvalues)``. No sign of A, L or D
was used: the claim holds for any real weights, which :mod:`.decomposition` relies on.

The value is concave in ``(A, u)`` (a sum of smallest eigenvalues of a matrix linear in them);
with ``U = P V`` (V: the k - 1 eigenvectors) a supergradient is ``(m / 2) |U_v|^2 - (k - 1) / (2 k)``
in ``u_v`` and ``(m / 2) |U_v - U_w|^2`` in the weight of edge (v, w).

Numerical validity: LAPACK's symmetric eigensolver is backward stable (each computed eigenvalue
within a small multiple of ``n eps ||M||`` of the exact one, ``eps = 2^-52``); the value returned
is lowered by ``1e-9`` times the magnitudes of its terms (``||M||`` bounded by row sums of the
matrix and of its input ``L + D``, which also covers the rounding of forming ``P^T (L + D) P``),
far above those errors.

``P`` is the Householder reflector that maps ``e_1`` to ``1 / sqrt(E)`` without its first column
(one per block), so ``P^T X P`` and ``P V`` cost O(E^2) instead of O(E^3).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

# relative safety margin on every value (far above the eigensolver's backward error)
SAFETY = 1e-9


def householder(E: int) -> np.ndarray:
    """``v`` ``[E]``: ``H = I - 2 v v^T / (v^T v)`` maps ``e_1`` to ``1 / sqrt(E)``; ``H[:, 1:]``
    is an orthonormal basis of the vectors that sum to zero (E >= 2)."""
    v = np.full(E, -1.0 / np.sqrt(E))
    v[0] += 1.0
    return v


def _sandwich(v: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``(H X H)[1:, 1:]`` for ``X`` ``[E, E]``, H the reflector of ``v``: ``Q^T X Q``."""
    beta = 2.0 / (v @ v)
    Xv, vX = X @ v, v @ X
    out = X - beta * np.outer(v, vX) - beta * np.outer(Xv, v) + (beta * beta * (v @ Xv)) * np.outer(v, v)
    return out[1:, 1:]


def _sandwich_diag(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``Q^T diag(x) Q`` ``[E-1, E-1]``."""
    beta = 2.0 / (v @ v)
    xv = x * v
    out = np.diag(x) - beta * np.outer(v, xv) - beta * np.outer(xv, v) + (beta * beta * (v @ xv)) * np.outer(v, v)
    return out[1:, 1:]


def _lift(v: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``Q Y`` ``[E, c]`` for ``Y`` ``[E-1, c]``."""
    beta = 2.0 / (v @ v)
    full = np.vstack([np.zeros((1, Y.shape[1])), Y])
    return full - beta * np.outer(v, v[1:] @ Y)


def _smallest(M: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` smallest eigenvalues ``[count]`` and eigenvectors ``[n, count]`` of symmetric M."""
    return scipy.linalg.eigh(M, subset_by_index=[0, count - 1], driver="evr", check_finite=False)


def chain_value(ws: np.ndarray, u: np.ndarray, v: np.ndarray, parts: int, size: int,
                inner: np.ndarray | None = None, skip: np.ndarray | None = None):
    """The claim for the ``chain`` graph of ``c = len(ws) + 1`` consecutive layers.

    ``ws`` ``[c-1, E, E]``: ``ws[t]`` the weights between layer t and t+1 of the chain; ``u``
    ``[c E]`` (layer-major); ``v`` from :func:`householder`. Optional edges of the same graph
    (the claim holds for any weights on any pairs): ``inner`` ``[c, E, E]`` between experts of
    one layer (symmetric, zero diagonal: the weight of each unordered pair) and ``skip``
    ``[c-2, E, E]`` between layer t and t+2. Returns ``(value, grad_u [c E], grad_w [c-1, E, E])``:
    the bound (lowered by the safety margin) and a supergradient.
    """
    c, E = ws.shape[0] + 1, ws.shape[1]
    k, m, e = parts, c * size, E - 1
    deg = np.zeros((c, E))
    deg[:-1] += ws.sum(axis=2)
    deg[1:] += ws.sum(axis=1)
    absdeg = np.zeros((c, E))
    absdeg[:-1] += np.abs(ws).sum(axis=2)
    absdeg[1:] += np.abs(ws).sum(axis=1)
    if inner is not None:
        deg += inner.sum(axis=2)
        absdeg += np.abs(inner).sum(axis=2)
    if skip is not None and c > 2:
        deg[:-2] += skip.sum(axis=2)
        deg[2:] += skip.sum(axis=1)
        absdeg[:-2] += np.abs(skip).sum(axis=2)
        absdeg[2:] += np.abs(skip).sum(axis=1)
    uu = u.reshape(c, E)
    M = np.zeros((c * e, c * e))
    for t in range(c):
        block = _sandwich_diag(v, deg[t] + uu[t])
        if inner is not None:
            block -= _sandwich(v, inner[t])
        M[t * e:(t + 1) * e, t * e:(t + 1) * e] = block
    for t in range(c - 1):
        off = -_sandwich(v, ws[t])
        M[t * e:(t + 1) * e, (t + 1) * e:(t + 2) * e] = off
        M[(t + 1) * e:(t + 2) * e, t * e:(t + 1) * e] = off.T
    for t in range(c - 2 if skip is not None else 0):
        off = -_sandwich(v, skip[t])
        M[t * e:(t + 1) * e, (t + 2) * e:(t + 3) * e] = off
        M[(t + 2) * e:(t + 3) * e, t * e:(t + 1) * e] = off.T
    if inner is not None:
        M = 0.5 * (M + M.T)
    lam, V = _smallest(M, k - 1)
    U = np.stack([_lift(v, V[t * e:(t + 1) * e]) for t in range(c)])          # [c, E, k-1]
    nu = (U * U).sum(axis=2)
    value = 0.5 * m * lam.sum() - (k - 1) / (2 * k) * u.sum()
    norm = np.abs(M).sum(axis=1).max() + np.abs(u).max() + 2.0 * absdeg.max()
    scale = 0.5 * m * (k - 1) * norm + (k - 1) / (2 * k) * np.abs(u).sum()
    grad_w = 0.5 * m * (nu[:-1, :, None] + nu[1:, None, :] - 2.0 * np.einsum("tik,tjk->tij", U[:-1], U[1:]))
    return value - SAFETY * scale, 0.5 * m * nu.ravel() - (k - 1) / (2 * k), grad_w


def layer_value(c: np.ndarray, u: np.ndarray, v: np.ndarray, parts: int, size: int):
    """The claim for the ``layer`` graph with symmetric zero-diagonal weights ``c`` ``[E, E]``.

    Returns ``(value, grad_u [E], grad_c [E, E])``; ``grad_c[i, j]`` is the supergradient in the
    weight of the unordered pair {i, j} (symmetric, zero diagonal).
    """
    k, m = parts, size
    M = _sandwich(v, np.diag(c.sum(axis=1) + u) - c)
    M = 0.5 * (M + M.T)
    lam, V = _smallest(M, k - 1)
    U = _lift(v, V)
    nu = (U * U).sum(axis=1)
    value = 0.5 * m * lam.sum() - (k - 1) / (2 * k) * u.sum()
    norm = np.abs(M).sum(axis=1).max() + np.abs(u).max() + 2.0 * np.abs(c).sum(axis=1).max()
    scale = 0.5 * m * (k - 1) * norm + (k - 1) / (2 * k) * np.abs(u).sum()
    grad_c = 0.5 * m * (nu[:, None] + nu[None, :] - 2.0 * (U @ U.T))
    np.fill_diagonal(grad_c, 0.0)
    return value - SAFETY * scale, 0.5 * m * nu - (k - 1) / (2 * k), grad_c
