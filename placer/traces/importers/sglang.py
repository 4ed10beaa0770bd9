"""SGLang expert-distribution recorder dumps (``torch.save`` files; torch needed, loaded with
``weights_only=True``, never unpickled).

- mode ``per_token`` (``--expert-distribution-recorder-mode per_token``): a dict with
  ``records`` (one per forward pass: ``topk_ids_of_layer`` int32 ``[num_hidden_layers, tokens,
  8]`` of PHYSICAL slot ids, -1 where nothing was recorded; ``extend_seq_lens``, the request
  lengths of a prefill pass, or None) and ``last_physical_to_logical_map`` ``[num_hidden_layers,
  num_physical]``. Physical ids map to logical ids through that map; hidden layers whose rows
  are all -1 are dense and dropped; columns that are -1 in every MoE layer are padding beyond
  the model's top-k and dropped. Requests of a prefill pass are sequences; a pass without
  ``extend_seq_lens`` (decode) has one token per request, so each token is a sequence.
- mode ``stat``: a dict with ``logical_count`` ``[buffer, num_hidden_layers, E]`` (a zero-padded
  circular buffer of per-pass counts). Aggregate only: the buffer is summed into per-layer
  loads, all-zero layers are taken as dense and dropped, and a Profile (loads only) results.
  K is not in the file: pass ``--top-k`` (tokens = picks / K).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from placer.errors import PlacerError
from placer.fileio import torch_load
from placer.model.fields import as_int, as_int_list, check_kind
from placer.model.profile import Profile
from placer.model.trace import Trace
from placer.traces.importers.common import ImportOptions, make_trace, offsets_from_lengths
from placer.traces.importers.registry import Importer, register


def _sniff(path: Path) -> bool:
    # torch.save writes a zip archive holding data.pkl; a cheap check without importing torch.
    if path.suffix.lower() not in (".pt", ".pth"):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("data.pkl") for n in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return True  # claim it so the loader reports the corruption


def _torch_load(path: Path) -> Any:
    return torch_load(path, "save plain tensors and dump it again")


def _np(path: Path, x: Any, what: str, ndim: tuple[int, ...], kinds: str = "iu") -> np.ndarray:
    """A tensor (or list) of the dump as a numpy array of ``kinds`` with one of ``ndim`` dimensions."""
    try:
        arr = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    except (ValueError, TypeError, RuntimeError):
        raise PlacerError(f"{path}: {what} is not a rectangular array; the dump is corrupt, dump it again") from None
    check_kind(arr, f"{path}: {what}", kinds, "integers" if kinds == "iu" else "numbers", "dump it again")
    if arr.ndim not in ndim:
        raise PlacerError(f"{path}: {what} has shape {list(arr.shape)}, expected {' or '.join(f'{d}-d' for d in ndim)}; "
                          f"the dump is inconsistent")
    return arr


def _load(path: Path, options: ImportOptions) -> "Trace | Profile":
    obj = _torch_load(path)
    if isinstance(obj, dict) and "records" in obj:
        return _per_token(path, obj, options)
    if isinstance(obj, dict) and "logical_count" in obj:
        return _stat(path, obj, options)
    keys = ", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
    raise PlacerError(f"{path}: not an SGLang expert-distribution dump (found {keys}; expected 'records' "
                      f"or 'logical_count'); dump with --expert-distribution-recorder-mode per_token or stat")


def _seq_lens(path: Path, i: int, value: Any, tokens: int) -> list[int]:
    """A prefill pass's request lengths (None: a decode pass, one token per request)."""
    if value is None:
        return [1] * tokens
    if hasattr(value, "tolist"):
        value = value.tolist()
    lens = as_int_list(value, f"{path}: record {i} extend_seq_lens", 0, fix="dump it again")
    return [s for s in lens if s > 0] if lens and sum(lens) == tokens else [1] * tokens


def _per_token(path: Path, obj: dict, options: ImportOptions) -> Trace:
    if "last_physical_to_logical_map" not in obj:
        raise PlacerError(f"{path}: the per_token dump has no last_physical_to_logical_map; dump it again with a current SGLang")
    p2l = _np(path, obj["last_physical_to_logical_map"], "last_physical_to_logical_map", (2,)).astype(np.int64)
    if not isinstance(obj["records"], (list, tuple)):
        raise PlacerError(f"{path}: records is a {type(obj['records']).__name__}, not a list of forward passes; dump it again")
    blocks, lengths = [], []
    for i, rec in enumerate(obj["records"]):
        if not isinstance(rec, dict) or "topk_ids_of_layer" not in rec:
            raise PlacerError(f"{path}: record {i} has no topk_ids_of_layer; dump with --expert-distribution-recorder-mode per_token")
        ids = _np(path, rec["topk_ids_of_layer"], f"record {i} topk_ids_of_layer", (3,)).astype(np.int64)
        if ids.shape[0] != p2l.shape[0]:
            raise PlacerError(f"{path}: record {i}: topk_ids_of_layer has shape {list(ids.shape)}, expected "
                              f"[{p2l.shape[0]} hidden layers, tokens, top_k]; the dump is inconsistent")
        T = ids.shape[1]
        if T == 0:
            continue
        lengths.extend(_seq_lens(path, i, rec.get("extend_seq_lens"), T))
        blocks.append(ids)
    if not blocks:
        raise PlacerError(f"{path}: the trace is empty (no recorded tokens); record some requests before dumping")
    phys = np.concatenate(blocks, axis=1)  # [H, T, 8]
    if phys.max() >= p2l.shape[1] or phys.min() < -1:
        raise PlacerError(f"{path}: physical slot id out of range [-1, {p2l.shape[1]}); the dump does not match its map")
    moe = [l for l in range(phys.shape[0]) if np.any(phys[l] >= 0)]
    if not moe:
        raise PlacerError(f"{path}: every recorded id is -1 (no MoE layer recorded); record some requests before dumping")
    E = options.num_experts if options.num_experts is not None else obj.get("num_logical_experts")
    E = None if E is None else as_int(E, f"{path}: num_logical_experts", 1, fix="pass --num-experts")
    _check_map(path, p2l[moe], E)
    phys = phys[moe]
    cols = [c for c in range(phys.shape[2]) if np.any(phys[:, :, c] >= 0)]
    phys = phys[:, :, cols]
    if np.any(phys < 0):
        l, t, _ = np.argwhere(phys < 0)[0]
        raise PlacerError(f"{path}: token {t} has no expert recorded at layer {moe[l]} (-1 inside the top-{len(cols)}); "
                          f"the dump is incomplete, record again")
    logical = np.stack([p2l[m][phys[i]] for i, m in enumerate(moe)])
    return make_trace(path, logical, E, moe_layers=moe, num_hidden_layers=p2l.shape[0],
                      seq_offsets=offsets_from_lengths(path, lengths, phys.shape[1]))


def _check_map(path: Path, rows: np.ndarray, num_experts: int | None) -> None:
    """Every MoE row of a physical-to-logical map names each logical expert 0..E-1 at least once."""
    lo, hi = int(rows.min()), int(rows.max())
    E = hi + 1 if num_experts is None else num_experts
    if lo < 0 or hi >= E or E > rows.shape[1]:
        raise PlacerError(f"{path}: last_physical_to_logical_map holds logical ids {lo}..{hi} in {rows.shape[1]} slots"
                          f"{'' if num_experts is None else f' for {num_experts} experts'}; the dump is corrupt")
    for r in rows:
        missing = np.flatnonzero(np.bincount(r, minlength=E) == 0)
        if len(missing):
            raise PlacerError(f"{path}: last_physical_to_logical_map has no slot for logical expert {int(missing[0])} "
                              f"(of {E}) in a MoE layer; the dump is corrupt, dump it again")


def _stat(path: Path, obj: dict, options: ImportOptions) -> Profile:
    counts = _np(path, obj["logical_count"], "logical_count", (2, 3))
    if counts.ndim == 2:
        counts = counts[None]
    load = counts.astype(np.int64).sum(axis=0)
    if np.any(load < 0):
        raise PlacerError(f"{path}: logical_count has negative counts; the dump is corrupt")
    moe = [l for l in range(load.shape[0]) if load[l].sum() > 0]
    if not moe:
        raise PlacerError(f"{path}: the counts are all zero (empty buffer); record some requests before dumping")
    if options.top_k is None:
        raise PlacerError(f"{path}: a stat dump does not say how many experts each token picks; pass --top-k")
    picks = load[moe[0]].sum()
    return Profile(load=load[moe], num_tokens=int(picks // options.top_k), top_k=int(options.top_k),
                   moe_layers=moe, num_hidden_layers=load.shape[0], source=path.name).validate(str(path))


register(Importer("sglang-dump", (".pt", ".pth"), _sniff, _load,
                  "SGLang expert-distribution recorder torch.save dump, mode per_token (trace) or stat (counts); needs torch",
                  aggregate=False))
