"""CSV: ``layer,gpu,slot,expert``, one row per physical slot.

``layer`` is the MoE layer index 0..L-1, ``slot`` the physical slot ``p`` (global, so
``gpu == p // S``). E is not recorded: reading back takes ``--num-experts`` or the largest id + 1.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from placer.errors import PlacerError
from placer.export.registry import (Exporter, ReadOptions, WriteOptions, Written, import_report, read_head,
                                    read_text, register)
from placer.fileio import atomic_path
from placer.model.placement import Placement

CSV_HEADER = ("layer", "gpu", "slot", "expert")


def to_csv(placement: Placement) -> str:
    """``layer,gpu,slot,expert`` rows, one per physical slot (``slot`` is global: gpu = slot // S)."""
    placement.validate()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    gpu = placement.slot_gpu
    for l in range(placement.num_layers):
        for p in range(placement.num_slots):
            w.writerow((l, int(gpu[p]), p, int(placement.phy2log[l, p])))
    return buf.getvalue()


def from_csv(text: str, num_experts: int | None = None, gpus_per_node: int | None = None,
             name: str = "csv file") -> Placement:
    """A Placement from ``layer,gpu,slot,expert`` rows (E defaults to the largest id + 1)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip().lower() for h in header) != CSV_HEADER:
        raise PlacerError(f"{name}: the first line must be the header {','.join(CSV_HEADER)}")
    try:
        rows = []
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 4:
                raise ValueError(f"line {n} has {len(row)} fields")
            rows.append([int(x) for x in row])
        data = np.array(rows, dtype=np.int64)
    except (ValueError, OverflowError) as exc:
        raise PlacerError(f"{name}: a row is not four integers ({' '.join(str(exc).split())[:80]}); fix the CSV") from None
    except csv.Error as exc:
        raise PlacerError(f"{name}: not a readable CSV ({exc}); fix the CSV") from None
    if data.ndim != 2 or data.shape[1] != 4 or len(data) == 0:
        raise PlacerError(f"{name}: expected rows of four integers layer,gpu,slot,expert")
    if data.min() < 0:
        raise PlacerError(f"{name}: negative numbers are not allowed")
    layer, gpu, slot, expert = data.T
    L, P, G = int(layer.max()) + 1, int(slot.max()) + 1, int(gpu.max()) + 1
    pairs, counts = np.unique(data[:, [0, 2]], axis=0, return_counts=True)
    if np.any(counts != 1):
        i = int(np.argmax(counts != 1))
        (l, p), n = pairs[i], counts[i]
        raise PlacerError(f"{name}: layer {l} slot {p} appears {n} times; every (layer, slot) needs exactly one row")
    if L * P != len(data):
        # with no pair twice, this count says whether every (layer, slot) has its row, before any [L, P] table
        raise PlacerError(f"{name}: {len(data)} rows cannot give each of {L} layers x {P} slots (the largest numbers "
                          f"in the file) exactly one row; fix the CSV")
    if P % G:
        raise PlacerError(f"{name}: {P} slots per layer cannot be split evenly over {G} GPUs")
    if np.any(gpu != slot // (P // G)):
        i = int(np.argmax(gpu != slot // (P // G)))
        raise PlacerError(f"{name}: slot {slot[i]} is on GPU {slot[i] // (P // G)} ({P // G} slots per GPU) but its row says GPU {gpu[i]}")
    phy = np.empty((L, P), dtype=np.int64)
    phy[layer, slot] = expert
    E = int(expert.max()) + 1 if num_experts is None else int(num_experts)
    return Placement(phy, E, G, gpus_per_node, import_report(name, "csv")).validate(name)


def _write(placement: Placement, path: Path, options: WriteOptions) -> Written:
    text = to_csv(placement)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Written({}, f"wrote {path}: {placement.num_layers * placement.num_slots} rows {','.join(CSV_HEADER)}")


def _read(path: Path, options: ReadOptions) -> Placement:
    return from_csv(read_text(path), options.num_experts, options.gpus_per_node, str(path))


def _sniff(path: Path) -> bool:
    first = read_head(path).lstrip().split("\n", 1)[0]
    return first.strip().lower().replace(" ", "") == ",".join(CSV_HEADER)


register(Exporter("csv", "layer,gpu,slot,expert rows, one per physical slot", (".csv",),
                  write=_write, read=_read, sniff=_sniff))
