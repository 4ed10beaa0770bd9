"""The model the collector runs: torch and transformers (imported lazily), device, dtype, and
building a model from a local checkpoint or, offline, from a tiny config with random weights.

transformers 4.x is refused here with one line: its routers return logits only, so there is
nothing for the router hooks (:mod:`placer.traces.collect.hooks`) to record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from placer.errors import PlacerError, missing_package
from placer.fileio import parse_json
from placer.traces.collect.prompts import byte_tokens

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
MAX_FROM_CONFIG_LAYERS = 1024   # building modules is Python work per layer, even on the meta device


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
            out[key.strip()] = parse_json(value, f"--from-config {key.strip()}")
        except PlacerError:
            if value.strip()[:1] in "[{":
                raise PlacerError(f"--from-config: the value of {key.strip()} is not valid JSON; write e.g. "
                                  f"num_experts=16 or a JSON list") from None
            out[key.strip()] = value.strip()
    return out


def import_torch_transformers():
    """``(torch, transformers)``, or a one-line :class:`PlacerError` when either is missing or
    transformers is older than 5 (commands call it first, to fail before any work)."""
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
    torch, transformers = import_torch_transformers()
    from transformers import AutoConfig, AutoModel
    transformers.logging.set_verbosity_error()
    torch_dtype = getattr(torch, DTYPES[dtype or ("bf16" if device == "cuda" else "fp32")])
    if from_config is not None:
        overrides = parse_overrides(from_config)
        kwargs = {**TINY_CONFIGS.get(model, _SMALL_DECODER), **overrides}
        try:
            config = AutoConfig.for_model(model, **kwargs)
        except Exception as exc:  # the user's model_type or key=value pairs (transformers raises many kinds)
            raise PlacerError(f"--from-config: cannot build a '{model}' config ({_short(exc)}); give a transformers model_type such as {', '.join(sorted(TINY_CONFIGS))} and valid key=value pairs") from None
        _check_config(model, config, torch_dtype)
        torch.manual_seed(seed)
        try:
            net = AutoModel.from_config(config, dtype=torch_dtype)
        except Exception as exc:  # any failure here comes from the user's key=value pairs
            raise PlacerError(f"--from-config: building '{model}' failed ({_short(exc)}); fix the key=value pairs") from None
        vocab = int(config_value(config, "vocab_size"))
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


def _check_config(model: str, config: Any, torch_dtype: Any) -> None:
    """Refuse a --from-config model that cannot route (no experts, top-k above E) or whose
    weights exceed the memory budget, counted on torch's meta device (nothing allocated)."""
    import torch
    from transformers import AutoModel

    from placer.limits import check_budget
    for name in ("vocab_size", "num_hidden_layers", "hidden_size"):
        v = config_value(config, name)
        if isinstance(v, int) and v < 1:
            raise PlacerError(f"--from-config: {name}={v}; it must be at least 1")
    for name in ("num_hidden_layers", "num_layers", "num_decoder_layers"):
        v = config_value(config, name)
        if isinstance(v, int) and v > MAX_FROM_CONFIG_LAYERS:
            raise PlacerError(f"--from-config: {name}={v}; a model built from a config (random weights, for tests and "
                              f"benchmarks) has at most {MAX_FROM_CONFIG_LAYERS} layers")
    E = config_value(config, "num_local_experts", "num_experts", "n_routed_experts")
    K = config_value(config, "num_experts_per_tok", "top_k", "moe_topk")
    if isinstance(E, int) and (E < 1 or (isinstance(K, int) and not 1 <= K <= E)):
        raise PlacerError(f"--from-config: {E} experts with top-{K} cannot route; give num_experts >= 1 and a top-k "
                          f"between 1 and it")
    try:
        with torch.device("meta"):
            net = AutoModel.from_config(config, dtype=torch_dtype)
        nbytes = sum(p.numel() * p.element_size() for p in net.parameters())
    except Exception:  # the real build below reports what is wrong with the config
        return
    check_budget(nbytes, f"--from-config: a '{model}' of {nbytes // torch_dtype.itemsize:,} parameters",
                 "use smaller sizes in --from-config")


def _short(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception, cut to ``limit`` characters (errors stay one short line)."""
    line = (str(exc).splitlines() or [type(exc).__name__])[0]
    return line if len(line) <= limit else line[:limit] + "..."


def config_value(config: Any, *names: str) -> Any:
    """The first of ``names`` set on the config (or its text sub-config)."""
    for cfg in (config, getattr(config, "text_config", None)):
        for n in names:
            v = getattr(cfg, n, None) if cfg is not None else None
            if v is not None:
                return v
    return None
