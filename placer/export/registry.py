"""The export formats: one :class:`Exporter` per format, holding its writer and its reader.

Shapes used by every format: ``L`` MoE layers of the placement, ``H`` decoder (hidden) layers of
the model, ``E`` logical experts, ``G`` GPUs (EP ranks), ``S`` slots per GPU, ``P = G * S = E + R``
physical slots per layer (``R`` redundant experts).

A format is one module under ``placer/export/`` that calls :func:`register` at import time.
:data:`EXPORTERS` imports the built-in modules on its first lookup; this module imports none of
them, so they can import it. ``moe-place export --format NAME`` writes through ``write``;
:func:`read_placement_any` (``moe-place import-placement``) finds a file's format with the
formats' ``sniff`` and reads it with their ``read``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.registry import Registry

# ``native`` first: our own JSON is the most specific sniff among the JSON formats.
BUILTIN_MODULES = ("placer.export.native", "placer.export.sglang", "placer.export.eplb",
                   "placer.export.vllm_ascend", "placer.export.csv")

HEAD_BYTES = 4096


@dataclass(frozen=True)
class WriteOptions:
    """What a writer may need besides the placement.

    ``moe_layers``: the decoder layer number of each of the ``L`` placement layers (default: the
    placement's recorded trace metadata, else ``0..L-1``); ``num_hidden_layers``: ``H``, dense
    layers included (default: recorded, else last MoE layer + 1); ``trace``: the trace or counts
    profile whose per-expert loads ``sglang-counts`` writes (default: the placement's report).
    """

    moe_layers: tuple[int, ...] | None = None
    num_hidden_layers: int | None = None
    trace: str | None = None


@dataclass(frozen=True)
class ReadOptions:
    """What a reader may need because the file does not record it.

    ``num_experts`` (E) and ``num_gpus`` (G): SGLang's map records neither, the ``eplb`` arrays
    not G; the formats that list ids default E to the largest id + 1. ``moe_layers``: which rows of
    an SGLang map are MoE layers (default: every row). ``gpus_per_node`` defaults to all G.
    """

    num_experts: int | None = None
    num_gpus: int | None = None
    moe_layers: tuple[int, ...] | None = None
    gpus_per_node: int | None = None


@dataclass(frozen=True)
class Written:
    """What a writer reports: ``fields`` for the ``--json`` summary, ``message`` for people."""

    fields: dict[str, Any]
    message: str


@dataclass(frozen=True)
class Exporter:
    """One file format of a placement (or of what an engine needs to place experts itself).

    ``suffixes``: the file name endings of the format, the usual one first; files with these
    endings are sniffed for it first. A writer that needs a particular name (SGLang) refuses
    others itself. ``write(placement, path, options)`` validates, then writes ``path``
    atomically (through :mod:`placer.fileio`). ``read(path, options)`` gives the placement back,
    or is None where the file holds no placement. ``sniff(path)`` is a cheap look (name, first
    bytes) that never raises: does ``path`` hold this format?
    """

    name: str
    summary: str
    suffixes: tuple[str, ...]
    write: Callable[[Placement, Path, WriteOptions], Written] | None = None
    read: Callable[[Path, ReadOptions], Placement] | None = None
    sniff: Callable[[Path], bool] | None = None


EXPORTERS: Registry[Exporter] = Registry("export format", BUILTIN_MODULES)


def register(exporter: Exporter) -> Exporter:
    """Add ``exporter`` under its name (sniffing tries formats in registration order)."""
    return EXPORTERS.add(exporter.name, exporter, (exporter.write or exporter.read).__module__)


def formats() -> list[Exporter]:
    """Every registered format: the built-in ones in :data:`BUILTIN_MODULES` order, then plug-ins
    (the registry orders by the registering module, whichever is imported first)."""
    return list(EXPORTERS.items().values())


def export_formats() -> tuple[str, ...]:
    """The names ``moe-place export --format`` accepts: the formats with a writer."""
    return tuple(e.name for e in formats() if e.write is not None)


# ------------------------------------------------------------------ helpers for the formats
def read_head(path: Path) -> str:
    """The first :data:`HEAD_BYTES` of ``path`` as text (undecodable bytes dropped); "" if unreadable."""
    try:
        with open(path, "rb") as fh:
            return fh.read(HEAD_BYTES).decode("utf-8", errors="ignore")
    except OSError:
        return ""


def json_head_has(path: Path, token: str) -> bool:
    """Does ``path`` start like a JSON object that mentions ``"token"`` in its first bytes?"""
    head = read_head(path)
    return head.lstrip().startswith("{") and f'"{token}"' in head


def read_text(path: Path) -> str:
    """The text of a placement file, its size checked against the memory budget first."""
    from placer.fileio import read_bytes
    from placer.limits import JSON_EXPANSION, check_budget

    raw = read_bytes(path, "placement")
    check_budget(len(raw) * JSON_EXPANSION, f"{path}: {len(raw):,} bytes of placement text",
                 "a placement is a few MB at most; check the file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlacerError(f"{path}: cannot read it as text ({exc.reason} at byte {exc.start}); give a JSON or CSV placement") from None


def read_json(path: Path) -> Any:
    """A placement file's JSON (depth and size bounded: :func:`placer.fileio.parse_json`)."""
    from placer.fileio import parse_json

    return parse_json(read_text(path), str(path), "the file is truncated or corrupt, export it again")


def import_report(source: str, fmt: str, moe_layers: Sequence[int] | None = None,
                  num_hidden_layers: int | None = None) -> dict[str, Any]:
    """The report of an imported placement: where it came from and, when known, its layer numbering
    (read back by :func:`placer.export.layers.resolve_layers` on re-export)."""
    report: dict[str, Any] = {"imported_from": source, "import_format": fmt}
    if moe_layers is not None:
        report["trace"] = {"moe_layers": [int(x) for x in moe_layers], "num_hidden_layers": num_hidden_layers}
    return report


# ------------------------------------------------------------------------------ reading
def _detect(path: Path, readable_only: bool) -> Exporter | None:
    """The first format whose sniff claims ``path``, trying those that own its suffix first."""
    candidates = [e for e in formats() if e.sniff is not None and (e.read is not None or not readable_only)]
    suffix = path.suffix.lower()
    owners = [e for e in candidates if suffix in e.suffixes]
    for exporter in owners + [e for e in candidates if e not in owners]:
        if exporter.sniff(path):
            return exporter
    return None


def looks_like_placement(path: str | Path) -> bool:
    """Is ``path`` a placement file a registered format can read, rather than a routing trace?

    ``moe-place import`` uses it to hand such files to :func:`read_placement_any`.
    """
    path = Path(path)
    return path.is_file() and _detect(path, readable_only=True) is not None


def read_placement_any(path: str | Path, options: ReadOptions = ReadOptions()) -> Placement:
    """Read a placement from any registered format (detected by content, then by suffix).

    A file no sniff claims is read by the one readable format that owns its suffix, so its
    reader names what is wrong (a CSV with a bad header, an ``.npz`` without ``phy2log``).
    """
    path = Path(path)
    if not path.is_file():
        raise PlacerError(f"{path}: no such file; check the placement path")
    exporter = _detect(path, readable_only=False)
    if exporter is None:
        readable = [e for e in formats() if e.read is not None]
        owners = [e for e in readable if path.suffix.lower() in e.suffixes]
        if len(owners) != 1:
            kinds = ", ".join(f"{e.name} {'/'.join(e.suffixes)}" for e in readable)
            raise PlacerError(f"{path}: not a placement file this tool knows ({kinds}); give a file in one of these formats")
        exporter = owners[0]
    if exporter.read is None:
        raise PlacerError(f"{path}: holds {exporter.summary}, not a placement; solve a placement from a trace instead")
    return exporter.read(path, options)
