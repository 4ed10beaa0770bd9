"""Files in and out: atomic writes that never replace a non-regular file, scratch files that no
kill leaves behind, and JSON parsing bounded in depth and size.

Writing (:func:`atomic_path`): the new content goes to an unnamed file in the destination's
folder (Linux ``O_TMPFILE``), which is linked into place only when the block finishes without
an exception; a process killed at any moment, SIGKILL included, leaves either the old file or
the new one and no temporary file. Where ``O_TMPFILE`` does not work (other systems, some
network file systems) a hidden named temporary file is used instead, removed on any exception
and by the SIGTERM handler of :mod:`placer.interrupt`. Either way the destination is replaced
only if it is absent or a regular file (a symlink to a regular file: its target is replaced);
a directory, device, FIFO or socket is refused.

Reading JSON (:func:`parse_json`, :func:`read_json`): nesting deeper than
:data:`placer.limits.MAX_JSON_DEPTH` is refused before the (recursive) parser sees it, and a
document whose parsed objects would exceed the memory budget is refused by its size.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import re
import secrets
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from placer.errors import PlacerError, missing_package
from placer.limits import JSON_EXPANSION, MAX_JSON_DEPTH, check_budget

_TEMPS: set[str] = set()      # named temporary files and folders of the fallback, for the SIGTERM handler


# ------------------------------------------------------------------------------ writing
def check_replaceable(dest: Path) -> Path:
    """The regular file that writing ``dest`` replaces (``dest`` itself, or a symlink's target),
    or a :class:`PlacerError` when ``dest`` is a directory, device, FIFO or socket."""
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        return Path(os.path.realpath(dest)) if os.path.islink(dest) else dest
    except OSError as exc:
        raise PlacerError(f"{dest}: cannot write here ({exc.strerror}); choose another output path") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket"
                if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise PlacerError(f"{dest}: is {kind}, which moe-place never replaces; name a regular file as the output")
    return Path(os.path.realpath(dest))


def _probe_writable(folder: Path, shown: str) -> None:
    """Create (and at once drop) a file in ``folder``, the only reliable test (root, read-only
    mounts, /proc); an unnamed file leaves nothing even if the process is killed right here."""
    try:
        fd = _anonymous(folder)
        if fd is None:
            fd, tmp = tempfile.mkstemp(prefix=".moe-place-probe-", dir=folder)
            os.unlink(tmp)
        os.close(fd)
    except OSError as exc:
        raise PlacerError(f"{shown}: cannot create files in {folder} ({exc.strerror}); choose a writable folder") from None


def _existing_parent(path: Path, shown: str) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise PlacerError(f"{shown}: {parent} is not a folder; choose an output path in a folder")
            return parent
    return Path(".")


def _check_name(folder: Path, names: tuple[str, ...], shown: str) -> None:
    limit = os.pathconf(folder, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    if any(len(os.fsencode(n)) > limit for n in names):
        raise PlacerError(f"{shown}: a name in the path is longer than the {limit} bytes the file system allows; "
                          f"use a shorter name")


def check_output_file(value: Any) -> Path:
    """``value`` as a file this process may write: not empty, not an existing directory, device,
    FIFO or socket (a symlink counts as its target), in an existing folder it can create files in,
    with names the file system accepts; else a PlacerError saying which and what to do."""
    text = os.fspath(value) if value is not None else ""
    if not str(text).strip():
        raise PlacerError("an empty path; name the file to write")
    path = Path(text)
    try:
        os.stat(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise PlacerError(f"{text}: {exc.strerror}; choose another output path") from None
    target = check_replaceable(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        parent = _existing_parent(folder, text)
        raise PlacerError(f"{text}: the folder {folder} does not exist (nearest: {parent}); create it first")
    _check_name(folder, (target.name,), text)
    _probe_writable(folder, text)
    return path


def check_output_dir(value: Any) -> Path:
    """``value`` as a folder to write files into (``--plots``): an existing writable folder, or a
    new one whose nearest existing parent is a writable folder."""
    text = os.fspath(value) if value is not None else ""
    if not str(text).strip():
        raise PlacerError("an empty path; name the folder to write into")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise PlacerError(f"{text}: exists and is not a folder; name a folder to write the files into")
    folder = _existing_parent(path, text)
    _check_name(folder, path.parts, text)
    _probe_writable(folder, text)
    return path


def _anonymous(directory: Path) -> int | None:
    """An fd of an unnamed file in ``directory`` (``O_TMPFILE``), or None where that is unsupported."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None:
        return None
    try:
        return os.open(directory, flag | os.O_RDWR, 0o666)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None
        raise


_AT_FDCWD, _AT_SYMLINK_FOLLOW = -100, 0x400


def _link(fd: int, dest: Path) -> None:
    """Give the unnamed file ``fd`` the name ``dest`` (``linkat`` through ``/proc/self/fd``;
    fails with FileExistsError when ``dest`` exists)."""
    libc = ctypes.CDLL(None, use_errno=True)
    src = f"/proc/self/fd/{fd}".encode()
    if libc.linkat(_AT_FDCWD, src, _AT_FDCWD, os.fsencode(dest), _AT_SYMLINK_FOLLOW) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(dest))


def _publish(fd: int, dest: Path) -> None:
    """Put the content of ``fd`` at ``dest``: a link when ``dest`` is absent, else a link to a
    hidden name renamed over ``dest`` (an atomic replace either way)."""
    dest = check_replaceable(dest)
    try:
        _link(fd, dest)
        return
    except FileExistsError:
        pass
    except OSError:   # no /proc, or a file system without linkat: copy through a named temp
        with _named_temp(dest) as tmp:
            with open(tmp, "wb") as out:
                os.lseek(fd, 0, os.SEEK_SET)
                with os.fdopen(os.dup(fd), "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            check_replaceable(dest)
            os.replace(tmp, dest)
        return
    hidden = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    _link(fd, hidden)
    try:
        check_replaceable(dest)
        os.replace(hidden, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(hidden)
        raise


@contextlib.contextmanager
def _named_temp(dest: Path, suffix: str = "") -> Iterator[Path]:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}", dir=dest.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes the file private; an output gets the usual mode
    _TEMPS.add(tmp)
    try:
        yield Path(tmp)
    finally:
        _TEMPS.discard(tmp)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a path to write the whole new content of ``dest`` to; it becomes ``dest`` only if the
    block finishes without an exception (see the module docstring).

    The yielded path may have no suffix (``/proc/self/fd/N``): writers that infer a format from
    the name must be told it. ``suffix`` names the fallback temporary file (``np.savez`` given a
    name appends ``.npz`` to names lacking it).
    """
    dest = check_replaceable(Path(dest))
    directory = dest.parent if str(dest.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd = _anonymous(directory)
    if fd is None:
        with _named_temp(dest, dest.suffix if suffix is None else suffix) as tmp:
            yield tmp
            check_replaceable(dest)
            os.replace(tmp, dest)
        return
    try:
        yield Path(f"/proc/self/fd/{fd}")
        _publish(fd, dest)
    finally:
        os.close(fd)


class Scratch:
    """Scratch files next to an output, gone however the process ends.

    :meth:`new` returns a path to write and read back: an unnamed ``O_TMPFILE`` file (kept open
    here, reached as ``/proc/self/fd/N``), or a named file in a hidden folder created in
    ``directory`` where that is unsupported (removed by :meth:`close` and the SIGTERM handler).
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.fds: list[int] = []
        self.folder: Path | None = None

    def new(self, name: str) -> Path:
        fd = _anonymous(self.directory)
        if fd is not None:
            self.fds.append(fd)
            return Path(f"/proc/self/fd/{fd}")
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix=".moe-place-scratch-", dir=self.directory))
            _TEMPS.add(str(self.folder))
        return self.folder / name

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            _TEMPS.discard(str(self.folder))
            self.folder = None

    def __enter__(self) -> "Scratch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def remove_temps() -> None:
    """Remove the fallback's named temporary files and folders (the SIGTERM handler calls it)."""
    for path in list(_TEMPS):
        with contextlib.suppress(OSError):
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)


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


# ------------------------------------------------------------------------------ reading
def read_bytes(path: str | os.PathLike, what: str = "file") -> bytes:
    """The bytes of ``path``; a missing, unreadable or non-regular path is a PlacerError."""
    path = Path(path)
    try:
        if path.is_dir():
            raise PlacerError(f"{path}: is a directory; give the {what} itself")
        return path.read_bytes()
    except FileNotFoundError:
        raise PlacerError(f"{path}: no such file; check the {what} path") from None
    except OSError as exc:
        raise PlacerError(f"{path}: cannot read the {what} ({exc.strerror}); check the path and its permissions") from None


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_DEPTH_CHUNK = 1 << 24


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text (strings skipped), counted without
    recursion in 16 MiB pieces; stops early once past :data:`MAX_JSON_DEPTH`."""
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return 0
    text = _STRING.sub(b'""', data) if b'"' in data else data
    a = np.frombuffer(text, np.uint8)
    depth = worst = 0
    for s in range(0, len(a), _DEPTH_CHUNK):
        c = a[s:s + _DEPTH_CHUNK]
        step = (c == 91).astype(np.int32) + (c == 123) - (c == 93) - (c == 125)
        run = np.cumsum(step, dtype=np.int64) + depth
        worst = max(worst, int(run.max()))
        depth = int(run[-1])
        if worst > MAX_JSON_DEPTH:
            break
    return worst


def parse_json(data: bytes | str, where: str, fix: str = "the file is truncated or corrupt, re-export it") -> Any:
    """``json.loads(data)`` after the depth and size checks; any failure is one PlacerError line."""
    raw = data.encode() if isinstance(data, str) else data
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise PlacerError(f"{where}: JSON nested more than {MAX_JSON_DEPTH} levels deep; no moe-place format nests "
                          f"so deep, {fix}")
    check_budget(len(raw) * JSON_EXPANSION, f"{where}: {len(raw):,} bytes of JSON", "split the input or convert it to .npz")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise PlacerError(f"{where}: not valid JSON ({' '.join(str(exc).split())[:120]}); {fix}") from None


def read_json(path: str | os.PathLike, what: str = "file", fix: str = "the file is truncated or corrupt, re-export it") -> Any:
    """Parse the JSON file ``path`` (:func:`parse_json`)."""
    return parse_json(read_bytes(path, what), str(path), fix)


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
                          f"({_first_line(exc)}); moe-place never unpickles arbitrary objects, "
                          f"{again}") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001  (a cut or altered pickle fails in torch.load in any of a dozen ways)
        raise PlacerError(f"{path}: not a readable torch.save file ({_first_line(exc)}); "
                          f"the file is truncated or corrupt, {again}") from None


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type where it has none), at most 100 characters."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:100]
