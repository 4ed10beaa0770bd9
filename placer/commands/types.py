"""Click parameter types: each checks a value completely when it is parsed, before any work.

A bad value is a one-line usage error, exit 2: :data:`POSITIVE_INT`, :data:`SECONDS` (finite,
> 0), :data:`FRACTION` ([0, 1)), :data:`IMBALANCE` (>= 1), :class:`Replicas` (a count or ``Nx``,
N per GPU), :class:`IntList` (``4,8,16``), :class:`Size` (``80GiB``), :class:`Bandwidth`
(``intra=900GB/s,inter=50GB/s``), :class:`KeyValue` (``name=value`` for ``--param``),
:class:`Registered` (a name in a plug-in registry), :class:`OutputFile`, :class:`BandwidthFile`
and :class:`Backend`. The option groups that use them are in :mod:`placer.commands.options`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable

import click

from placer.errors import PlacerError
from placer.model.topology import NIC_BYTES_PER_S, NVLINK_BYTES_PER_S

_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
          "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}


class _Number(click.ParamType):
    """A finite float or int within ``[lo, hi)`` (``lo_open``: excluding ``lo``)."""

    def __init__(self, kind: type, lo: float | None, hi: float | None = None, lo_open: bool = False, what: str = ""):
        self.kind, self.lo, self.hi, self.lo_open = kind, lo, hi, lo_open
        self.name = what or kind.__name__
        self.what = what

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, self.kind) and not isinstance(value, bool):
            v = value
        else:
            try:
                v = self.kind(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not {'an integer' if self.kind is int else 'a number'}", param, ctx)
        if isinstance(v, float) and not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if (self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo))) or \
                (self.hi is not None and v >= self.hi):
            self.fail(f"{value!r} is not a {self.what}", param, ctx)
        return v


POSITIVE_INT = _Number(int, 1, what="integer >= 1")
NON_NEGATIVE_INT = _Number(int, 0, what="integer >= 0")
SECONDS = _Number(float, 0.0, lo_open=True, what="seconds > 0")
FRACTION = _Number(float, 0.0, 1.0, what="share between 0 and 1 (0 included, 1 not)")
IMBALANCE = _Number(float, 1.0, what="max/mean >= 1")
NON_NEGATIVE = _Number(float, 0.0, what="number >= 0")
POSITIVE_FLOAT = _Number(float, 0.0, lo_open=True, what="number > 0")


class Replicas(click.ParamType):
    """Redundant experts per layer: a count (``16``) or a multiple of the GPU count (``1x``, ``2x``),
    resolved per GPU count by :func:`placer.solvers.replicate.replicas_for`."""

    name = "replicas"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        s = str(value).strip().lower()
        try:
            ok = (0 <= float(s[:-1]) < math.inf) if s.endswith("x") else int(s) >= 0
        except ValueError:
            ok = False
        if not ok:
            self.fail(f"{value!r}: write a count (16) or a per-GPU multiple (1x)", param, ctx)
        return s


class ReplicasList(Replicas):
    """A comma list of :class:`Replicas` specs, e.g. ``0,8,1x``."""

    name = "list"

    def convert(self, value: Any, param: Any, ctx: Any) -> list[str]:
        if isinstance(value, list):
            return value
        out = [super(ReplicasList, self).convert(v, param, ctx) for v in str(value).split(",") if v.strip()]
        return out or ["0"]


class IntList(click.ParamType):
    """A comma list of positive integers, e.g. ``4,8,16``."""

    name = "list"

    def convert(self, value: Any, param: Any, ctx: Any) -> list[int]:
        if isinstance(value, list):
            return value
        try:
            out = [int(x) for x in str(value).split(",") if x.strip()]
        except ValueError:
            self.fail(f"{value!r} must be a comma list of integers, e.g. 4,8,16", param, ctx)
        if not out or min(out) < 1:
            self.fail(f"{value!r} must list positive integers, e.g. 4,8,16", param, ctx)
        return out


class Size(click.ParamType):
    """Bytes: ``80GiB``, ``900GB``, ``1.5e9`` (a ``/s`` suffix is allowed, for bandwidths)."""

    name = "size"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def parse_size(text: Any) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*(?:/s)?\s*", str(text).lower())
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"{text!r} is not a size; write e.g. 80GiB, 900GB/s or 1.5e9")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{text!r} must be a positive size")
    return value


class Bandwidth(click.ParamType):
    """``intra=900GB/s,inter=50GB/s`` -> ``(intra, inter)`` bytes/s; either may be left out."""

    name = "bandwidth"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[float, float]:
        if isinstance(value, tuple):
            return value
        out = {"intra": NVLINK_BYTES_PER_S, "inter": NIC_BYTES_PER_S}
        for part in str(value).split(","):
            if not part.strip():
                continue
            key, sep, v = part.partition("=")
            if not sep or key.strip() not in out:
                self.fail(f"{value!r}: write intra=900GB/s,inter=50GB/s", param, ctx)
            try:
                out[key.strip()] = parse_size(v)
            except ValueError as exc:
                self.fail(f"{key.strip()}: {exc}", param, ctx)
        return out["intra"], out["inter"]


class KeyValue(click.ParamType):
    """``name=value`` (``--param starts=16``); returns the pair."""

    name = "name=value"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, v = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"{value!r}: write name=value, e.g. starts=16", param, ctx)
        return key.strip(), v.strip()


class Registered(click.ParamType):
    """A name from a registry, checked when the option is parsed (so plug-ins registered after the
    command was imported count): ``names()`` lists the valid names, ``extra`` adds fixed ones."""

    def __init__(self, kind: str, names: Callable[[], Any], extra: tuple[str, ...] = ()):
        self.name, self.names, self.extra = kind, names, extra

    def choices(self) -> list[str]:
        return [*self.extra, *self.names()]

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        if value in self.choices():
            return value
        self.fail(f"unknown {self.name} {value!r}; choose one of: {', '.join(self.choices())}", param, ctx)

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return "[" + "|".join(self.choices()) + "]"


# =========================================================================== robustness (issue 15)
# Types that check a value completely when it is parsed, before any work: where outputs may be
# written (placer.fileio.check_output_file/_dir), the --topology file, the --backend name.
# placer.cli also refuses an output that is one of the command's inputs.
class OutputFile(click.ParamType):
    """A file to write (:func:`placer.fileio.check_output_file`); the command gets ``path_type``."""

    name = "file"

    def __init__(self, path_type: type = str, folder: bool = False):
        self.path_type, self.folder = path_type, folder
        self.name = "folder" if folder else "file"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from placer.fileio import check_output_dir, check_output_file
        try:
            return self.path_type((check_output_dir if self.folder else check_output_file)(value))
        except PlacerError as exc:
            self.fail(str(exc), param, ctx)


class BandwidthFile(click.ParamType):
    """``--topology FILE``: a readable ``[G, G]`` bandwidth matrix (bytes/s), checked when parsed."""

    name = "file"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from placer.model.topology import Topology, read_bandwidth_matrix
        try:
            Topology.from_bandwidth_matrix(read_bandwidth_matrix(value), name=str(value))
        except PlacerError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


class Backend(click.ParamType):
    """``--backend``: cpsat, highs, cbc (or an alias) or a PuLP solver name."""

    name = "backend"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from placer.solvers.exact.milp import backend_name
        if backend_name(str(value)) in ("cpsat", "highs", "cbc"):
            return value
        try:
            import pulp
            names = list(dict.fromkeys(pulp.listSolvers()))
        except ImportError:
            names = []
        if value in names:
            return value
        self.fail(f"unknown backend {value!r}; use cpsat, highs, cbc" + (f" or a PuLP solver: {', '.join(names)}" if names else ""),
                  param, ctx)


OUTPUT_FILE, OUTPUT_PATH, OUTPUT_DIR = OutputFile(), OutputFile(Path), OutputFile(folder=True)
BANDWIDTH_FILE, BACKEND = BandwidthFile(), Backend()
