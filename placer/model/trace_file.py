"""The native trace file, format v1 (``docs/formats.md``): an uncompressed, memory-mappable ``.npz``.

Members, in this order (shapes as in :mod:`placer.model.trace`):

- ``expert_ids.npy``   ``[L, T, K]``, the smallest unsigned dtype that holds ``num_experts - 1``;
- ``gate_weights.npy`` ``[L, T, K]`` float, optional;
- ``dropped.npy``      ``[L, T]`` bool, optional;
- ``seq_offsets.npy``  ``[S + 1]`` int64, optional;
- ``metadata.npy``     a 0-d unicode array holding the JSON object of :func:`trace_metadata`
  (keys sorted), tagged ``"format": "moe-place/trace@1"``.

Every member is stored, not deflated, so readers memory-map the arrays straight from the file
(:func:`read_npz_members`) and a trace larger than memory is read chunk by chunk. Members carry a
fixed date, so writing the same trace twice gives the same bytes. This module is the one writer
of the format: :func:`write_trace_file` takes in-memory arrays (``Trace.save``) or ``.npy``
files, and :func:`write_trace_from_shards` concatenates token shards on disk (the collector) with
memory bounded by one shard. Both write atomically (temp name + rename). Nothing is ever read
with pickle.
"""

from __future__ import annotations

import io
import json
import shutil
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from placer.errors import PlacerError
from placer.fileio import atomic_path

TRACE_FORMAT = "moe-place/trace@1"
# arrays with tokens along axis 1, then the sequence boundaries: the order of members in the file
TOKEN_MEMBERS = ("expert_ids", "gate_weights", "dropped")
MEMBERS = TOKEN_MEMBERS + ("seq_offsets",)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry


def trace_metadata(num_experts: int, moe_layers: Sequence[int], num_hidden_layers: int | None,
                   model: str | None, source: str | None, extra: dict[str, Any]) -> dict[str, Any]:
    """The ``metadata`` JSON object of a trace file (see :class:`placer.model.trace.Trace`)."""
    return {"format": TRACE_FORMAT, "num_experts": num_experts, "moe_layers": list(moe_layers),
            "num_hidden_layers": num_hidden_layers, "model": model, "source": source, "extra": extra}


def write_trace_file(dest: str | Path, members: Mapping[str, np.ndarray | Path], metadata: dict[str, Any]) -> None:
    """Write the native file at ``dest`` atomically.

    ``members`` maps names of :data:`MEMBERS` (``expert_ids`` required) to arrays, or to ``.npy``
    files that are copied as they are; arrays are streamed into the zip in 16 MiB pieces, so a
    memory-mapped array is never read into memory whole.
    """
    unknown = sorted(set(members) - set(MEMBERS))
    if unknown or "expert_ids" not in members:
        raise ValueError(f"trace file members must be among {MEMBERS} and include expert_ids, got {sorted(members)}")
    entries = [(name, members[name]) for name in MEMBERS if name in members]
    entries.append(("metadata", np.array(json.dumps(metadata, sort_keys=True))))
    with atomic_path(dest, suffix=".npz") as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            for name, src in entries:
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_STORED
                if isinstance(src, Path):
                    # the size decides whether the entry needs zip64 headers (over 2 GiB)
                    info.file_size = src.stat().st_size
                    with open(src, "rb") as fin, zf.open(info, "w") as fout:
                        shutil.copyfileobj(fin, fout, 1 << 20)
                    continue
                arr = np.asarray(src)
                if arr.dtype.hasobject:
                    raise TypeError(f"array {name!r} has dtype object; it would need pickle to load")
                info.file_size = len(_npy_header(arr)) + arr.nbytes
                with zf.open(info, "w") as fout:
                    np.lib.format.write_array(fout, arr, allow_pickle=False)


def write_trace_from_shards(dest: str | Path, shards: Sequence[Mapping[str, Path]], metadata: dict[str, Any],
                            scratch: Any, seq_offsets: np.ndarray | None = None) -> None:
    """Concatenate token shards on disk into the native file at ``dest`` (atomically).

    ``shards[k][name]`` is an ``.npy`` file with shard k's tokens of member ``name`` (one of
    :data:`TOKEN_MEMBERS`, tokens along axis 1: ``[L, n_k, K]`` or ``[L, n_k]``); every shard has
    the same members, and the first shard's dtypes are the file's. Each member is filled shard by
    shard through ``np.lib.format.open_memmap`` in a file of ``scratch`` (a :class:`placer.fileio.Scratch`), so memory is bounded by one shard
    whatever the trace's size; ``seq_offsets [S + 1]`` (int64) is written as given.
    """
    if not shards:
        raise ValueError("no shards to assemble")
    names = [n for n in TOKEN_MEMBERS if n in shards[0]]
    T = sum(np.load(s["expert_ids"], mmap_mode="r").shape[1] for s in shards)
    members: dict[str, np.ndarray | Path] = {}
    for name in names:
        first = np.load(shards[0][name], mmap_mode="r")
        out_path = scratch.new(f"{name}.npy")
        out = np.lib.format.open_memmap(out_path, mode="w+", dtype=first.dtype,
                                        shape=(first.shape[0], T, *first.shape[2:]))
        t0 = 0
        for shard in shards:
            part = np.load(shard[name], mmap_mode="r")
            out[:, t0:t0 + part.shape[1]] = part
            t0 += part.shape[1]
        out.flush()
        del out
        members[name] = out_path
    if seq_offsets is not None:
        members["seq_offsets"] = np.asarray(seq_offsets, dtype=np.int64)
    write_trace_file(dest, members, metadata)


def _npy_header(arr: np.ndarray) -> bytes:
    """The ``.npy`` header ``np.lib.format.write_array`` writes for ``arr`` (format 1.0, or 2.0
    when the header does not fit 1.0's 64 KiB)."""
    d = np.lib.format.header_data_from_array_1_0(arr)
    buf = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buf, d)
    except ValueError:
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, d)
    return buf.getvalue()


# --------------------------------------------------------------------------- reading
# dtype kinds an array may have: booleans, integers, floats; text for names and the metadata
READABLE_KINDS = "biufUS"


def read_npz_members(path: Path, mmap: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """Read every array of an ``.npz`` without pickle, memory-mapping stored (uncompressed) ones.

    Returns the arrays other than ``metadata`` and the parsed ``metadata`` JSON (or None when the
    file has none). Before any data is read, each member's header is checked: a dtype of
    :data:`READABLE_KINDS` (no objects, complex numbers, records or dates), and a declared size
    that the file holds (stored members) or the memory budget allows (compressed members, and
    any member read into memory). Any failure becomes a :class:`PlacerError` naming the file
    and the array. Profiles and foreign ``.npz`` files are read through it too.
    """
    if Path(path).is_dir():
        raise PlacerError(f"{path}: is a directory; give the .npz file itself")
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise PlacerError(f"{path}: no such file; check the path") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise PlacerError(f"{path}: not a readable .npz file ({_short(exc)}); the file is truncated or corrupt, re-create it") from None
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] | None = None
    with zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[:-4]
            try:
                arr = _read_member(path, zf, info, mmap, key)
            except PlacerError:
                raise
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, OverflowError,
                    SyntaxError, tokenize.TokenError, TypeError, MemoryError) as exc:
                raise PlacerError(f"{path}: array '{key}' cannot be read ({_short(exc)}); the file is truncated or corrupt, "
                                  f"re-create it") from None
            if key == "metadata":
                meta = _metadata(path, arr)
            else:
                arrays[key] = arr
    return arrays, meta


def _metadata(path: Path, arr: np.ndarray) -> dict[str, Any]:
    from placer.fileio import parse_json

    if arr.ndim != 0 or arr.dtype.kind not in "US":
        raise PlacerError(f"{path}: the metadata entry is not one JSON string ({arr.dtype} {list(arr.shape)}); "
                          f"re-create the file with moe-place")
    text = arr[()]
    meta = parse_json(text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text), f"{path}: metadata",
                      "re-create the file with moe-place")
    if not isinstance(meta, dict):
        raise PlacerError(f"{path}: the metadata entry is not a JSON object; re-create the file with moe-place")
    return meta


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:120] or type(exc).__name__


def _read_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, mmap: bool, key: str) -> np.ndarray:
    """Read one ``.npy`` member; memory-map it when stored uncompressed and ``mmap`` is set."""
    from placer.limits import check_budget, npy_header

    with zf.open(info) as fh:
        shape, fortran, dtype = npy_header(fh)
        header_len = fh.tell() if hasattr(fh, "tell") else None
    if dtype.hasobject:
        raise PlacerError(f"{path}: array '{key}' holds Python objects (pickle), which moe-place never loads; "
                          f"store plain numeric arrays")
    if dtype.kind not in READABLE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        from placer.model.fields import KIND_NAMES
        raise PlacerError(f"{path}: array '{key}' holds {KIND_NAMES.get(dtype.kind, str(dtype))} ({dtype}); store "
                          f"booleans, integers or floats")
    count = 1
    for n in shape:
        count *= int(n)
    nbytes = count * dtype.itemsize
    stored = info.compress_type == zipfile.ZIP_STORED
    if stored and header_len is not None and header_len + nbytes > info.file_size:
        raise ValueError(f"its header declares {list(shape)} {dtype} ({nbytes:,} bytes) but the file holds "
                         f"{max(info.file_size - header_len, 0):,}")
    if mmap and stored and header_len is not None and count > 0:
        with open(path, "rb") as raw:
            raw.seek(info.header_offset)
            local = raw.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError("bad local zip header")
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
        data_start = info.header_offset + 30 + name_len + extra_len + header_len
        if data_start + nbytes > path.stat().st_size:
            raise ValueError("array data runs past the end of the file")
        return np.memmap(path, dtype=dtype, mode="r", offset=data_start, shape=shape,
                         order="F" if fortran else "C")
    check_budget(nbytes, f"{path}: array '{key}' of shape {list(shape)} {dtype}",
                 "the header declares more than the data can be; re-create the file")
    with zf.open(info) as fh:
        arr = np.lib.format.read_array(fh, allow_pickle=False)
    return arr
