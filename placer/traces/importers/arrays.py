"""Array formats: ``.npz`` with ``expert_ids [L, T, K]`` (ESFT layout, native traces) and
ExFlow's ``.npy`` of top-1 ids ``[tokens, layers]``.

Both are read with ``allow_pickle=False``; an array that would need pickle is refused.
"""

from __future__ import annotations

import tokenize
from pathlib import Path

import numpy as np

from placer.errors import PlacerError
from placer.model.fields import as_layer_count, as_layer_list, as_text
from placer.model.trace import Trace
from placer.model.trace_file import read_npz_members
from placer.traces.importers.common import ImportOptions, make_trace, native_kind, npz_names
from placer.traces.importers.registry import Importer, register


def _sniff_npz(path: Path) -> bool:
    if path.suffix.lower() != ".npz":
        return False
    return "expert_ids" in npz_names(path)


def _load_npz(path: Path, options: ImportOptions) -> Trace:
    if native_kind(path) == "trace":
        trace = Trace.load(path, mmap=True)
        if options.num_experts is not None:
            trace.num_experts = int(options.num_experts)
            trace.validate(str(path))
        return trace
    arrays, meta = read_npz_members(path, mmap=True)
    if "expert_ids" not in arrays:
        raise PlacerError(f"{path}: no 'expert_ids' array (found: {', '.join(sorted(arrays)) or 'none'}); "
                          f"store expert ids as expert_ids [layers, tokens, top_k]")
    key = "moe_layer_numbers" if "moe_layer_numbers" in arrays else "moe_layers"
    fix = "fix the file"
    moe_layers = None if key not in arrays else as_layer_list(np.asarray(arrays[key]), f"{path}: {key}", fix)
    meta = meta or {}
    E = options.num_experts if options.num_experts is not None else meta.get("num_experts")
    return make_trace(path, arrays["expert_ids"], E, gate_weights=arrays.get("gate_weights"),
                      seq_offsets=arrays.get("seq_offsets"), moe_layers=moe_layers,
                      num_hidden_layers=as_layer_count(meta.get("num_hidden_layers"), f"{path}: num_hidden_layers", fix),
                      model=as_text(meta.get("model"), f"{path}: model", fix))


def _sniff_npy(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(6) == b"\x93NUMPY"
    except OSError:
        return False


def _load_npy(path: Path, options: ImportOptions) -> Trace:
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise PlacerError(f"{path}: the array holds Python objects (pickle), which moe-place never loads; store plain integer ids") from None
        raise PlacerError(f"{path}: not a readable .npy file ({' '.join(str(exc).split())[:120]}); the file is truncated or corrupt, re-create it") from None
    except (OSError, EOFError, SyntaxError, tokenize.TokenError, TypeError) as exc:
        raise PlacerError(f"{path}: not a readable .npy file ({exc}); the file is truncated or corrupt, re-create it") from None
    if arr.ndim != 2:
        raise PlacerError(f"{path}: ExFlow .npy traces are [tokens, layers] of top-1 ids, got shape {list(arr.shape)}; re-export it")
    # [T, L] top-1 -> [L, T, 1]
    return make_trace(path, np.ascontiguousarray(np.asarray(arr).T)[:, :, None], options.num_experts)


register(Importer("npz", (".npz",), _sniff_npz, _load_npz,
                  "expert_ids [L, T, K] (+ gate_weights, seq_offsets, moe_layer_numbers); native traces too"))
register(Importer("exflow-npy", (".npy",), _sniff_npy, _load_npy, "ExFlow .npy [tokens, layers] of top-1 expert ids"))
