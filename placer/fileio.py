"""Atomic file writing: a reader never sees a half-written output file.

Every writer goes through :func:`atomic_path`: it yields a temporary path in the destination's
directory and renames it over the destination only when the block finishes without an
exception; otherwise the temporary file is removed and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from placer.errors import PlacerError, missing_package


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; rename it to ``dest`` on success.

    ``suffix`` defaults to the destination's suffix, which matters for writers such as
    ``np.savez`` that append ``.npz`` to names lacking it.
    """
    dest = Path(dest)
    directory = dest.parent if str(dest.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    suffix = dest.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}", dir=directory)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file private (0600); an output file gets the usual umask-based mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(dest: str | os.PathLike, obj: Any, indent: int | None = 1) -> None:
    """Write ``obj`` as JSON atomically, keys in insertion order, newline at the end."""
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n"
    with atomic_path(dest) as tmp:
        tmp.write_text(text)


def write_npz(dest: str | os.PathLike, arrays: dict[str, np.ndarray], compress: bool = False) -> None:
    """Write arrays to an ``.npz`` atomically (no object arrays: readers use allow_pickle=False)."""
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; it would need pickle to load")
    with atomic_path(dest, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            (np.savez_compressed if compress else np.savez)(fh, **arrays)


def to_jsonable(obj: Any) -> Any:
    """Plain-Python copy of ``obj``: numpy scalars and arrays converted, NaN and inf as None.

    Reports are built from numpy results; JSON has no NaN, and a report must never fail to save.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def import_torch(feature: str) -> Any:
    """torch, or the one-line error saying that ``feature`` needs it (``[torch]`` extra)."""
    try:
        import torch
    except ImportError:
        raise missing_package("torch", feature, "torch==2.13.0") from None
    return torch


def torch_load(path: Path, again: str) -> Any:
    """What a ``torch.save`` file holds, loaded with ``weights_only=True`` (tensors, lists, dicts:
    never an arbitrary pickled object). ``again`` is the fix for a bad file ("export it again")."""
    import pickle
    import zipfile

    torch = import_torch(f"reading {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise PlacerError(f"{path}: holds objects that are not plain tensors, lists and dicts "
                          f"({str(exc).splitlines()[0][:100]}); moe-place never unpickles arbitrary objects, "
                          f"{again}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise PlacerError(f"{path}: not a readable torch.save file ({str(exc).splitlines()[0][:100]}); "
                          f"the file is truncated or corrupt, {again}") from None
