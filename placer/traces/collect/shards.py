"""Recorded routing spilled to shard files, so a collection's memory is bounded by one shard.

Batches are buffered until ``shard_tokens`` tokens, then saved as ``.npy`` shards in scratch
files (:class:`placer.fileio.Scratch`: unnamed, gone however the process ends);
:meth:`ShardWriter.assemble` hands the shards to the native format's writer
(:func:`placer.model.trace_file.write_trace_from_shards`), which concatenates them into the
memory-mappable trace file without reading them into memory together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from placer.errors import PlacerError
from placer.fileio import Scratch
from placer.model.trace import id_dtype
from placer.model.trace_file import write_trace_from_shards

DEFAULT_SHARD_TOKENS = 65536


class ShardWriter:
    """Buffers per-batch routing and flushes it to ``.npy`` shards in ``scratch``."""

    def __init__(self, scratch: Scratch, num_experts: int, shard_tokens: int = DEFAULT_SHARD_TOKENS):
        self.scratch = scratch
        self.id_dtype = id_dtype(num_experts)
        self.shard_tokens = shard_tokens
        self.buffer: list[tuple] = []
        self.buffered = 0
        self.shards: list[dict[str, Path]] = []  # trace member name -> shard file
        self.seq_lens: list[int] = []

    def add(self, ids: np.ndarray, weights: np.ndarray | None, dropped: np.ndarray | None,
            seq_lens: list[int]) -> None:
        """Buffer one batch: ``ids [L, n, K]``, ``weights [L, n, K]`` float32 or None,
        ``dropped [L, n]`` bool or None (the same ones present in every batch), and the lengths
        of its sequences (summing to n)."""
        self.buffer.append((ids.astype(self.id_dtype), weights, dropped))
        self.buffered += ids.shape[1]
        self.seq_lens.extend(seq_lens)
        if self.buffered >= self.shard_tokens:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        k = len(self.shards)
        shard: dict[str, Path] = {}
        for name, parts in zip(("expert_ids", "gate_weights", "dropped"), zip(*self.buffer)):
            if parts[0] is not None:
                shard[name] = self.scratch.new(f"{k}.{name}.npy")
                with open(shard[name], "wb") as fh:
                    np.save(fh, np.concatenate(parts, axis=1))
        self.shards.append(shard)
        self.buffer, self.buffered = [], 0

    def assemble(self, dest: Path, metadata: dict[str, Any]) -> None:
        """Write the native trace to ``dest`` (atomically) from the shards and sequence lengths."""
        self.flush()
        if not self.shards:
            raise PlacerError("no tokens were collected (every prompt was empty); give a prompt file with text")
        offsets = np.concatenate([[0], np.cumsum(self.seq_lens)]).astype(np.int64)
        write_trace_from_shards(dest, self.shards, metadata, self.scratch, seq_offsets=offsets)
