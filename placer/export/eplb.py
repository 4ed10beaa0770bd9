"""DeepSeek-EPLB arrays: ``phy2log [L, P]``, ``log2phy [L, E, maxcnt]`` (-1 padded), ``logcnt [L, E]``.

All int64, as an ``.npz`` or (when the name ends in ``.pt``) a ``torch.save`` dict of tensors,
the shape DeepSeek's EPLB and vLLM's EPLB state use. Neither records the GPU count, so reading
back needs it. A ``.pt`` is read with ``torch.load(weights_only=True)`` (never unpickled) and
torch is imported only for ``.pt`` files.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from placer.errors import PlacerError
from placer.export.registry import Exporter, ReadOptions, WriteOptions, Written, import_report, register
from placer.fileio import atomic_path, import_torch, torch_load, write_npz
from placer.model.fields import check_kind
from placer.model.placement import Placement, phy2log_table
from placer.model.trace import read_npz_members

KEYS = ("phy2log", "log2phy", "logcnt")


def to_eplb(placement: Placement) -> dict[str, np.ndarray]:
    """DeepSeek-EPLB arrays: ``phy2log [L, P]``, ``log2phy [L, E, maxcnt]`` (-1 pad), ``logcnt [L, E]``."""
    placement.validate()
    return {"phy2log": placement.phy2log.astype(np.int64), "log2phy": placement.log2phy.astype(np.int64),
            "logcnt": placement.logcnt.astype(np.int64)}


def from_eplb(arrays: dict[str, Any], num_gpus: int | None, gpus_per_node: int | None = None,
              name: str = "eplb file", kind: str = ".npz") -> Placement:
    """A Placement from the arrays (only ``phy2log`` is needed; E from ``logcnt``'s width, else the
    largest id + 1; a ``logcnt`` present must match ``phy2log``)."""
    if "phy2log" not in arrays:
        raise PlacerError(f"{name}: no phy2log array; not an eplb export")
    if num_gpus is None:
        raise PlacerError(f"{name}: an eplb {kind} does not record the GPU count; pass --gpus")
    phy2log = phy2log_table(check_kind(np.asarray(arrays["phy2log"]), f"{name}: phy2log", "iu", "integer expert ids",
                                       "export the placement again"), f"{name}: phy2log")
    logcnt = None
    if "logcnt" in arrays:
        logcnt = check_kind(np.asarray(arrays["logcnt"]), f"{name}: logcnt", "iu", "integer counts", "export it again")
        if logcnt.ndim != 2 or logcnt.shape[0] != phy2log.shape[0] or logcnt.shape[1] > phy2log.shape[1]:
            raise PlacerError(f"{name}: logcnt has shape {list(logcnt.shape)}, which does not fit phy2log "
                              f"{list(phy2log.shape)}; export the placement again")
    E = int(logcnt.shape[1]) if logcnt is not None else int(phy2log.max()) + 1
    pl = Placement(phy2log, E, num_gpus, gpus_per_node, import_report(name, "eplb")).validate(name)
    if logcnt is not None and not np.array_equal(logcnt, pl.logcnt):
        raise PlacerError(f"{name}: logcnt does not count the replicas in phy2log; export the placement again")
    return pl


def _is_pt(path: Path) -> bool:
    # the writer's rule, so the reader opens what the writer wrote (any other name gets an .npz)
    return path.suffix == ".pt"


# ------------------------------------------------------------------------------ .pt files
def _write_pt(path: Path, arrays: dict[str, np.ndarray]) -> None:
    torch = import_torch("writing .pt files")
    with atomic_path(path) as tmp:
        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, tmp)


def _load_pt(path: Path) -> dict[str, np.ndarray]:
    obj = torch_load(path, "export the placement again")
    if not isinstance(obj, dict):
        raise PlacerError(f"{path}: holds a {type(obj).__name__}, not a dict of {'/'.join(KEYS)} tensors; not an eplb export")
    try:
        return {str(k): v.numpy() if hasattr(v, "numpy") else np.asarray(v) for k, v in obj.items()}
    except (ValueError, TypeError, RuntimeError):
        raise PlacerError(f"{path}: holds values that are not rectangular arrays; not an eplb export") from None


# ------------------------------------------------------------------------- file side
def _write(placement: Placement, path: Path, options: WriteOptions) -> Written:
    arrays = to_eplb(placement)
    if _is_pt(path):
        _write_pt(path, arrays)
    else:
        write_npz(path, arrays)
    return Written({}, f"wrote {path}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items()))


def _read(path: Path, options: ReadOptions) -> Placement:
    if _is_pt(path):
        arrays, kind = _load_pt(path), ".pt"
    else:
        arrays, kind = read_npz_members(path, mmap=False)[0], ".npz"
    return from_eplb(arrays, options.num_gpus, options.gpus_per_node, str(path), kind)


def _sniff(path: Path) -> bool:
    # Both are zip archives: np.savez stores phy2log.npy, torch.save a data.pkl whose first bytes
    # name the dict's keys (a look that needs no torch and unpickles nothing).
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if "phy2log.npy" in names:
                return True
            pickles = [n for n in names if n.endswith("data.pkl")]
            if not pickles:
                return False
            with zf.open(pickles[0]) as fh:
                return b"phy2log" in fh.read(4096)
    except Exception:  # a sniff only says whether to try; the reader reports what is wrong
        return False


register(Exporter("eplb", "DeepSeek-EPLB phy2log/log2phy/logcnt arrays (.npz, or .pt with torch)", (".npz", ".pt"),
                  write=_write, read=_read, sniff=_sniff))
