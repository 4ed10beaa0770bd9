"""The Trace: which experts every token picked at every MoE layer.

Arrays (L = MoE layers, T = tokens, K = experts per token):

- ``expert_ids``   ``[L, T, K]`` unsigned ints, logical expert ids in ``[0, num_experts)``.
  Token ``t`` is the same token in every layer. Order within a token carries no meaning unless
  ``gate_weights`` is present (then the highest weight is the token's top-1 choice; without
  weights column 0 is taken as top-1).
- ``gate_weights`` ``[L, T, K]`` float, optional: the router's weight for each pick.
- ``seq_offsets``  ``[S + 1]`` int64, optional: tokens of sequence ``s`` are
  ``[seq_offsets[s], seq_offsets[s + 1])``. Absent means one sequence.
- ``dropped``      ``[L, T]`` bool, optional: tokens a capacity-limited router (Switch) dropped
  at that layer; their ``expert_ids`` hold the expert the router chose. Profiles skip them.

Metadata: ``num_experts``, ``moe_layers`` (model layer index of each MoE layer),
``num_hidden_layers`` (all decoder layers, dense ones included), ``model``, ``source`` and a
free ``extra`` dict.

The native file (format v1, an uncompressed ``.npz`` whose members are memory-mapped, so a trace
larger than memory can be profiled chunk by chunk with :meth:`Trace.iter_chunks`) is read and
written by :mod:`placer.model.trace_file`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from placer.errors import PlacerError
from placer.model.trace_file import TRACE_FORMAT, read_npz_members, trace_metadata, write_trace_file

DEFAULT_CHUNK_TOKENS = 65536


def id_dtype(num_experts: int) -> np.dtype:
    """The smallest unsigned dtype that holds ids ``0 .. num_experts - 1``."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if num_experts - 1 <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.uint64)


@dataclass
class Trace:
    """Per-token routing decisions of an MoE model (see the module docstring for shapes)."""

    expert_ids: np.ndarray
    num_experts: int
    gate_weights: np.ndarray | None = None
    seq_offsets: np.ndarray | None = None
    dropped: np.ndarray | None = None
    moe_layers: list[int] | None = None
    num_hidden_layers: int | None = None
    model: str | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.moe_layers is None:
            self.moe_layers = list(range(self.expert_ids.shape[0])) if self.expert_ids.ndim == 3 else []
        self.moe_layers = [int(x) for x in self.moe_layers]
        if self.num_hidden_layers is None and self.moe_layers:
            self.num_hidden_layers = max(self.moe_layers) + 1
        self.num_experts = int(self.num_experts)

    # ----------------------------------------------------------------- shape
    @property
    def num_layers(self) -> int:
        """L, the number of MoE layers in the trace."""
        return int(self.expert_ids.shape[0])

    @property
    def num_tokens(self) -> int:
        """T, the number of tokens."""
        return int(self.expert_ids.shape[1])

    @property
    def top_k(self) -> int:
        """K, experts per token."""
        return int(self.expert_ids.shape[2])

    @property
    def offsets(self) -> np.ndarray:
        """``[S + 1]`` sequence offsets; one sequence spanning all tokens when none were given."""
        if self.seq_offsets is None:
            return np.array([0, self.num_tokens], dtype=np.int64)
        return np.asarray(self.seq_offsets, dtype=np.int64)

    @property
    def num_sequences(self) -> int:
        return len(self.offsets) - 1

    def describe(self) -> str:
        return (f"{self.num_layers} MoE layers x {self.num_tokens} tokens x top-{self.top_k} "
                f"of {self.num_experts} experts, {self.num_sequences} sequences")

    # ------------------------------------------------------------ validation
    def validate(self, name: str = "trace", chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> "Trace":
        """Check shapes, dtypes, id ranges, weights, the dropped mask and offsets, and that the
        profile of ``num_experts`` fits the memory budget; raise :class:`PlacerError` naming ``name``.

        Reads the data chunk by chunk, so it works on memory-mapped traces too.
        """
        from placer.limits import check_experts
        from placer.model.fields import check_kind

        ids = self.expert_ids
        if ids.ndim != 3:
            raise PlacerError(f"{name}: expert_ids must have shape [layers, tokens, top_k], got {ids.ndim} dimensions; re-export it as [L, T, K]")
        check_kind(ids, f"{name}: expert_ids", "iu", "integer expert ids", "store expert ids as integers")
        L, T, K = ids.shape
        if L == 0 or T == 0 or K == 0:
            raise PlacerError(f"{name}: the trace is empty ({L} layers, {T} tokens, top-{K}); record at least one token of one layer")
        if self.num_experts < 1:
            raise PlacerError(f"{name}: num_experts must be positive, got {self.num_experts}; pass --num-experts")
        if K > self.num_experts:
            raise PlacerError(f"{name}: top-{K} picks but only {self.num_experts} experts; pass the right --num-experts")
        check_experts(name, L, self.num_experts)
        if len(self.moe_layers) != L:
            raise PlacerError(f"{name}: moe_layers lists {len(self.moe_layers)} layers but the trace has {L}; fix the metadata")
        if any(b <= a for a, b in zip(self.moe_layers, self.moe_layers[1:])) or (self.moe_layers and self.moe_layers[0] < 0):
            raise PlacerError(f"{name}: moe_layers must be increasing non-negative layer numbers, got {self.moe_layers}; fix the metadata")
        if self.num_hidden_layers is not None and self.moe_layers and self.num_hidden_layers <= self.moe_layers[-1]:
            raise PlacerError(f"{name}: num_hidden_layers={self.num_hidden_layers} but MoE layer {self.moe_layers[-1]} exists; fix the metadata")
        if self.gate_weights is not None:
            if self.gate_weights.shape != ids.shape:
                raise PlacerError(f"{name}: gate_weights has shape {list(self.gate_weights.shape)} but expert_ids has {list(ids.shape)}; they must match")
            check_kind(self.gate_weights, f"{name}: gate_weights", "f", "floats", "re-export the trace or drop the weights")
        if self.dropped is not None:
            if self.dropped.shape != (L, T):
                raise PlacerError(f"{name}: dropped has shape {list(self.dropped.shape)}, expected [{L}, {T}]")
            check_kind(self.dropped, f"{name}: dropped", "b", "booleans (True = dropped)", "store the mask as bool")
        if self.seq_offsets is not None:
            off = np.asarray(self.seq_offsets)
            ok = off.ndim == 1 and len(off) >= 2 and off.dtype.kind in "iu"
            if not ok or int(off[0]) != 0 or int(off[-1]) != T or np.any(off[1:] <= off[:-1]):
                raise PlacerError(f"{name}: seq_offsets must be increasing integers from 0 to {T} (tokens); fix or drop them")
        for t0 in range(0, T, chunk_tokens):
            block = np.asarray(ids[:, t0:t0 + chunk_tokens])
            lo, hi = int(block.min()), int(block.max())
            if lo < 0 or hi >= self.num_experts:
                bad = lo if lo < 0 else hi
                raise PlacerError(f"{name}: expert id {bad} is out of range [0, {self.num_experts}); pass the right --num-experts or fix the ids")
            if self.gate_weights is not None:
                w = np.asarray(self.gate_weights[:, t0:t0 + chunk_tokens])
                if not np.all(np.isfinite(w)):
                    raise PlacerError(f"{name}: gate_weights contain NaN or infinite values; re-export the trace or drop the weights")
        return self

    # -------------------------------------------------------------- slicing
    def iter_chunks(self, chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> Iterator["Trace"]:
        """Yield consecutive token ranges as in-memory Traces of at most ``chunk_tokens`` tokens.

        Memory use is bounded by the chunk: each chunk reads ``[L, chunk, K]`` from a
        memory-mapped file. Chunks carry no sequence offsets.
        """
        for t0 in range(0, self.num_tokens, chunk_tokens):
            t1 = min(t0 + chunk_tokens, self.num_tokens)
            yield self._token_range(t0, t1, with_offsets=False)

    def _token_range(self, t0: int, t1: int, with_offsets: bool) -> "Trace":
        def cut(a: np.ndarray | None, axis1: bool = True) -> np.ndarray | None:
            return None if a is None else np.ascontiguousarray(a[:, t0:t1])

        offsets = None
        if with_offsets and self.seq_offsets is not None:
            off = self.offsets
            inner = off[(off > t0) & (off < t1)]
            offsets = np.concatenate([[t0], inner, [t1]]).astype(np.int64) - t0
        return replace(self, expert_ids=cut(self.expert_ids), gate_weights=cut(self.gate_weights),
                       dropped=cut(self.dropped), seq_offsets=offsets, extra=dict(self.extra))

    def select_sequences(self, seqs: Sequence[int] | np.ndarray) -> "Trace":
        """A new in-memory Trace holding the given sequences, in the given order."""
        off = self.offsets
        seqs = np.asarray(seqs, dtype=np.int64)
        if len(seqs) == 0:
            raise PlacerError("no sequences selected; the trace is too short to split, use --split all")
        parts = [np.arange(off[s], off[s + 1]) for s in seqs]
        tok = np.concatenate(parts)
        lens = np.array([len(p) for p in parts], dtype=np.int64)

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.ascontiguousarray(np.asarray(a)[:, tok])

        return replace(self, expert_ids=take(self.expert_ids), gate_weights=take(self.gate_weights),
                       dropped=take(self.dropped),
                       seq_offsets=np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
                       extra=dict(self.extra))

    def split(self, test_fraction: float = 0.5) -> tuple["Trace", "Trace"]:
        """Split by sequence: the first ``1 - test_fraction`` of sequences train, the rest test.

        With a single sequence the split falls back to tokens (first part / last part), since a
        trace without boundaries still has held-out tokens to score on.
        """
        if not 0.0 < test_fraction < 1.0:
            raise PlacerError(f"the held-out fraction must be between 0 and 1, got {test_fraction}")
        S = self.num_sequences
        if S >= 2:
            n_test = min(S - 1, max(1, int(round(S * test_fraction))))
            return (self.select_sequences(np.arange(0, S - n_test)),
                    self.select_sequences(np.arange(S - n_test, S)))
        T = self.num_tokens
        cut_at = min(T - 1, max(1, int(round(T * (1 - test_fraction)))))
        if T < 2:
            raise PlacerError("the trace has a single token and cannot be split; use --split all")
        return self._token_range(0, cut_at, True), self._token_range(cut_at, T, True)

    def sample(self, share: float, min_tokens: int = 4096) -> "Trace":
        """About ``share`` of the tokens, deterministically: every k-th sequence, or a leading
        token range of a trace without sequence boundaries; at least ``min_tokens`` where the
        trace has them (the whole trace when ``share >= 1``)."""
        T = self.num_tokens
        want = min(T, max(min_tokens, int(share * T)))
        if want >= T:
            return self
        if self.num_sequences >= 2:
            step = max(1, int(round(T / max(want, 1))))
            return self.select_sequences(np.arange(0, self.num_sequences, step))
        return self._token_range(0, want, True)

    def top1(self) -> np.ndarray:
        """``[L, T]`` each token's top-1 expert: highest gate weight, else column 0."""
        if self.gate_weights is None:
            return np.asarray(self.expert_ids[:, :, 0])
        w = np.asarray(self.gate_weights)
        col = np.argmax(w, axis=2)
        return np.take_along_axis(np.asarray(self.expert_ids), col[:, :, None], axis=2)[:, :, 0]

    @staticmethod
    def concat(traces: Sequence["Trace"]) -> "Trace":
        """Concatenate traces along tokens; sequences are kept apart."""
        if not traces:
            raise PlacerError("nothing to concatenate: give at least one trace")
        first = traces[0]
        for t in traces[1:]:
            if (t.num_layers, t.top_k) != (first.num_layers, first.top_k):
                raise PlacerError(
                    f"cannot concatenate traces of shape [{first.num_layers}, *, {first.top_k}] and "
                    f"[{t.num_layers}, *, {t.top_k}]; import them separately")
            if t.moe_layers != first.moe_layers:
                raise PlacerError("cannot concatenate traces with different MoE layer numbers; import them separately")
        E = max(t.num_experts for t in traces)
        dt = id_dtype(E)
        ids = np.concatenate([np.asarray(t.expert_ids).astype(dt, copy=False) for t in traces], axis=1)
        weights = None
        if all(t.gate_weights is not None for t in traces):
            wdt = np.result_type(*[t.gate_weights.dtype for t in traces])
            weights = np.concatenate([np.asarray(t.gate_weights).astype(wdt) for t in traces], axis=1)
        dropped = None
        if any(t.dropped is not None for t in traces):
            dropped = np.concatenate([np.zeros((t.num_layers, t.num_tokens), bool) if t.dropped is None
                                      else np.asarray(t.dropped) for t in traces], axis=1)
        offs, base = [np.zeros(1, np.int64)], 0
        for t in traces:
            offs.append(t.offsets[1:] + base)
            base += t.num_tokens
        sources = sorted({t.source for t in traces if t.source})
        return Trace(expert_ids=ids, num_experts=E, gate_weights=weights, dropped=dropped,
                     seq_offsets=np.concatenate(offs), moe_layers=list(first.moe_layers),
                     num_hidden_layers=max((t.num_hidden_layers or 0) for t in traces) or None,
                     model=first.model, source=", ".join(sources) or None, extra=dict(first.extra))

    # ------------------------------------------------------------------- IO
    def metadata(self) -> dict[str, Any]:
        return trace_metadata(self.num_experts, self.moe_layers, self.num_hidden_layers, self.model,
                              self.source, self.extra)

    def save(self, path: str | Path) -> None:
        """Write the native file (format v1, :mod:`placer.model.trace_file`) atomically."""
        members: dict[str, np.ndarray] = {
            "expert_ids": np.ascontiguousarray(np.asarray(self.expert_ids).astype(id_dtype(self.num_experts), copy=False)),
        }
        if self.gate_weights is not None:
            members["gate_weights"] = np.ascontiguousarray(self.gate_weights)
        if self.seq_offsets is not None:
            members["seq_offsets"] = np.asarray(self.seq_offsets, dtype=np.int64)
        if self.dropped is not None:
            members["dropped"] = np.ascontiguousarray(self.dropped, dtype=bool)
        write_trace_file(path, members, self.metadata())

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True, validate: bool = True) -> "Trace":
        """Read a native trace; memory-map uncompressed members when ``mmap``.

        Raises :class:`PlacerError` (naming the file and the field) on anything that is not a
        valid v1 trace: metadata fields of the wrong type or range are refused, never coerced.
        """
        from placer.model.fields import as_dict, as_int, as_layer_count, as_layer_list, as_text

        path = Path(path)
        arrays, meta = read_npz_members(path, mmap=mmap)
        if meta is None or meta.get("format") != TRACE_FORMAT:
            fmt = meta.get("format") if meta else None
            if isinstance(fmt, str) and fmt.startswith(TRACE_FORMAT.split("@")[0]):
                raise PlacerError(f"{path}: format {fmt!r} is not the {TRACE_FORMAT!r} this moe-place reads; write it with "
                                  f"this version (moe-place import) or upgrade")
            raise PlacerError(f"{path}: not a moe-place trace (no '{TRACE_FORMAT}' metadata); convert it with: moe-place import {path} -o trace.npz")
        if "expert_ids" not in arrays:
            raise PlacerError(f"{path}: the trace has no expert_ids array; re-create it with moe-place import")
        fix = "re-create it with moe-place import"
        if "num_experts" not in meta:
            raise PlacerError(f"{path}: the metadata has no num_experts; {fix}")
        layers = meta.get("moe_layers")
        trace = cls(expert_ids=arrays["expert_ids"], num_experts=as_int(meta["num_experts"], f"{path}: num_experts", 1, fix=fix),
                    gate_weights=arrays.get("gate_weights"), seq_offsets=arrays.get("seq_offsets"),
                    dropped=arrays.get("dropped"),
                    moe_layers=None if layers is None else as_layer_list(layers, f"{path}: moe_layers", fix),
                    num_hidden_layers=as_layer_count(meta.get("num_hidden_layers"), f"{path}: num_hidden_layers", fix),
                    model=as_text(meta.get("model"), f"{path}: model", fix),
                    source=as_text(meta.get("source"), f"{path}: source", fix),
                    extra=as_dict(meta.get("extra"), f"{path}: extra", fix))
        if not validate:
            return trace
        trace.validate(name=str(path))
        if trace.dropped is not None and np.asarray(trace.dropped).all():
            raise PlacerError(f"{path}: dropped marks every token at every MoE layer, so nothing was routed at all; "
                              f"fix the mask or drop it")
        return trace
