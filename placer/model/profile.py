"""The Profile: routing statistics a solver consumes, whose size does not depend on T.

Arrays (L = MoE layers, E = experts), all integer counts unless noted:

- ``load``       ``[L, E]``: picks of expert e at layer l. Every one of a token's top-K picks
  counts 1, so ``load[l].sum() == num_tokens * K``.
- ``trans``      ``[L-1, E, E]``, optional: ``trans[l, i, j]`` = tokens that picked i at layer
  l and j at layer l+1. With top-K **every** (i, j) pair of a token's K x K pairs counts 1, so
  ``trans[l].sum() == num_tokens * K**2``. The ``coherent`` cost model weighs each pair 1/K^2
  (a token's cost is the mean over its K x K pairs); integers keep the counts exact.
- ``trans_top1`` ``[L-1, E, E]``, optional: the same for each token's top-1 pick only
  (``Trace.top1``); ``trans_top1[l].sum() == num_tokens``. Used for ExFlow's top-1 metric and
  for affinity statistics (mutual information).
- ``coact``      ``[L, E, E]``, optional, symmetric: ``coact[l, i, j]`` = tokens that picked both
  i and j at layer l (i != j); the diagonal holds ``load``. The ``ep`` cost model's pairwise
  (dedup) approximation uses it.

Tokens a capacity-limited router dropped (``Trace.dropped``) are not counted. A Profile can also
come from aggregate counts alone (``load`` only, or with layer-pair co-occurrence matrices),
when nobody logged per-token data.

Counting is vectorised with ``np.bincount`` over flattened pair indices, one token chunk at a
time, so memory is bounded by the chunk size and a memory-mapped trace of any length works.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from placer.errors import PlacerError
from placer.fileio import write_npz
from placer.model.trace import DEFAULT_CHUNK_TOKENS, Trace
from placer.model.trace_file import read_npz_members

PROFILE_FORMAT = "moe-place/profile@1"


@dataclass
class Profile:
    """Routing statistics of a trace (see the module docstring for shapes and semantics)."""

    load: np.ndarray
    num_tokens: int
    top_k: int
    trans: np.ndarray | None = None
    trans_top1: np.ndarray | None = None
    coact: np.ndarray | None = None
    moe_layers: list[int] | None = None
    num_hidden_layers: int | None = None
    model: str | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.moe_layers is None:
            self.moe_layers = list(range(self.load.shape[0]))
        self.moe_layers = [int(x) for x in self.moe_layers]
        if self.num_hidden_layers is None and self.moe_layers:
            self.num_hidden_layers = max(self.moe_layers) + 1

    @property
    def num_layers(self) -> int:
        return int(self.load.shape[0])

    @property
    def num_experts(self) -> int:
        return int(self.load.shape[1])

    def transition_weights(self) -> np.ndarray:
        """``[L-1, E, E]`` float64: ``trans / K**2``, expected token transitions (coherent model).

        ``transition_weights()[l].sum()`` is the number of tokens (each token's K x K pairs
        share one unit of weight).
        """
        if self.trans is None:
            raise PlacerError("this profile has no inter-layer transition counts (aggregate loads only); "
                              "give a per-token trace or counts with layer-pair matrices for the coherent cost")
        return self.trans.astype(np.float64) / float(self.top_k ** 2)

    # ------------------------------------------------------------ building
    @classmethod
    def from_trace(cls, trace: Trace, chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
                   coact: bool = True, trans: bool = True,
                   progress: Callable[[int], None] | None = None) -> "Profile":
        """Count loads, transitions and co-activations chunk by chunk.

        ``progress`` (if given) is called with the number of tokens of each finished chunk.
        """
        L, E, K = trace.num_layers, trace.num_experts, trace.top_k
        load = np.zeros((L, E), np.int64)
        tr = np.zeros((max(L - 1, 0), E, E), np.int64) if trans else None
        tr1 = np.zeros((max(L - 1, 0), E, E), np.int64) if trans else None
        co = np.zeros((L, E, E), np.int64) if coact else None
        counted = 0
        for chunk in trace.iter_chunks(chunk_tokens):
            raw = np.asarray(chunk.expert_ids)
            valid = None if chunk.dropped is None else ~np.asarray(chunk.dropped)
            top1 = chunk.top1().astype(np.intp) if trans else None
            # intp one layer at a time (np.bincount casts anything else on every call); each
            # layer's ids serve as the target of transition l-1 and the source of l.
            cur = raw[0].astype(np.intp)
            for l in range(L):
                nxt = raw[l + 1].astype(np.intp) if l + 1 < L else None
                a = cur if valid is None else cur[valid[l]]
                load[l] += np.bincount(a.ravel(), minlength=E)
                if co is not None:
                    co[l] += _symmetric_pair_counts(a, E)
                if tr is not None and nxt is not None:
                    both = None if valid is None else valid[l] & valid[l + 1]
                    x = cur if both is None else cur[both]
                    y = nxt if both is None else nxt[both]
                    tr[l] += pair_counts(x, y, E)
                    x1 = top1[l] if both is None else top1[l][both]
                    y1 = top1[l + 1] if both is None else top1[l + 1][both]
                    tr1[l] += np.bincount(x1 * E + y1, minlength=E * E).reshape(E, E)
                cur = nxt
            counted += chunk.num_tokens
            if progress is not None:
                progress(chunk.num_tokens)
        if co is not None:
            # pair counting skipped (i, i); the diagonal is defined as the load.
            idx = np.arange(E)
            co[:, idx, idx] = load
        return cls(load=load, num_tokens=int(counted), top_k=K, trans=tr, trans_top1=tr1, coact=co,
                   moe_layers=list(trace.moe_layers), num_hidden_layers=trace.num_hidden_layers,
                   model=trace.model, source=trace.source)

    # ------------------------------------------------------------------ IO
    def metadata(self) -> dict[str, Any]:
        return {"format": PROFILE_FORMAT, "num_tokens": self.num_tokens, "top_k": self.top_k,
                "moe_layers": self.moe_layers, "num_hidden_layers": self.num_hidden_layers,
                "model": self.model, "source": self.source, "extra": self.extra}

    def save(self, path: str | Path) -> None:
        """Write the profile ``.npz`` atomically (compressed: the matrices are sparse-ish)."""
        arrays = {"load": self.load, "metadata": np.array(json.dumps(self.metadata(), sort_keys=True))}
        for key in ("trans", "trans_top1", "coact"):
            if getattr(self, key) is not None:
                arrays[key] = getattr(self, key)
        write_npz(path, arrays, compress=True)

    @classmethod
    def load_file(cls, path: str | Path) -> "Profile":
        """Read a profile written by :meth:`save` (metadata fields typed, never coerced)."""
        from placer.model.fields import as_dict, as_int, as_layer_count, as_layer_list, as_text

        path = Path(path)
        arrays, meta = read_npz_members(path, mmap=False)
        if meta is None or meta.get("format") != PROFILE_FORMAT:
            raise PlacerError(f"{path}: not a moe-place profile (no '{PROFILE_FORMAT}' metadata, found "
                              f"{(meta or {}).get('format')!r}); write it with this version: moe-place profile")
        if "load" not in arrays:
            raise PlacerError(f"{path}: the profile has no load array; re-create it")
        fix = "re-create it with moe-place profile"
        for key in ("num_tokens", "top_k"):
            if key not in meta:
                raise PlacerError(f"{path}: the metadata has no {key}; {fix}")
        layers = meta.get("moe_layers")
        prof = cls(load=np.asarray(arrays["load"]), num_tokens=as_int(meta["num_tokens"], f"{path}: num_tokens", 0, 2**62, fix=fix),
                   top_k=as_int(meta["top_k"], f"{path}: top_k", 1, fix=fix), trans=arrays.get("trans"),
                   trans_top1=arrays.get("trans_top1"), coact=arrays.get("coact"),
                   moe_layers=None if layers is None else as_layer_list(layers, f"{path}: moe_layers", fix),
                   num_hidden_layers=as_layer_count(meta.get("num_hidden_layers"), f"{path}: num_hidden_layers", fix),
                   model=as_text(meta.get("model"), f"{path}: model", fix),
                   source=as_text(meta.get("source"), f"{path}: source", fix),
                   extra=as_dict(meta.get("extra"), f"{path}: extra", fix))
        return prof.validate(str(path))

    def validate(self, name: str = "profile") -> "Profile":
        """Check shapes, dtypes (real numbers), signs, ``top_k`` against E and the layer numbers;
        raise :class:`PlacerError` naming ``name``."""
        from placer.limits import check_experts
        from placer.model.fields import check_kind

        if self.load.ndim != 2 or self.load.shape[0] == 0 or self.load.shape[1] == 0:
            raise PlacerError(f"{name}: load must have shape [layers, experts], got {list(self.load.shape)}")
        L, E = self.load.shape
        check_experts(name, L, E, "the expert count of load")
        expect = {"trans": (max(L - 1, 0), E, E), "trans_top1": (max(L - 1, 0), E, E), "coact": (L, E, E)}
        for key, shape in expect.items():
            arr = getattr(self, key)
            if arr is not None and tuple(arr.shape) != shape:
                raise PlacerError(f"{name}: {key} has shape {list(arr.shape)}, expected {list(shape)}")
        for key in ("load", "trans", "trans_top1", "coact"):
            arr = getattr(self, key)
            if arr is None:
                continue
            check_kind(arr, f"{name}: {key}", "iuf", "counts (integers or floats)", "fix the counts")
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise PlacerError(f"{name}: {key} has negative or non-finite counts; fix the counts")
        if not 1 <= self.top_k <= E:
            raise PlacerError(f"{name}: top_k is {self.top_k} but there are {E} experts; top_k must be between 1 and E")
        if self.num_tokens < 0:
            raise PlacerError(f"{name}: num_tokens is {self.num_tokens}; it cannot be negative")
        if len(self.moe_layers) != L:
            raise PlacerError(f"{name}: moe_layers lists {len(self.moe_layers)} layers but load has {L}")
        if any(b <= a for a, b in zip(self.moe_layers, self.moe_layers[1:])) or min(self.moe_layers) < 0:
            raise PlacerError(f"{name}: moe_layers must be increasing non-negative layer numbers, got {self.moe_layers}")
        if self.num_hidden_layers is not None and self.num_hidden_layers <= self.moe_layers[-1]:
            raise PlacerError(f"{name}: num_hidden_layers={self.num_hidden_layers} but MoE layer {self.moe_layers[-1]} exists")
        return self


# Pair indices per inner block of counting: the index buffer then stays in cache (measured on
# this machine: blocks of 4096 tokens x 64 pairs gave ~1.5x the throughput of 65536 tokens).
_PAIR_BLOCK = 1 << 18


def pair_counts(a: np.ndarray, b: np.ndarray, num_experts: int) -> np.ndarray:
    """``[E, E]`` int64 counts of all pairs ``(a[t, i], b[t, j])`` over tokens t and all i, j.

    ``a`` is ``[T, Ka]``, ``b`` is ``[T, Kb]`` (integer ids). Each token contributes Ka * Kb pairs.
    """
    E = num_experts
    out = np.zeros(E * E, np.int64)
    T = a.shape[0]
    if T == 0:
        return out.reshape(E, E)
    aE = a.astype(np.intp) * E
    b = b.astype(np.intp, copy=False)
    block = max(1, _PAIR_BLOCK // (a.shape[1] * b.shape[1]))
    buf = np.empty((min(T, block), a.shape[1], b.shape[1]), np.intp)
    for s in range(0, T, block):
        n = min(block, T - s)
        v = buf[:n]
        np.add(aE[s:s + n, :, None], b[s:s + n, None, :], out=v)
        out += np.bincount(v.ravel(), minlength=E * E)
    return out.reshape(E, E)


def _symmetric_pair_counts(a: np.ndarray, num_experts: int) -> np.ndarray:
    """``pair_counts(a, a)`` off the diagonal (diagonal left 0), counting each unordered pair of
    a token's picks once and mirroring: K(K-1)/2 increments per token instead of K^2."""
    E = num_experts
    K = a.shape[1]
    if K < 2 or a.shape[0] == 0:
        return np.zeros((E, E), np.int64)
    s = np.sort(a, axis=1).astype(np.intp, copy=False)
    i, j = np.triu_indices(K, 1)
    block = max(1, _PAIR_BLOCK // len(i))
    flat = np.zeros(E * E, np.int64)
    for t0 in range(0, s.shape[0], block):
        blk = s[t0:t0 + block]
        flat += np.bincount((blk[:, i] * E + blk[:, j]).ravel(), minlength=E * E)
    c = flat.reshape(E, E)
    c = c + c.T
    np.fill_diagonal(c, 0)
    return c
