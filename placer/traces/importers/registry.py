"""The import formats by name, and which format a file is.

Every format is an :class:`Importer` that the module reading it registers at import time
(``register(Importer(...))``); ``moe-place import --format NAME`` picks one, :func:`detect`
guesses it from the file. The modules that ship with moe-place are listed in
:data:`BUILTIN_MODULES` and imported on the first lookup (:class:`placer.registry.Registry`), so
this module imports none of them and none of them imports a package that imports it back. A new
format is one new module plus its name in that tuple. Detection tries formats in registration
order, which is the order of the tuple (then of the registrations within a module).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from placer.errors import PlacerError
from placer.model.profile import Profile
from placer.model.trace import Trace
from placer.registry import Registry
from placer.traces.importers.common import ImportOptions

BUILTIN_MODULES = (
    "placer.traces.importers.arrays",      # .npz with expert_ids (native traces too), ExFlow .npy
    "placer.traces.importers.counts",      # aggregate counts: native, OLMoE, fiddler
    "placer.traces.importers.layer_json",  # per-layer JSON
    "placer.traces.importers.jsonl",       # per-record JSON Lines: tokens, Megatron, routed_experts
    "placer.traces.importers.sglang",      # SGLang expert-distribution .pt dumps (torch)
)


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


IMPORTERS: Registry[Importer] = Registry("format", BUILTIN_MODULES)


def register(importer: Importer) -> Importer:
    """Add ``importer`` under its name (detection tries formats in registration order)."""
    return IMPORTERS.add(importer.name, importer)


def formats() -> dict[str, Importer]:
    """Every registered format by name, in detection order."""
    return IMPORTERS.items()


def detect(path: Path) -> Importer:
    """The format of ``path``: formats claiming its extension first, then all; by content."""
    path = Path(path)
    if not path.exists():
        raise PlacerError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise PlacerError(f"{path}: is a directory; give the files in it (e.g. {path}/*.jsonl)")
    ext = path.suffix.lower()
    every = list(formats().values())
    claimed = [imp for imp in every if ext in imp.extensions]
    others = [imp for imp in every if ext not in imp.extensions]
    for imp in claimed + others:
        if imp.sniff(path):
            return imp
    raise PlacerError(f"{path}: unknown trace format (extension '{ext or 'none'}', content not recognised); "
                      f"pass --format, one of: {', '.join(IMPORTERS)}")
