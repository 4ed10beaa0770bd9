"""Helpers every importer shares: building a validated Trace, reading JSON and JSONL safely.

Importers keep expert ids signed (int64) until :func:`make_trace` has checked them, so a
negative id in the input is reported instead of wrapping around in an unsigned dtype.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from placer.errors import PlacerError
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
    if not np.issubdtype(ids.dtype, np.integer):
        raise PlacerError(f"{name}: expert ids must be integers, got {ids.dtype}; store expert ids as integers")
    lo = int(ids.min())
    if lo < 0:
        raise PlacerError(f"{name}: expert id {lo} is negative; expert ids must be 0 .. E-1, fix the ids")
    E = int(num_experts) if num_experts is not None else int(ids.max()) + 1
    if gate_weights is not None:
        gate_weights = np.asarray(gate_weights)
        if not np.issubdtype(gate_weights.dtype, np.floating):
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
    """Parse a whole JSON file; a truncated or corrupt file becomes a one-line PlacerError."""
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise PlacerError(f"{path}: no such file; check the path") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PlacerError(f"{path}: not valid JSON ({_short(exc)}); the file is truncated or corrupt, re-export it") from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for every non-blank line of a JSON Lines file."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise PlacerError(f"{path}: no such file; check the path") from None
    with fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise PlacerError(f"{path}: line {n} is not valid JSON ({_short(exc)}); the file is truncated or corrupt, re-export it") from None
            if not isinstance(obj, dict):
                raise PlacerError(f"{path}: line {n} is not a JSON object; each line must be one record {{...}}")
            yield n, obj


def first_jsonl_record(path: Path) -> dict[str, Any] | None:
    """The first non-blank line of ``path`` parsed as a JSON object, or None (for sniffing)."""
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                if raw.strip():
                    obj = json.loads(raw)
                    return obj if isinstance(obj, dict) else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return None


def int_array(name: str, value: Any, what: str, ndim: int | None = None) -> np.ndarray:
    """``value`` (nested lists) as an int64 array; ragged or non-integer input is a PlacerError."""
    try:
        arr = np.asarray(value)
    except ValueError:
        raise PlacerError(f"{name}: {what} is ragged (rows of different lengths); every token needs the same number of experts") from None
    if arr.dtype == object or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        if arr.dtype != object and np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise PlacerError(f"{name}: {what} must hold integer expert ids with rows of equal length; fix the file")
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
                meta = json.loads(str(np.lib.format.read_array(fh, allow_pickle=False)[()]))
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None
    tag = meta.get("format") if isinstance(meta, dict) else None
    return {TRACE_FORMAT: "trace", PROFILE_FORMAT: "profile"}.get(tag)


def npz_names(path: Path) -> list[str]:
    """Array names of an ``.npz`` without reading data; corrupt files raise PlacerError."""
    try:
        with zipfile.ZipFile(path) as zf:
            return [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
    except FileNotFoundError:
        raise PlacerError(f"{path}: no such file; check the path") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise PlacerError(f"{path}: not a readable .npz file ({_short(exc)}); the file is truncated or corrupt, re-create it") from None


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:120]
