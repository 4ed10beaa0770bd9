"""Collect a routing trace from a Hugging Face transformers MoE model by hooking its routers.

In transformers 5.x every MoE layer has a router module whose class name ends in ``TopKRouter``
(DeepSeek-V3: ``TopkRouter``) and whose forward returns ``(router_logits [N, E],
top_k_weights [N, K], top_k_index [N, K])`` with ``N = batch * seq`` flattened. A forward hook
records ``top_k_index`` and ``top_k_weights`` as the router returned them: exactly the indices
the experts receive, including DeepSeek-V3's bias-corrected, group-limited choice that the
logits alone cannot reproduce. Switch Transformers' ``SwitchTransformersTop1Router`` returns
``(one-hot dispatch [B, S, E] with capacity-dropped tokens all zero, max prob [B, S, 1],
logits [B, S, E])``: a token whose one-hot row is zero was dropped; its ``expert_ids`` entry is
the expert the router chose (argmax of its probabilities, computed as the router does) and
``dropped[l, t]`` is set.

Layer numbers come from the module path (``layers.{i}`` / ``block.{i}``). Switch is an
encoder-decoder: the decoder is fed the same text shifted right by one (teacher forcing on the
input itself, so decoder position t is trace token t), encoder block i is layer i and decoder
block i is layer ``num_layers + i``; ``num_hidden_layers = num_layers + num_decoder_layers``.

Sequences are right-padded (real tokens first, so a causal model's real tokens see exactly what
they would see alone, and Switch's per-sequence capacity counts only real tokens first); padded
positions are removed with the attention mask, so padding never enters the trace, and
``seq_offsets`` keeps each prompt's boundaries.

Recorded data are streamed to shard files in a temporary directory next to the output and
assembled into the native trace format v1 (uncompressed ``.npz``, memory-mappable) through
``np.lib.format.open_memmap``, so memory is bounded by one shard; the output appears under its
final name only when complete (temp name + rename).

transformers 4.x is not supported: there the routers are plain ``nn.Linear`` gates returning
logits only. Supporting it would mean hooking each MoE block's ``gate`` Linear and recomputing
top-k from the logits (softmax then top-k, the block's ``top_k``), which is exact for Mixtral,
Qwen-MoE, OLMoE, GraniteMoE and GPT-OSS but not for DeepSeek-V3 (its ids depend on the
correction bias and group limit inside the gate), so the collector refuses 4.x with one line.

torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from placer.errors import PlacerError, missing_package
from placer.fileio import atomic_path
from placer.model.trace import TRACE_FORMAT, Trace, id_dtype

ROUTER_SUFFIXES = ("TopKRouter", "TopkRouter")
SWITCH_ROUTER = "SwitchTransformersTop1Router"
# Class-name fragments of modules that belong to an MoE block; used only to tell "no MoE layers"
# from "MoE layers whose router we cannot hook" in the error message.
MOE_HINTS = ("moe", "expert", "router", "sparse", "switch")
DEFAULT_SHARD_TOKENS = 65536

_SMALL_DECODER = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, vocab_size=1024,
                      max_position_embeddings=4096, bos_token_id=1, eos_token_id=2,
                      pad_token_id=0, tie_word_embeddings=False)
# --from-config starts from these tiny shapes (random weights, seeded) and applies the user's
# key=value pairs on top: a bare model_type would otherwise build the full-size model.
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "mixtral": {**_SMALL_DECODER, "num_local_experts": 8, "num_experts_per_tok": 2},
    "qwen2_moe": {**_SMALL_DECODER, "num_experts": 8, "num_experts_per_tok": 2,
                  "moe_intermediate_size": 64, "shared_expert_intermediate_size": 64},
    "qwen3_moe": {**_SMALL_DECODER, "num_experts": 8, "num_experts_per_tok": 2,
                  "moe_intermediate_size": 64, "head_dim": 16},
    "olmoe": {**_SMALL_DECODER, "num_experts": 8, "num_experts_per_tok": 2},
    "deepseek_v3": {**_SMALL_DECODER, "num_key_value_heads": 4, "n_routed_experts": 8,
                    "num_experts_per_tok": 2, "moe_intermediate_size": 64,
                    "first_k_dense_replace": 1, "n_group": 2, "topk_group": 1,
                    "n_shared_experts": 1, "kv_lora_rank": 16, "q_lora_rank": 32,
                    "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 16},
    "gpt_oss": {**_SMALL_DECODER, "num_local_experts": 8, "num_experts_per_tok": 2,
                "head_dim": 16},
    "granitemoe": {**_SMALL_DECODER, "num_local_experts": 8, "num_experts_per_tok": 2},
    "switch_transformers": dict(d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=4,
                                num_decoder_layers=4, num_sparse_encoder_layers=2,
                                num_sparse_decoder_layers=2, num_experts=8, expert_capacity=64,
                                vocab_size=1024, pad_token_id=0, eos_token_id=1,
                                decoder_start_token_id=0),
}
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


# ------------------------------------------------------------------ prompts and tokens
def read_prompts(path: str | Path, text_field: str | None = None) -> Iterator[str]:
    """Yield the prompts of ``path``: one per non-blank line, or JSONL records' ``text_field``.

    JSONL is assumed when ``text_field`` is given or the file ends in ``.jsonl``/``.json``
    (field ``text`` by default). Raises :class:`PlacerError` on unreadable or malformed files.
    """
    path = Path(path)
    jsonl = text_field is not None or path.suffix.lower() in (".jsonl", ".json")
    text_field = text_field or "text"
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise PlacerError(f"{path}: no such prompt file; check the --prompts path") from None
    except OSError as exc:
        raise PlacerError(f"{path}: cannot read the prompt file ({exc.strerror}); check the path") from None
    with fh:
        try:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                if not jsonl:
                    yield line.rstrip("\r\n")
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    raise PlacerError(f"{path}:{lineno}: not a JSON object; give one JSON object per line, or a plain-text file with one prompt per line") from None
                if not isinstance(rec, dict) or not isinstance(rec.get(text_field), str):
                    raise PlacerError(f"{path}:{lineno}: no string field '{text_field}'; name the text field with --text-field")
                yield rec[text_field]
        except UnicodeDecodeError:
            raise PlacerError(f"{path}: not UTF-8 text; give a UTF-8 prompt file") from None


def byte_tokens(text: str, vocab_size: int) -> list[int]:
    """Tokenise without a tokenizer: one token per UTF-8 byte, id = byte value mod ``vocab_size``.

    Used in from-config mode (random weights, no tokenizer); deterministic and documented.
    """
    return [b % vocab_size for b in text.encode("utf-8")]


def token_sequences(prompts: Iterable[str], encode: Callable[[str], list[int]], seq_len: int,
                    max_tokens: int | None) -> Iterator[list[int]]:
    """Encode prompts, truncate each to ``seq_len`` and stop after ``max_tokens`` tokens in all.

    Prompts that encode to no tokens are skipped; the last sequence is cut to fit ``max_tokens``.
    """
    total = 0
    for text in prompts:
        ids = list(encode(text))[:seq_len]
        if max_tokens is not None:
            ids = ids[:max_tokens - total]
        if not ids:
            if max_tokens is not None and total >= max_tokens:
                return
            continue
        total += len(ids)
        yield ids


def batches(seqs: Iterable[list[int]], batch_size: int) -> Iterator[list[list[int]]]:
    """Groups of up to ``batch_size`` sequences, in order (itertools.batched needs Python 3.12)."""
    batch: list[list[int]] = []
    for s in seqs:
        batch.append(s)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def parse_overrides(text: str | None) -> dict[str, Any]:
    """Parse ``key=value,key=value``; values are JSON when they parse (ints, floats, lists,
    true/false/null), else strings. Commas inside brackets belong to the value."""
    if not text or not text.strip():
        return {}
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    out: dict[str, Any] = {}
    for part in parts:
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise PlacerError(f"--from-config: '{part}' is not key=value; write e.g. --from-config num_experts=16,num_hidden_layers=8")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value.strip()
    return out


# ------------------------------------------------------------------------- the model
def _import_torch_transformers():
    try:
        import torch
    except ImportError:
        raise missing_package("torch", "moe-place collect", "torch==2.13.0") from None
    try:
        import transformers
    except ImportError:
        raise missing_package("transformers", "moe-place collect", "'transformers>=5'") from None
    major = int(transformers.__version__.split(".")[0])
    if major < 5:
        raise PlacerError(
            f"transformers {transformers.__version__} is installed; the collector hooks the router "
            "modules of transformers 5 (4.x routers return logits only); upgrade: pip install 'transformers>=5'")
    return torch, transformers


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without one is an error."""
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise PlacerError("--device cuda was requested but torch sees no CUDA GPU; use --device cpu (or auto)")
    if device not in ("cpu", "cuda"):
        raise PlacerError(f"unknown device '{device}'; use cpu, cuda or auto")
    return device


@dataclass
class LoadedModel:
    """A model ready to run, with how to turn text into token ids."""

    model: Any
    config: Any
    name: str
    encode: Callable[[str], list[int]]
    pad_id: int
    tokenization: str
    from_config: dict[str, Any] | None = None


def load_model(model: str, from_config: str | None = None, seed: int = 0, device: str = "cpu",
               dtype: str | None = None) -> LoadedModel:
    """Load a local checkpoint directory, or build ``model`` (a model_type) with random weights.

    ``from_config`` is ``key=value,...`` over :data:`TINY_CONFIGS` (None means MODEL is a
    directory). Weights built from a config are drawn from ``torch.manual_seed(seed)``.
    """
    torch, transformers = _import_torch_transformers()
    from transformers import AutoConfig, AutoModel
    transformers.logging.set_verbosity_error()
    torch_dtype = getattr(torch, DTYPES[dtype or ("bf16" if device == "cuda" else "fp32")])
    if from_config is not None:
        overrides = parse_overrides(from_config)
        kwargs = {**TINY_CONFIGS.get(model, _SMALL_DECODER), **overrides}
        try:
            config = AutoConfig.for_model(model, **kwargs)
        except (ValueError, KeyError) as exc:
            raise PlacerError(f"--from-config: cannot build a '{model}' config ({_short(exc)}); give a transformers model_type such as {', '.join(sorted(TINY_CONFIGS))}") from None
        torch.manual_seed(seed)
        try:
            net = AutoModel.from_config(config, dtype=torch_dtype)
        except Exception as exc:  # any failure here comes from the user's key=value pairs
            raise PlacerError(f"--from-config: building '{model}' failed ({_short(exc)}); fix the key=value pairs") from None
        vocab = int(_cfg(config, "vocab_size"))
        pad = getattr(config, "pad_token_id", None)
        return LoadedModel(net.to(device).eval(), config, model, lambda s: byte_tokens(s, vocab),
                           int(pad) if pad is not None and 0 <= pad < vocab else 0,
                           f"bytes: one token per UTF-8 byte, id = byte % vocab_size ({vocab})", kwargs)
    path = Path(model)
    if not path.is_dir():
        raise PlacerError(f"{model}: no such model directory; give a local checkpoint directory, or a model_type with --from-config key=value,...")
    if not (path / "config.json").is_file():
        raise PlacerError(f"{model}: the directory has no config.json; point MODEL at a checkpoint directory (config, weights, tokenizer)")
    from transformers import AutoTokenizer
    try:
        config = AutoConfig.from_pretrained(path)
    except (ValueError, OSError, KeyError) as exc:
        raise PlacerError(f"{path / 'config.json'}: not a usable transformers config ({_short(exc)}); fix or replace it") from None
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (ValueError, OSError, KeyError, TypeError) as exc:
        raise PlacerError(f"{model}: no usable tokenizer in the directory ({_short(exc)}); add the tokenizer files") from None
    try:
        net = AutoModel.from_pretrained(path, dtype=torch_dtype)
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        raise PlacerError(f"{model}: cannot load the weights ({_short(exc)}); check the checkpoint files") from None
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return LoadedModel(net.to(device).eval(), config, path.name,
                       lambda s: tok(s)["input_ids"], int(pad or 0),
                       f"tokenizer: {type(tok).__name__} from {path.name}")


def _short(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception, cut to ``limit`` characters (errors stay one short line)."""
    line = (str(exc).splitlines() or [type(exc).__name__])[0]
    return line if len(line) <= limit else line[:limit] + "..."


def _cfg(config: Any, *names: str) -> Any:
    """The first of ``names`` set on the config (or its text sub-config)."""
    for cfg in (config, getattr(config, "text_config", None)):
        for n in names:
            v = getattr(cfg, n, None) if cfg is not None else None
            if v is not None:
                return v
    return None


# ------------------------------------------------------------------------ the routers
@dataclass
class RouterSite:
    """One hooked router: module path, model layer number, kind (``topk`` or ``switch``)."""

    path: str
    layer: int
    kind: str
    module: Any = field(repr=False)


_LAYER_RE = re.compile(r"(?:^|\.)(?:layers|layer|block|blocks|h)\.(\d+)(?:\.|$)")


def layer_of(path: str, num_encoder_layers: int = 0) -> int:
    """The model layer number in a module path (first ``layers.{i}``/``block.{i}``); decoder
    blocks of an encoder-decoder are numbered after the ``num_encoder_layers`` encoder blocks."""
    m = _LAYER_RE.search(path)
    if m is None:
        raise PlacerError(f"router '{path}' has no layer number in its module path; this architecture is not supported by the collector")
    i = int(m.group(1))
    return i + num_encoder_layers if path.startswith("decoder.") or ".decoder." in path else i


def find_routers(model: Any, config: Any = None) -> list[RouterSite]:
    """The router modules of ``model``, ordered by layer; :class:`PlacerError` when there are none.

    The error says whether the model has no MoE layers at all or has MoE modules whose router
    class this collector does not know (naming the classes found).
    """
    n_enc = int(_cfg(config, "num_layers") or 0) if getattr(config, "is_encoder_decoder", False) else 0
    sites, moe_classes = [], set()
    for path, mod in model.named_modules():
        cls = type(mod).__name__
        if cls.endswith(ROUTER_SUFFIXES):
            sites.append(RouterSite(path, layer_of(path, n_enc), "topk", mod))
        elif cls == SWITCH_ROUTER:
            sites.append(RouterSite(path, layer_of(path, n_enc), "switch", mod))
        elif any(h in cls.lower() for h in MOE_HINTS):
            moe_classes.add(cls)
    name = type(model).__name__
    if not sites:
        if moe_classes:
            raise PlacerError(
                f"{name}: found MoE modules ({', '.join(sorted(moe_classes))}) but no router class ending in "
                f"{'/'.join(ROUTER_SUFFIXES)} or {SWITCH_ROUTER}; this architecture's router cannot be hooked, use a supported model")
        raise PlacerError(f"{name}: the model has no MoE layers (no router modules); collect from a Mixture-of-Experts model")
    sites.sort(key=lambda s: s.layer)
    layers = [s.layer for s in sites]
    if len(set(layers)) != len(layers):
        raise PlacerError(f"{name}: several routers share a layer number ({layers}); this architecture is not supported by the collector")
    return sites


def num_experts_of(sites: list[RouterSite], config: Any) -> int:
    vals = {int(getattr(s.module, "num_experts", 0) or 0) for s in sites}
    if len(vals) == 1 and 0 not in vals:
        return vals.pop()
    e = _cfg(config, "num_local_experts", "num_experts", "n_routed_experts")
    if e is None or len(vals - {0}) > 1:
        raise PlacerError("cannot tell the number of experts (routers disagree or the config names none); this architecture is not supported by the collector")
    return int(e)


class RouterRecorder:
    """Forward hooks on every router; after a forward pass, :meth:`take` returns the real tokens'
    routing as numpy arrays and clears the buffers.

    Hooks only keep references to the router's output tensors (no copy, no device sync), so the
    cost of recording is a few dictionary writes per layer.
    """

    def __init__(self, sites: list[RouterSite], gate_weights: bool):
        self.sites = sites
        self.gate_weights = gate_weights
        self.outputs: dict[int, tuple] = {}
        self.handles = [s.module.register_forward_hook(self._hook(i)) for i, s in enumerate(sites)]

    def _hook(self, i: int):
        def hook(module, inputs, output):
            if i in self.outputs:
                raise PlacerError(f"router '{self.sites[i].path}' ran twice in one forward pass; this architecture is not supported by the collector")
            self.outputs[i] = (module, output)
        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def take(self, mask: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Routing of the real tokens of the last forward: ``ids [L, n, K]``, ``weights [L, n, K]``
        (float32, or None), ``dropped [L, n]`` (bool, Switch only, else None); ``mask [B, S]``
        marks real tokens, n = mask.sum(), order = sequence by sequence."""
        import torch
        B, S = mask.shape
        flat = mask.reshape(-1)
        ids, weights, dropped = [], [], []
        for i, site in enumerate(self.sites):
            if i not in self.outputs:
                raise PlacerError(f"router '{site.path}' did not run in the forward pass; this architecture is not supported by the collector")
            module, out = self.outputs[i]
            if site.kind == "switch":
                one_hot, probs, logits = out
                routed = one_hot.reshape(B * S, -1).sum(-1) > 0
                # the router's own choice, computed as it does (softmax in its dtype, cast back)
                chosen = torch.softmax(logits, dim=-1, dtype=module.dtype).to(module.input_dtype).argmax(-1)
                idx = torch.where(routed, one_hot.reshape(B * S, -1).argmax(-1), chosen.reshape(-1))[:, None]
                w = probs.reshape(B * S, 1)
                dropped.append((~routed)[flat])
            else:
                _, w, idx = out
                idx, w = idx.reshape(B * S, -1), w.reshape(B * S, -1)
            ids.append(idx[flat])
            if self.gate_weights:
                weights.append(w[flat].float())
        self.outputs = {}
        ids_np = torch.stack(ids).cpu().numpy()
        w_np = torch.stack(weights).cpu().numpy().astype(np.float32) if self.gate_weights else None
        d_np = torch.stack(dropped).cpu().numpy() if dropped else None
        return ids_np, w_np, d_np


# ---------------------------------------------------------------------- shards on disk
class ShardWriter:
    """Buffers per-batch routing and flushes it to ``.npy`` shards in ``workdir``; :meth:`assemble`
    writes the native trace through memory-mapped ``.npy`` files, one shard at a time."""

    def __init__(self, workdir: Path, num_experts: int, shard_tokens: int = DEFAULT_SHARD_TOKENS):
        self.workdir = workdir
        self.id_dtype = id_dtype(num_experts)
        self.shard_tokens = shard_tokens
        self.buffer: list[tuple] = []
        self.buffered = 0
        self.shards: list[tuple[int, bool, bool]] = []  # (tokens, has weights, has dropped)
        self.seq_lens: list[int] = []

    @property
    def num_tokens(self) -> int:
        return sum(s[0] for s in self.shards) + self.buffered

    def add(self, ids: np.ndarray, weights: np.ndarray | None, dropped: np.ndarray | None,
            seq_lens: list[int]) -> None:
        self.buffer.append((ids.astype(self.id_dtype), weights, dropped))
        self.buffered += ids.shape[1]
        self.seq_lens.extend(seq_lens)
        if self.buffered >= self.shard_tokens:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        k = len(self.shards)
        parts = list(zip(*self.buffer))
        np.save(self.workdir / f"{k}.ids.npy", np.concatenate(parts[0], axis=1))
        has_w, has_d = parts[1][0] is not None, parts[2][0] is not None
        if has_w:
            np.save(self.workdir / f"{k}.w.npy", np.concatenate(parts[1], axis=1))
        if has_d:
            np.save(self.workdir / f"{k}.d.npy", np.concatenate(parts[2], axis=1))
        self.shards.append((self.buffered, has_w, has_d))
        self.buffer, self.buffered = [], 0

    def assemble(self, dest: Path, metadata: dict[str, Any]) -> None:
        """Write the trace to ``dest`` (atomically): arrays filled shard by shard via open_memmap,
        then stored uncompressed in a zip with fixed timestamps (byte-identical reruns)."""
        self.flush()
        if not self.shards:
            raise PlacerError("no tokens were collected (every prompt was empty); give a prompt file with text")
        T = self.num_tokens
        first = np.load(self.workdir / "0.ids.npy", mmap_mode="r")
        L, K = first.shape[0], first.shape[2]
        members: dict[str, Path] = {}
        targets = {"ids": ("expert_ids", self.id_dtype, (L, T, K))}
        if self.shards[0][1]:
            targets["w"] = ("gate_weights", np.dtype(np.float32), (L, T, K))
        if self.shards[0][2]:
            targets["d"] = ("dropped", np.dtype(bool), (L, T))
        for tag, (name, dt, shape) in targets.items():
            out_path = self.workdir / f"{name}.npy"
            out = np.lib.format.open_memmap(out_path, mode="w+", dtype=dt, shape=shape)
            t0 = 0
            for k, (n, _, _) in enumerate(self.shards):
                out[:, t0:t0 + n] = np.load(self.workdir / f"{k}.{tag}.npy", mmap_mode="r")
                t0 += n
            out.flush()
            del out
            members[name] = out_path
        off = self.workdir / "seq_offsets.npy"
        np.save(off, np.concatenate([[0], np.cumsum(self.seq_lens)]).astype(np.int64))
        members["seq_offsets"] = off
        meta = self.workdir / "metadata.npy"
        np.save(meta, np.array(json.dumps(metadata, sort_keys=True)))
        members["metadata"] = meta
        with atomic_path(dest, suffix=".npz") as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
                for name, src in members.items():
                    info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                    info.compress_type = zipfile.ZIP_STORED
                    info.file_size = src.stat().st_size
                    with open(src, "rb") as fin, zf.open(info, "w") as fout:
                        shutil.copyfileobj(fin, fout, 1 << 20)


# ------------------------------------------------------------------------ collection
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


def _forward(net: Any, config: Any, input_ids: Any, mask: Any) -> None:
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
        n_hidden = int(_cfg(config, "num_layers") or 0) + int(_cfg(config, "num_decoder_layers", "num_layers") or 0)
    else:
        n_hidden = _cfg(config, "num_hidden_layers")
    torch.manual_seed(seed)
    output.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{output.name}.collect-", dir=output.parent))
    recorder = RouterRecorder(sites, gate_weights)
    start = time.perf_counter()
    try:
        writer = ShardWriter(workdir, E, shard_tokens)
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
                _forward(net, config, ids.to(device), dev_mask)
                rid, rw, rd = recorder.take(dev_mask.bool())
                writer.add(rid, rw, rd, [len(s) for s in batch])
                if advance is not None:
                    advance(int(mask.sum()))
        seconds = time.perf_counter() - start
        metadata = {
            "format": TRACE_FORMAT, "num_experts": E, "moe_layers": [s.layer for s in sites],
            "num_hidden_layers": None if n_hidden is None else int(n_hidden),
            "model": loaded.name, "source": "moe-place collect (transformers router hooks)",
            "extra": {"routers": [s.path for s in sites],
                      "router_classes": sorted({type(s.module).__name__ for s in sites}),
                      "tokenization": loaded.tokenization, "seq_len": seq_len,
                      "batch_size": batch_size, "padding": "right, padded positions excluded",
                      "from_config": loaded.from_config, "seed": seed,
                      **({"switch_layer_numbering": "encoder block i -> i, decoder block i -> num_layers + i; decoder fed the input shifted right"}
                         if any(s.kind == "switch" for s in sites) else {}),
                      **(extra or {})},
        }
        writer.assemble(output, metadata)
    finally:
        recorder.close()
        shutil.rmtree(workdir, ignore_errors=True)
    trace = Trace.load(output)
    dropped_total = None
    if trace.dropped is not None:
        dropped_total = int(sum(int(np.asarray(c.dropped).sum()) for c in trace.iter_chunks()))
    return CollectResult(str(output), loaded.name, trace.num_layers, trace.num_tokens,
                         trace.num_sequences, trace.top_k, E, list(trace.moe_layers),
                         trace.num_hidden_layers, dropped_total, seconds)
