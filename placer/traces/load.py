"""Reading routing inputs: what commands call to turn file names into a Trace or a Profile.

:func:`load_input` memory-maps a native trace, loads a saved profile as is and imports anything
else through the formats of :mod:`placer.traces.importers` (:func:`load_any`, several files
concatenated). :func:`profile_of` gives the Profile the solvers consume from either, and
:func:`load_trace` is for commands that need per-token data. Errors are one-line
:class:`PlacerError` naming the file and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.model.trace import DEFAULT_CHUNK_TOKENS, Trace
from placer.traces.importers.common import ImportOptions, native_kind
from placer.traces.importers.registry import IMPORTERS, detect

Paths = Sequence[str | Path] | str | Path


def load_input(paths: Paths, fmt: str | None = None, **options) -> Trace | Profile:
    """What commands call: a native trace is memory-mapped, a saved profile loaded as is,
    anything else imported with :func:`load_any` (``options``: its keyword arguments)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if fmt is None and len(paths) == 1 and not options.get("num_experts"):
        p = Path(paths[0])
        if p.suffix.lower() == ".npz" and p.is_file():
            kind = native_kind(p)
            if kind == "trace":
                return Trace.load(p, mmap=True)
            if kind == "profile":
                return Profile.load_file(p)
    return load_any(paths, fmt, **options)


def load_trace(path: Paths, needed_by: str = "this command", fmt: str | None = None, **options) -> Trace:
    """The per-token trace at ``path`` (:func:`load_input`); aggregate counts are refused with one
    line saying that ``needed_by`` (e.g. ``"the replay"``) needs per-token routing."""
    data = load_input(path, fmt, **options)
    if not isinstance(data, Trace):
        name = path if isinstance(path, (str, Path)) else ", ".join(map(str, path))
        raise PlacerError(f"{name}: holds aggregate counts only; {needed_by} needs per-token routing (a trace)")
    return data


# Expert pairs (transitions and co-activations) counted per second; a conservative figure (264-336
# M/s were measured on one core, docs/benchmarks.md). A constant, so that whether a profile is
# sampled depends only on the inputs and the time limit, never on the machine's load.
PROFILE_PAIRS_PER_S = 1.5e8


def profiling_seconds(trace: Trace, coact: bool = True, trans: bool = True) -> float:
    """Predicted seconds :func:`profile_of` takes on all of ``trace``."""
    K, L = trace.top_k, trace.num_layers
    pairs = trace.num_tokens * ((L - 1) * K * K * trans + L * K * (K - 1) // 2 * coact + L * K)
    return pairs / PROFILE_PAIRS_PER_S


def profile_of(data: Trace | Profile, chunk_tokens: int = DEFAULT_CHUNK_TOKENS, coact: bool = True,
               trans: bool = True, seconds: float | None = None) -> Profile:
    """The Profile of a Trace, counted chunk by chunk with a progress bar on a terminal
    (``coact``/``trans``: also count ``[L, E, E]`` co-activations / ``[L-1, E, E]`` transitions);
    a Profile passes through as it is. With ``seconds``, a trace too long to count in that time
    is counted on an even sample of its sequences (:meth:`Trace.sample`); the profile's
    ``num_tokens`` and ``extra["sampled_from"]`` say so."""
    from placer.progress import progress

    if isinstance(data, Profile):
        return data
    full = data
    if seconds is not None:
        need = profiling_seconds(data, coact, trans)
        if need > seconds:
            data = data.sample(max(seconds, 0.0) / need)
    with progress("profiling", total=data.num_tokens, unit="tokens") as advance:
        prof = Profile.from_trace(data, chunk_tokens=chunk_tokens, coact=coact, trans=trans, progress=advance)
    if data is not full:
        prof.extra["sampled_from"] = {"tokens": full.num_tokens, "sequences": full.num_sequences}
    return prof


# ----------------------------------------------------------------------- importing
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


def load_one(path: str | Path, fmt: str | None = None, options: ImportOptions | None = None) -> Trace | Profile:
    """Read one file in format ``fmt`` (auto-detected when None)."""
    path = Path(path)
    options = options or ImportOptions()
    if fmt is None:
        imp = detect(path)
    else:
        imp = IMPORTERS.get(fmt)
        if not path.exists():
            raise PlacerError(f"{path}: no such file; check the path")
    return imp.load(path, options)


def load_any(paths: Paths, fmt: str | None = None, num_experts: int | None = None, key: str | None = None,
             top_k: int | None = None, num_hidden_layers: int | None = None) -> Trace | Profile:
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
