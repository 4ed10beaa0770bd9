"""Helpers every importer shares: building a validated Trace, reading JSON and JSONL safely.

Importers keep expert ids signed (int64) until :func:`make_trace` has checked them, so a
negative id in the input is reported instead of wrapping around in an unsigned dtype.
"""

from __future__ import annotations

import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from placer.errors import PlacerError
from placer.fileio import parse_json
from placer.limits import JSON_EXPANSION, MAX_LAYER_NUMBER, check_budget, check_experts, npy_header
from placer.model.fields import as_int, check_kind
from placer.model.profile import PROFILE_FORMAT
from placer.model.trace import Trace, id_dtype
from placer.model.trace_file import TRACE_FORMAT


@dataclass(frozen=True)
class ImportOptions:
    """What a user can tell an importer that the file itself may not say.

    - ``num_experts``: E; default: the largest id seen plus one.
    - ``key``: which entry to take from a file that holds many (``model__domain``).
    - ``top_k``: K for aggregate counts that do not reveal it, and for raw int32
      ``routed_experts`` payloads.
    - ``num_hidden_layers``: layer count of a raw int32 ``routed_experts`` payload.
    """

    num_experts: int | None = None
    key: str | None = None
    top_k: int | None = None
    num_hidden_layers: int | None = None


def make_trace(name: str | Path, ids: np.ndarray, num_experts: int | None = None, *,
               gate_weights: np.ndarray | None = None, seq_offsets: np.ndarray | None = None,
               moe_layers: list[int] | None = None, num_hidden_layers: int | None = None,
               model: str | None = None, source: str | None = None) -> Trace:
    """A validated in-memory Trace from ``ids [L, T, K]`` (any integer dtype, signed allowed).

    ``num_experts`` defaults to ``max(ids) + 1``. Raises :class:`PlacerError` naming ``name``.
    """
    name = str(name)
    ids = np.asarray(ids)
    if ids.ndim != 3:
        raise PlacerError(f"{name}: expert ids must form [layers, tokens, top_k], got shape {list(ids.shape)}; check the file layout")
    if ids.size == 0:
        raise PlacerError(f"{name}: the trace is empty ({ids.shape[0]} layers, {ids.shape[1]} tokens, top-{ids.shape[2]}); record at least one token of one layer")
    if ids.dtype.kind not in "iu":
        raise PlacerError(f"{name}: expert ids must be integers, got {ids.dtype}; store expert ids as integers")
    lo = int(ids.min())
    if lo < 0:
        raise PlacerError(f"{name}: expert id {lo} is negative; expert ids must be 0 .. E-1, fix the ids")
    if num_experts is None:
        hi = int(ids.max())
        check_experts(name, ids.shape[0], hi + 1, f"the largest expert id, {hi}, implies num_experts")
        E = hi + 1
    else:
        E = as_int(num_experts, f"{name}: num_experts", 1, fix="pass the right --num-experts")
    if gate_weights is not None:
        gate_weights = np.asarray(gate_weights)
        check_kind(gate_weights, f"{name}: gate_weights", "iuf", "real numbers", "re-export the weights or drop them")
        if gate_weights.dtype.kind != "f":
            gate_weights = gate_weights.astype(np.float32)
    trace = Trace(expert_ids=ids, num_experts=E, gate_weights=gate_weights, seq_offsets=seq_offsets,
                  moe_layers=moe_layers, num_hidden_layers=num_hidden_layers, model=model,
                  source=source or Path(name).name)
    trace.validate(name)
    trace.expert_ids = np.ascontiguousarray(ids.astype(id_dtype(E), copy=False))
    return trace


def offsets_from_lengths(name: str | Path, lengths: list[int] | np.ndarray, total: int) -> np.ndarray:
    """``[S + 1]`` offsets from sequence lengths; raises when they do not add up to ``total``."""
    lens = np.asarray(lengths, dtype=np.int64)
    if np.any(lens <= 0) or int(lens.sum()) != total:
        raise PlacerError(f"{name}: sequence lengths add up to {int(lens.sum())} tokens but the file has {total}; fix the sequence boundaries")
    return np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)


def offsets_from_labels(labels: np.ndarray) -> np.ndarray | None:
    """``[S + 1]`` offsets where consecutive ``labels [T]`` change; None for a single run."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return None
    cuts = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    if len(cuts) == 0:
        return None
    return np.concatenate([[0], cuts, [len(labels)]]).astype(np.int64)


def read_json(path: Path) -> Any:
    """Parse a whole JSON file (:func:`placer.fileio.read_json`: depth and size bounded)."""
    from placer.fileio import read_json as read
    return read(path, "trace", "the file is truncated or corrupt, re-export it")


def iter_jsonl(path: Path, accumulate: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for every non-blank line of a JSON Lines file.

    Lines are parsed one at a time (depth-checked, :func:`placer.fileio.parse_json`); with
    ``accumulate`` (the caller keeps every record's values) the whole file's size is checked
    against the memory budget first.
    """
    if accumulate:
        size = _size(path)
        check_budget(size * JSON_EXPANSION, f"{path}: {size:,} bytes of JSON Lines", "split the file and import the parts")
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise PlacerError(f"{path}: no such file; check the path") from None
    except OSError as exc:
        raise PlacerError(f"{path}: cannot read it ({exc.strerror}); check the path") from None
    with fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            obj = parse_json(raw, f"{path}: line {n}", "the file is truncated or corrupt, re-export it")
            if not isinstance(obj, dict):
                raise PlacerError(f"{path}: line {n} is not a JSON object; each line must be one record {{...}}")
            yield n, obj


def _size(path: Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def first_jsonl_record(path: Path) -> dict[str, Any] | None:
    """The first non-blank line of ``path`` parsed as a JSON object, or None (for sniffing)."""
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                if raw.strip():
                    obj = parse_json(raw, str(path))
                    return obj if isinstance(obj, dict) else None
    except (OSError, PlacerError):
        return None
    return None


def record_int(path: Path, n: int, rec: dict[str, Any], key: str, lo: int | None = 0, default: Any = KeyError) -> int:
    """Field ``key`` of the record on line ``n`` as an int ``>= lo`` (typed, never coerced);
    layer numbers and counts at most :data:`placer.limits.MAX_LAYER_NUMBER`, others below 2^62."""
    if key not in rec:
        if default is KeyError:
            raise PlacerError(f"{path}: line {n} has no '{key}'; fix the record")
        return default
    hi = MAX_LAYER_NUMBER + 1 if "layer" in key else 2**62
    return as_int(rec[key], f"{path}: line {n} '{key}'", lo, hi, fix="fix the record")


def npy_from_bytes(raw: bytes, where: str) -> np.ndarray:
    """An array from the bytes of an ``.npy`` file, its header checked first: numbers (no
    pickle), and a declared size the bytes actually hold."""
    import io

    fh = io.BytesIO(raw)
    try:
        shape, _f, dtype = npy_header(fh)
        if dtype.hasobject or dtype.kind not in "biuf":
            raise ValueError(f"it holds {dtype}, not numbers")
        size = dtype.itemsize
        for d in shape:
            size *= int(d)
        if size > len(raw) - fh.tell():
            raise ValueError(f"its header declares {list(shape)} {dtype} but only {len(raw) - fh.tell()} bytes follow")
        fh.seek(0)
        return np.load(fh, allow_pickle=False)
    except (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError) as exc:
        raise PlacerError(f"{where}: not a readable .npy array ({_short(exc)}); re-export it") from None


def int_array(name: str, value: Any, what: str, ndim: int | None = None) -> np.ndarray:
    """``value`` (nested lists of ints) as an int64 array; ragged, non-integer, boolean or
    beyond-64-bit input is a PlacerError (whole floats such as ``3.0`` count as integers)."""
    try:
        arr = np.asarray(value)
    except (ValueError, OverflowError):
        raise PlacerError(f"{name}: {what} is ragged (rows of different lengths); every token needs the same number of experts") from None
    if arr.size and arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) \
            and np.all(np.abs(arr) < 2**53):
        arr = arr.astype(np.int64)
    if arr.size and (arr.dtype.kind not in "iu"):
        raise PlacerError(f"{name}: {what} must hold integer expert ids with rows of equal length; fix the file")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) >= 2**63:
        raise PlacerError(f"{name}: {what} holds expert id {int(arr.max())}, beyond 64 bits; fix the ids")
    arr = arr.astype(np.int64, copy=False)
    if ndim is not None and arr.ndim != ndim and arr.size:
        raise PlacerError(f"{name}: {what} has shape {list(arr.shape)}, expected {ndim} dimensions; fix the file")
    return arr


def native_kind(path: Path) -> str | None:
    """``"trace"`` / ``"profile"`` for moe-place's own files (by their metadata tag), else None."""
    try:
        with zipfile.ZipFile(path) as zf:
            if "metadata.npy" not in zf.namelist():
                return None
            with zf.open("metadata.npy") as fh:
                shape, _f, dtype = npy_header(fh)
                if shape != () or dtype.kind not in "US" or dtype.itemsize > 1 << 22:
                    return None
            with zf.open("metadata.npy") as fh:
                meta = parse_json(str(np.lib.format.read_array(fh, allow_pickle=False)[()]), str(path))
    except (OSError, ValueError, zipfile.BadZipFile, zlib.error, EOFError, PlacerError, SyntaxError, tokenize.TokenError):
        return None
    tag = meta.get("format") if isinstance(meta, dict) else None
    # any version of our own formats: the loader names the version it cannot read
    for fmt, kind in ((TRACE_FORMAT, "trace"), (PROFILE_FORMAT, "profile")):
        if isinstance(tag, str) and tag.split("@")[0] == fmt.split("@")[0]:
            return kind
    return None


def npz_names(path: Path) -> list[str]:
    """Array names of an ``.npz`` without reading data; corrupt files raise PlacerError."""
    try:
        with zipfile.ZipFile(path) as zf:
            return [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
    except FileNotFoundError:
        raise PlacerError(f"{path}: no such file; check the path") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise PlacerError(f"{path}: not a readable .npz file ({_short(exc)}); the file is truncated or corrupt, re-create it") from None


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:120]
