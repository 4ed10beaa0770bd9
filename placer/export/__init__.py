"""Export placements for serving engines, and read engine placement files back.

Every format is one module here that registers an :class:`Exporter` holding its writer and its
reader (:mod:`placer.export.registry`): ``sglang`` (the ``--init-expert-location`` map and the
``sglang-counts`` loads), ``eplb`` (``.npz`` / ``.pt`` arrays), ``vllm_ascend``, ``csv``, and
``native`` (our own placement JSON, read only). :mod:`placer.export.layers` holds the decoder
layer numbering they share, :mod:`placer.export.migrate` the cost of moving between placements.
The format modules are imported on the first registry lookup, not by this package.
"""

from placer.export.layers import parse_layers, resolve_layers, trace_meta
from placer.export.migrate import migration_cost
from placer.export.registry import (EXPORTERS, Exporter, ReadOptions, WriteOptions, Written, export_formats,
                                    formats, looks_like_placement, read_placement_any, register)

__all__ = ["EXPORTERS", "Exporter", "ReadOptions", "WriteOptions", "Written", "export_formats", "formats",
           "looks_like_placement", "migration_cost", "parse_layers", "read_placement_any", "register",
           "resolve_layers", "trace_meta"]
