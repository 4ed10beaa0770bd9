"""Aggregate counts: inputs that only logged statistics, not per-token ids. They give a
:class:`Profile` (loads, and layer-pair matrices when the file has them), never a Trace.

- ``counts`` (native): an ``.npz`` with ``load [L, E]`` integer picks per layer and expert,
  optional ``trans [L-1, E, E]`` (every one of a token's K x K pairs counts 1),
  ``trans_top1 [L-1, E, E]`` (top-1 pairs), ``coact [L, E, E]``, scalar ``top_k`` (default 1,
  or ``--top-k``), ``num_tokens`` (default ``load[0].sum() // top_k``) and ``moe_layers [L]``.
  A profile written by ``moe-place profile`` is read as is.
- ``olmoe-counts``: allenai/OLMoE's routing counts (``shared/traces/olmoe``), keys
  ``<model>__<domain>__<what>``; ``--key model__domain`` picks one. ``topk_counts [3, E]`` give
  the loads at layers ``layers_of_counts`` (0, 7, 15); ``crosslayer_top1 [2, E, E]`` (joint
  top-1 counts of consecutive saved layers) become ``trans_top1``; K = topk picks / top-1 picks
  (or ``--top-k`` where no top-1 counts exist). ``crosslayer_topk`` is NOT a K x K
  co-occurrence (rank-r pairs only) and is not used; ``trans`` stays empty.
- ``fiddler-counts``: efeslab/fiddler's ``counts [models, subjects, layers, E]`` with ``models``
  and ``subjects`` names; ``--key MODEL__SUBJECT`` (names or indices; SUBJECT ``all`` sums the
  subjects). Loads only; K defaults to 2 (Mixtral; ``--top-k`` overrides).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from placer.errors import PlacerError
from placer.model.fields import as_layer_list, check_kind, int_scalar_array
from placer.model.profile import Profile
from placer.model.trace_file import read_npz_members
from placer.traces.importers.common import ImportOptions, native_kind, npz_names
from placer.traces.importers.registry import Importer, register


def _int_counts(path: Path, arrays: dict[str, np.ndarray], key: str, ndim: int) -> np.ndarray:
    arr = np.asarray(arrays[key])
    if arr.ndim != ndim:
        raise PlacerError(f"{path}: '{key}' has shape {list(arr.shape)}, expected {ndim} dimensions; fix the counts")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise PlacerError(f"{path}: '{key}' contains NaN or infinite values; fix the counts")
        if np.any(arr != np.round(arr)):
            raise PlacerError(f"{path}: '{key}' holds fractional counts; counts must be whole numbers")
        if arr.size and np.abs(arr.astype(np.float64)).max() >= 2**62:
            raise PlacerError(f"{path}: '{key}' holds counts beyond 2^62; fix the counts")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise PlacerError(f"{path}: '{key}' must hold numeric counts, got {arr.dtype}")
    arr = arr.astype(np.int64)
    if np.any(arr < 0):
        raise PlacerError(f"{path}: '{key}' has negative counts; fix the counts")
    return arr


def _tokens(path: Path, load: np.ndarray, top_k: int) -> int:
    if top_k < 1:
        raise PlacerError(f"{path}: top_k must be at least 1, got {top_k}; pass --top-k")
    return int(load[0].sum() // top_k)


# ------------------------------------------------------------------ native counts
def _sniff_counts(path: Path) -> bool:
    if path.suffix.lower() != ".npz":
        return False
    names = npz_names(path)
    return native_kind(path) == "profile" or ("load" in names and "expert_ids" not in names)


def _load_counts(path: Path, options: ImportOptions) -> Profile:
    if native_kind(path) == "profile":
        return Profile.load_file(path)
    arrays, _ = read_npz_members(path, mmap=False)
    if "load" not in arrays:
        raise PlacerError(f"{path}: no 'load' array [layers, experts]; see docs/formats.md for the counts format")
    load = _int_counts(path, arrays, "load", 2)
    if load.size == 0:
        raise PlacerError(f"{path}: 'load' is empty ({list(load.shape)}); give at least one layer and expert")
    fix = "fix the counts"
    K = int_scalar_array(arrays["top_k"], f"{path}: top_k", 1, fix) if "top_k" in arrays else (options.top_k or 1)
    T = int_scalar_array(arrays["num_tokens"], f"{path}: num_tokens", 0, fix, 2**62) if "num_tokens" in arrays else _tokens(path, load, K)
    if int(load.sum(axis=1).max()) > T * K:
        raise PlacerError(f"{path}: a layer counts {int(load.sum(axis=1).max())} picks, more than num_tokens x top_k = "
                          f"{T} x {K}; fix num_tokens or top_k")
    mats = {k: _int_counts(path, arrays, k, 3) for k in ("trans", "trans_top1", "coact") if k in arrays}
    layers = arrays.get("moe_layers")
    prof = Profile(load=load, num_tokens=T, top_k=K, source=path.name, **mats,
                   moe_layers=None if layers is None else as_layer_list(layers, f"{path}: moe_layers", fix))
    return prof.validate(str(path))


# --------------------------------------------------------------------- OLMoE
def _sniff_olmoe(path: Path) -> bool:
    return path.suffix.lower() == ".npz" and any(n.endswith("__topk_counts") for n in npz_names(path))


def _choose(path: Path, key: str | None, choices: list[str], what: str) -> str:
    if key is None or key not in choices:
        problem = f"'{key}' is not one of its entries" if key else f"holds several {what}s"
        raise PlacerError(f"{path}: {problem}; choose one with --key, one of: {', '.join(choices)}")
    return key


def _load_olmoe(path: Path, options: ImportOptions) -> Profile:
    arrays, _ = read_npz_members(path, mmap=False)
    choices = sorted({k[: -len("__topk_counts")] for k in arrays if k.endswith("__topk_counts")})
    key = options.key if options.key in choices or len(choices) != 1 else choices[0]
    key = _choose(path, key, choices, "model/domain")
    load = _int_counts(path, arrays, f"{key}__topk_counts", 2)
    layers = as_layer_list(np.asarray(arrays.get("layers_of_counts", np.arange(load.shape[0]))), f"{path}: layers_of_counts",
                           "fix the counts")
    if len(layers) != load.shape[0]:
        raise PlacerError(f"{path}: layers_of_counts lists {len(layers)} layers but {key}__topk_counts has {load.shape[0]}")
    top1 = arrays.get(f"{key}__top1_counts")
    trans_top1 = None
    if top1 is not None:
        top1 = _int_counts(path, arrays, f"{key}__top1_counts", 2)
        tokens = int(top1[0].sum())
        if tokens == 0 or load[0].sum() % tokens:
            raise PlacerError(f"{path}: {key}: top-k picks ({int(load[0].sum())}) are not a multiple of top-1 picks ({tokens}); the counts are inconsistent")
        K = int(load[0].sum() // tokens)
        if options.top_k is not None and options.top_k != K:
            raise PlacerError(f"{path}: {key} counts imply top-{K}, not --top-k {options.top_k}; drop --top-k")
    elif options.top_k is not None:
        K = int(options.top_k)
        tokens = _tokens(path, load, K)
    else:
        raise PlacerError(f"{path}: {key} has no top-1 counts, so its top-k is unknown; pass --top-k")
    if f"{key}__crosslayer_top1" in arrays:
        pairs = np.asarray(arrays.get("layer_pairs_of_crosslayer", np.stack([layers[:-1], layers[1:]], 1)))
        check_kind(pairs, f"{path}: layer_pairs_of_crosslayer", "iu", "layer numbers")
        if pairs.ndim != 2 or [list(map(int, p)) for p in pairs] != [[a, b] for a, b in zip(layers, layers[1:])]:
            raise PlacerError(f"{path}: crosslayer pairs {pairs.tolist()} are not the consecutive saved layers {layers}; cannot use them")
        trans_top1 = _int_counts(path, arrays, f"{key}__crosslayer_top1", 3)
    model = key.split("__")[0]
    return Profile(load=load, num_tokens=tokens, top_k=K, trans_top1=trans_top1, moe_layers=layers,
                   model={"mistral": "Mixtral-8x7B"}.get(model, model), source=f"{path.name}:{key}").validate(str(path))


# -------------------------------------------------------------------- fiddler
def _sniff_fiddler(path: Path) -> bool:
    if path.suffix.lower() != ".npz":
        return False
    names = set(npz_names(path))
    return {"counts", "models", "subjects"} <= names


def _load_fiddler(path: Path, options: ImportOptions) -> Profile:
    arrays, _ = read_npz_members(path, mmap=False)
    counts = _int_counts(path, arrays, "counts", 4)
    models = [str(m) for m in np.asarray(arrays["models"]).ravel()]
    subjects = [str(s) for s in np.asarray(arrays["subjects"]).ravel()]
    if counts.shape[:2] != (len(models), len(subjects)):
        raise PlacerError(f"{path}: counts has shape {list(counts.shape)} but the file names {len(models)} models and {len(subjects)} subjects")
    choices = [f"{m}__{s}" for m in models for s in subjects + ["all"]]
    key = options.key
    if key is None or "__" not in key:
        _choose(path, None if key is None else key, choices, "model/subject")
    m, s = key.split("__", 1)
    mi = models.index(m) if m in models else (int(m) if m.isdigit() and int(m) < len(models) else None)
    si = None if s == "all" else (subjects.index(s) if s in subjects else (int(s) if s.isdigit() and int(s) < len(subjects) else None))
    if mi is None or (si is None and s != "all"):
        _choose(path, key, choices, "model/subject")
    load = counts[mi].sum(axis=0) if si is None else counts[mi, si]
    K = int(options.top_k or 2)
    name = f"{models[mi]}__{'all' if si is None else subjects[si]}"
    return Profile(load=load, num_tokens=_tokens(path, load, K), top_k=K, model=models[mi],
                   source=f"{path.name}:{name}").validate(str(path))


register(Importer("counts", (".npz",), _sniff_counts, _load_counts,
                  "native counts .npz: load [L, E] (+ trans, trans_top1, coact, top_k, num_tokens, moe_layers), or a saved profile",
                  aggregate=True))
register(Importer("olmoe-counts", (".npz",), _sniff_olmoe, _load_olmoe,
                  "allenai/OLMoE routing counts <model>__<domain>__<what> (--key model__domain)", aggregate=True))
register(Importer("fiddler-counts", (".npz",), _sniff_fiddler, _load_fiddler,
                  "efeslab/fiddler counts [models, subjects, layers, E] (--key MODEL__SUBJECT)", aggregate=True))
