"""Importers: turn routing dumps of other tools into a :class:`Trace` (or a :class:`Profile`).

Every format is an :class:`Importer` registered under a name (``moe-place import --format
NAME``). :func:`detect` picks the format from the file extension and a look at the content;
:func:`load_any` reads one or more files and concatenates them. Formats that carry only
aggregate counts (per-layer loads, layer-pair matrices) give a Profile, not a Trace.

The exact layouts are in ``docs/formats.md``. Modules, one per format family:
``layer_json`` (per-layer JSON), ``arrays`` (``.npz`` with ``expert_ids``, ExFlow ``.npy``),
``jsonl`` (per-(token, layer) records, Megatron router traces, SGLang/vLLM ``routed_experts``),
``sglang`` (SGLang expert-distribution recorder ``.pt`` dumps; needs torch) and ``counts``
(native counts, OLMoE and fiddler count files).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.traces.importers.common import ImportOptions
from placer.model.trace import Trace


@dataclass(frozen=True)
class Importer:
    """One input format.

    ``sniff(path)`` answers whether the file looks like this format (cheap: names, first line);
    ``load(path, options)`` reads it. ``aggregate`` formats return a Profile.
    """

    name: str
    extensions: tuple[str, ...]
    sniff: Callable[[Path], bool]
    load: Callable[[Path, ImportOptions], "Trace | Profile"]
    summary: str
    aggregate: bool = False


_REGISTRY: dict[str, Importer] = {}


def register(importer: Importer) -> Importer:
    """Add ``importer`` to the registry (detection tries formats in registration order)."""
    _REGISTRY[importer.name] = importer
    return importer


def formats() -> dict[str, Importer]:
    """Every registered format by name."""
    return dict(_REGISTRY)


def detect(path: Path) -> Importer:
    """The format of ``path``: formats claiming its extension first, then all; by content."""
    path = Path(path)
    if not path.exists():
        raise PlacerError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise PlacerError(f"{path}: is a directory; give the files in it (e.g. {path}/*.jsonl)")
    ext = path.suffix.lower()
    claimed = [imp for imp in _REGISTRY.values() if ext in imp.extensions]
    others = [imp for imp in _REGISTRY.values() if ext not in imp.extensions]
    for imp in claimed + others:
        if imp.sniff(path):
            return imp
    names = ", ".join(_REGISTRY)
    raise PlacerError(f"{path}: unknown trace format (extension '{ext or 'none'}', content not recognised); "
                      f"pass --format, one of: {names}")


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Paths as given; a directory of Megatron ``router_trace_rank{r}.jsonl`` files becomes its
    rank files in rank order (merging ranks)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            ranks = sorted(p.glob("router_trace_rank*.jsonl"),
                           key=lambda f: int(re.sub(r"\D", "", f.stem) or 0))
            if not ranks:
                raise PlacerError(f"{p}: is a directory without router_trace_rank*.jsonl files; give the trace files themselves")
            out.extend(ranks)
        else:
            out.append(p)
    return out


def load_one(path: str | Path, fmt: str | None = None, options: ImportOptions | None = None) -> "Trace | Profile":
    """Read one file in format ``fmt`` (auto-detected when None)."""
    path = Path(path)
    options = options or ImportOptions()
    if fmt is None:
        imp = detect(path)
    else:
        if fmt not in _REGISTRY:
            raise PlacerError(f"unknown format '{fmt}'; use one of: {', '.join(_REGISTRY)}")
        imp = _REGISTRY[fmt]
        if not path.exists():
            raise PlacerError(f"{path}: no such file; check the path")
    return imp.load(path, options)


def load_any(paths: Sequence[str | Path] | str | Path, fmt: str | None = None,
             num_experts: int | None = None, key: str | None = None, top_k: int | None = None,
             num_hidden_layers: int | None = None) -> "Trace | Profile":
    """Read and concatenate any importable inputs.

    Per-token inputs give one Trace (sources concatenated along tokens, their sequences kept
    apart); aggregate-only inputs give one Profile (counts of several files added). Mixing the
    two is an error. ``num_experts`` overrides E (default: the largest id seen plus one).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = expand_paths(paths)
    if not files:
        raise PlacerError("no input files given; name at least one trace file")
    options = ImportOptions(num_experts=num_experts, key=key, top_k=top_k, num_hidden_layers=num_hidden_layers)
    items = [load_one(p, fmt, options) for p in files]
    traces = [x for x in items if isinstance(x, Trace)]
    profiles = [x for x in items if isinstance(x, Profile)]
    if traces and profiles:
        raise PlacerError("cannot combine per-token traces with aggregate counts; import them separately")
    if profiles:
        return _sum_profiles(profiles, [str(p) for p in files])
    trace = traces[0] if len(traces) == 1 else Trace.concat(traces)
    if num_experts is not None and trace.num_experts != num_experts:
        trace.num_experts = int(num_experts)
    if num_experts is not None or len(traces) > 1:
        trace.validate(", ".join(map(str, files)))
    return trace


def _sum_profiles(profiles: list[Profile], names: list[str]) -> Profile:
    if len(profiles) == 1:
        return profiles[0]
    first = profiles[0]
    for p, name in zip(profiles[1:], names[1:]):
        if p.load.shape != first.load.shape or p.top_k != first.top_k or p.moe_layers != first.moe_layers:
            raise PlacerError(f"{name}: its counts have shape {list(p.load.shape)} (top-{p.top_k}) but {names[0]} has "
                              f"{list(first.load.shape)} (top-{first.top_k}); import them separately")

    def add(key: str) -> np.ndarray | None:
        arrs = [getattr(p, key) for p in profiles]
        return None if any(a is None for a in arrs) else np.sum(arrs, axis=0)

    return Profile(load=add("load"), num_tokens=sum(p.num_tokens for p in profiles), top_k=first.top_k,
                   trans=add("trans"), trans_top1=add("trans_top1"), coact=add("coact"),
                   moe_layers=list(first.moe_layers), num_hidden_layers=first.num_hidden_layers,
                   model=first.model, source=", ".join(sorted({p.source for p in profiles if p.source})) or None)


def load_input(paths: Sequence[str | Path] | str | Path, fmt: str | None = None, **kw) -> "Trace | Profile":
    """What commands call: a native trace is memory-mapped, a saved profile loaded as is,
    anything else imported with :func:`load_any`."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if fmt is None and len(paths) == 1 and not kw.get("num_experts"):
        p = Path(paths[0])
        if p.suffix.lower() == ".npz" and p.is_file():
            from placer.traces.importers.arrays import native_kind
            kind = native_kind(p)
            if kind == "trace":
                return Trace.load(p, mmap=True)
            if kind == "profile":
                return Profile.load_file(p)
    return load_any(paths, fmt, **kw)


# Registration order is the detection order among formats claiming one extension.
from placer.traces.importers import counts as _counts  # noqa: E402,F401  (native counts before npz traces)
from placer.traces.importers import arrays as _arrays  # noqa: E402,F401
from placer.traces.importers import layer_json as _layer_json  # noqa: E402,F401
from placer.traces.importers import jsonl as _jsonl  # noqa: E402,F401
from placer.traces.importers import sglang as _sglang  # noqa: E402,F401

__all__ = ["Importer", "ImportOptions", "detect", "expand_paths", "formats", "load_any", "load_input",
           "load_one", "register"]
