"""Our own placement JSON (``"format": "moe-place/placement@1"``), readable like an engine file.

Only a reader: ``solve`` and ``import-placement`` write it (:meth:`Placement.save`), and
``moe-place export`` is for the engines' formats.
"""

from __future__ import annotations

from pathlib import Path

from placer.export.registry import Exporter, ReadOptions, json_head_has, read_json, register
from placer.model.placement import PLACEMENT_FORMAT, Placement


def _read(path: Path, options: ReadOptions) -> Placement:
    return Placement.from_json(read_json(path), str(path))


register(Exporter("moe-place", "moe-place placement JSON", (".json",), read=_read,
                  sniff=lambda path: json_head_has(path, PLACEMENT_FORMAT)))
