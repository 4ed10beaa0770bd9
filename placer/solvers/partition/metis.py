"""Multi-constraint METIS k-way partitioning through ctypes.

pymetis's Python binding fixes ``ncon = 1``: per-layer vertex weights are silently dropped and
whole layers land on one part (``/work/shared/notes.md``). Its extension module, however,
exports the METIS C API, so this module calls ``METIS_PartGraphKway`` on that library directly
with one balance constraint per layer. No extra dependency: the library ships inside pymetis.

Checked on the installed pymetis (2025.2.2) before relying on it, and again at first use
(:func:`_library`):

- ``idx_t`` is 64-bit: ``METIS_SetDefaultOptions`` fills all 40 int64 option slots (a 32-bit
  build would leave the upper half untouched), and ``pymetis._internal._idx_type_width()``
  says 64.
- ``real_t`` is float32: a 100-vertex path split with ``tpwgts = [0.25, 0.75]`` as float32
  comes back as 24/76 vertices.

METIS is deterministic for a given ``METIS_OPTION_SEED`` (the option index comes from pymetis's
own ``options_indices``, so it follows the bundled METIS version).

METIS traps SIGTERM (and SIGABRT) for the length of each call and longjmps out of it, which
would turn a SIGTERM into a "METIS failed" return the solver recovers from, or into a crash
when the signal lands on another thread. The ``moe-place`` process blocks SIGTERM in every
thread (:mod:`placer.interrupt`), so METIS never sees it; elsewhere (placer used as a library)
:func:`part_graph_kway` holds SIGTERM back in the calling thread for the call
(:func:`placer.interrupt.sigterm_deferred`), and it acts as soon as METIS returns.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np

from placer.errors import PlacerError
from placer.interrupt import sigterm_deferred

METIS_OK = 1
METIS_NOPTIONS = 40


@functools.lru_cache(maxsize=1)
def _library() -> tuple[ctypes.CDLL, dict[str, int]]:
    """The METIS C library inside pymetis, after checking that idx_t is int64."""
    try:
        import pymetis._internal as internal
    except ModuleNotFoundError:
        raise PlacerError("the partition solver needs the Python package 'pymetis', which is not installed; "
                          "install it with: pip install pymetis") from None
    except ImportError as exc:      # installed, but its library would not load: say why
        raise PlacerError(f"pymetis is installed but its library did not load ({exc}); reinstall it with: "
                          f"pip install --force-reinstall pymetis") from None
    try:
        lib = ctypes.CDLL(internal.__file__)
        lib.METIS_PartGraphKway.restype = ctypes.c_int
        lib.METIS_SetDefaultOptions.restype = ctypes.c_int
    except (OSError, AttributeError) as exc:
        raise PlacerError(f"pymetis's library does not export the METIS C API ({exc}); "
                          f"install pymetis>=2023.1 or use --solver eplb") from None
    opts = np.zeros(METIS_NOPTIONS, np.int64)
    lib.METIS_SetDefaultOptions(_ptr(opts))
    width = getattr(internal, "_idx_type_width", lambda: 64)()
    if width != 64 or not np.all(opts == -1):
        raise PlacerError(f"pymetis was built with a {width}-bit METIS idx_t; the partition solver needs 64-bit; "
                          f"install a pymetis wheel from PyPI")
    idx = {name: int(getattr(internal.options_indices, name))
           for name in dir(internal.options_indices) if name.isupper()}
    return lib, idx


def _ptr(a: np.ndarray | None) -> ctypes.c_void_p | None:
    return None if a is None else a.ctypes.data_as(ctypes.c_void_p)


def csr_from_edges(num_vertices: int, rows: np.ndarray, cols: np.ndarray,
                          weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric CSR ``(xadj [n+1], adjncy [m], adjwgt [m])`` int64 from undirected edges.

    ``rows``, ``cols`` ``[k]`` vertex ids (each undirected edge once, no self loops), ``weights``
    ``[k]`` positive integers. Both directions are stored, as METIS requires.
    """
    u = np.concatenate([rows, cols]).astype(np.int64)
    v = np.concatenate([cols, rows]).astype(np.int64)
    w = np.concatenate([weights, weights]).astype(np.int64)
    order = np.lexsort((v, u))
    u, v, w = u[order], v[order], w[order]
    xadj = np.zeros(num_vertices + 1, np.int64)
    np.cumsum(np.bincount(u, minlength=num_vertices), out=xadj[1:])
    return xadj, np.ascontiguousarray(v), np.ascontiguousarray(w)


def part_graph_kway(xadj: np.ndarray, adjncy: np.ndarray, adjwgt: np.ndarray | None,
                    vwgt: np.ndarray, nparts: int, seed: int = 0,
                    ubvec: np.ndarray | float | None = None, niter: int | None = None) -> np.ndarray:
    """``[n]`` int64 part of each vertex from multi-constraint ``METIS_PartGraphKway``.

    ``vwgt`` ``[n, ncon]`` int64: one balance constraint per column (here: one per MoE layer, a
    vertex weighs 1 in its own layer's column). ``ubvec``: allowed imbalance per constraint
    (float, or ``[ncon]``; METIS's default 1.03 when None). Edge cut minimised with weights
    ``adjwgt`` (positive integers). Deterministic for a given ``seed``.
    """
    n = len(xadj) - 1
    vwgt = np.ascontiguousarray(np.asarray(vwgt, np.int64).reshape(n, -1))
    ncon = vwgt.shape[1]
    if nparts <= 1 or n == 0:
        return np.zeros(n, np.int64)
    lib, idx = _library()
    opts = np.zeros(METIS_NOPTIONS, np.int64)
    lib.METIS_SetDefaultOptions(_ptr(opts))
    opts[idx["SEED"]] = int(seed) % (2**31 - 1)
    opts[idx["NUMBERING"]] = 0
    if niter is not None:
        opts[idx["NITER"]] = int(niter)
    ub = None
    if ubvec is not None:
        ub = np.ascontiguousarray(np.broadcast_to(np.asarray(ubvec, np.float32), (ncon,)), dtype=np.float32)
    xadj = np.ascontiguousarray(xadj, np.int64)
    adjncy = np.ascontiguousarray(adjncy, np.int64)
    adjw = None if adjwgt is None else np.ascontiguousarray(adjwgt, np.int64)
    part = np.zeros(n, np.int64)
    objval = np.zeros(1, np.int64)
    nv = np.array([n], np.int64)
    nc = np.array([ncon], np.int64)
    npart = np.array([nparts], np.int64)
    with sigterm_deferred():
        status = lib.METIS_PartGraphKway(_ptr(nv), _ptr(nc), _ptr(xadj), _ptr(adjncy), _ptr(vwgt), None,
                                         _ptr(adjw), _ptr(npart), None, _ptr(ub), _ptr(opts),
                                         _ptr(objval), _ptr(part))
    if status != METIS_OK:
        raise PlacerError(f"METIS failed (status {status}) on a {n}-vertex graph with {ncon} constraints into "
                          f"{nparts} parts; try --solver eplb or fewer GPUs")
    return part
