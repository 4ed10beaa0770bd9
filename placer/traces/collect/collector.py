"""Collect a routing trace from a Hugging Face transformers MoE model by hooking its routers.

:func:`collect` runs the prompts through the model in batches with every router hooked
(:mod:`placer.traces.collect.hooks`), spills the routing of real tokens to shards
(:mod:`placer.traces.collect.shards`) and assembles the native trace; the output appears under
its final name only when complete, and the shards are unnamed scratch files
(:class:`placer.fileio.Scratch`), so a failed or interrupted collection, SIGKILL included,
leaves nothing behind.

Sequences are right-padded (real tokens first, so a causal model's real tokens see exactly what
they would see alone, and Switch's per-sequence capacity counts only real tokens first); padded
positions are removed with the attention mask, so padding never enters the trace, and
``seq_offsets`` keeps each prompt's boundaries. An encoder-decoder (Switch) gets the same text
as decoder input, shifted right by one (teacher forcing on the input itself, so decoder position
t is trace token t); ``num_hidden_layers = num_layers + num_decoder_layers``.

torch is imported inside the functions that need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from placer.errors import PlacerError
from placer.fileio import Scratch
from placer.model.trace import Trace
from placer.model.trace_file import trace_metadata
from placer.traces.collect.hooks import RouterRecorder, find_routers, num_experts_of
from placer.traces.collect.models import LoadedModel, config_value
from placer.traces.collect.prompts import batches, token_sequences
from placer.traces.collect.shards import DEFAULT_SHARD_TOKENS, ShardWriter


@dataclass
class CollectResult:
    """What a collection produced (the summary the CLI prints)."""

    output: str
    model: str
    num_layers: int
    num_tokens: int
    num_sequences: int
    top_k: int
    num_experts: int
    moe_layers: list[int]
    num_hidden_layers: int | None
    dropped_tokens: int | None
    seconds: float


def forward(net: Any, config: Any, input_ids: Any, mask: Any) -> None:
    """One forward pass of ``input_ids [B, S]`` with ``mask [B, S]``; an encoder-decoder's
    decoder gets the input shifted right by one (so decoder position t is token t)."""
    import torch
    kw: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask, "use_cache": False}
    if getattr(config, "is_encoder_decoder", False):
        start = int(getattr(config, "decoder_start_token_id", None) or 0)
        dec = torch.cat([torch.full_like(input_ids[:, :1], start), input_ids[:, :-1]], dim=1)
        kw.update(decoder_input_ids=dec, decoder_attention_mask=mask)
    net(**kw)


def collect(loaded: LoadedModel, prompts: Iterable[str], output: str | Path, *,
            batch_size: int = 8, seq_len: int = 512, max_tokens: int | None = None,
            gate_weights: bool = False, device: str = "cpu", seed: int = 0,
            extra: dict[str, Any] | None = None, advance: Callable[[int], None] | None = None,
            shard_tokens: int = DEFAULT_SHARD_TOKENS) -> CollectResult:
    """Run ``prompts`` through the model in right-padded batches, hooking every router, and
    write the native trace to ``output`` (nothing is written on failure or interruption).

    ``advance(n)`` is called with the real tokens of each batch (for a progress bar).
    """
    import time

    import torch
    if batch_size < 1 or seq_len < 1 or (max_tokens is not None and max_tokens < 1):
        raise PlacerError("--batch-size, --seq-len and --max-tokens must be positive integers")
    output = Path(output)
    net, config = loaded.model, loaded.config
    sites = find_routers(net, config)
    E = num_experts_of(sites, config)
    if getattr(config, "is_encoder_decoder", False):
        n_hidden = int(config_value(config, "num_layers") or 0) + int(config_value(config, "num_decoder_layers", "num_layers") or 0)
    else:
        n_hidden = config_value(config, "num_hidden_layers")
    torch.manual_seed(seed)
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = Scratch(output.parent)
    recorder = RouterRecorder(sites, gate_weights)
    start = time.perf_counter()
    try:
        writer = ShardWriter(scratch, E, shard_tokens)
        seqs = token_sequences(prompts, loaded.encode, seq_len, max_tokens)
        with torch.inference_mode():
            for batch in batches(seqs, batch_size):
                width = max(len(s) for s in batch)
                ids = torch.full((len(batch), width), loaded.pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for b, s in enumerate(batch):
                    ids[b, :len(s)] = torch.tensor(s, dtype=torch.long)
                    mask[b, :len(s)] = 1
                dev_mask = mask.to(device)
                forward(net, config, ids.to(device), dev_mask)
                rid, rw, rd = recorder.take(dev_mask.bool())
                writer.add(rid, rw, rd, [len(s) for s in batch])
                if advance is not None:
                    advance(int(mask.sum()))
        seconds = time.perf_counter() - start
        extra_meta = {"routers": [s.path for s in sites],
                      "router_classes": sorted({type(s.module).__name__ for s in sites}),
                      "tokenization": loaded.tokenization, "seq_len": seq_len,
                      "batch_size": batch_size, "padding": "right, padded positions excluded",
                      "from_config": loaded.from_config, "seed": seed,
                      **({"switch_layer_numbering": "encoder block i -> i, decoder block i -> num_layers + i; decoder fed the input shifted right"}
                         if any(s.kind == "switch" for s in sites) else {}),
                      **(extra or {})}
        metadata = trace_metadata(E, [s.layer for s in sites], None if n_hidden is None else int(n_hidden),
                                  loaded.name, "moe-place collect (transformers router hooks)", extra_meta)
        writer.assemble(output, metadata)
    finally:
        recorder.close()
        scratch.close()
    trace = Trace.load(output)
    dropped_total = None
    if trace.dropped is not None:
        dropped_total = int(sum(int(np.asarray(c.dropped).sum()) for c in trace.iter_chunks()))
    return CollectResult(str(output), loaded.name, trace.num_layers, trace.num_tokens,
                         trace.num_sequences, trace.top_k, E, list(trace.moe_layers),
                         trace.num_hidden_layers, dropped_total, seconds)

