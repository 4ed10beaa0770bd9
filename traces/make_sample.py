"""Regenerate ``traces/sample.npz``, the project's own small sample trace.

What it is, honestly: the routing of a TINY OLMoE-shaped model with RANDOM weights (built from
its config, seeded; no checkpoint, no download), recorded with ``moe-place collect``'s
collector. Random routers are not trained routers: load skew and inter-layer affinity here do
not resemble any real model's. Use it to try the tool and in tests of mechanics; use real
traces to judge placements.

Model: transformers ``olmoe`` config with hidden_size=128, intermediate_size=256,
8 layers (all MoE), 32 experts, top-4, vocab 1024, seed 0.

Text: text that ships with Python itself, one prompt per paragraph, in this order:
the Zen of Python (``this.s`` decoded with ROT13, one prompt per line) and the module
docstrings of ``json``, ``heapq``, ``csv`` and ``argparse`` (split on blank lines). Tokenised one
token per UTF-8 byte (id = byte % 1024), each prompt cut to 128 tokens, 4096 tokens in all.

Deterministic: with the same Python, torch and transformers versions (recorded in the file's
metadata) a rerun gives a byte-identical file (one CPU thread; zip entries carry fixed dates).

    python traces/make_sample.py            # writes traces/sample.npz
"""

from __future__ import annotations

import codecs
import dataclasses
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SHAPE = ("hidden_size=128,intermediate_size=256,num_hidden_layers=8,num_attention_heads=4,"
         "num_key_value_heads=4,num_experts=32,num_experts_per_tok=4,vocab_size=1024")
DOC_MODULES = ("json", "heapq", "csv", "argparse")
SEED, SEQ_LEN, MAX_TOKENS, BATCH = 0, 128, 4096, 8


def prompts() -> list[str]:
    """The Zen of Python line by line, then the listed modules' docstring paragraphs."""
    import importlib

    import this  # noqa: F401  (prints the Zen on import; its text is this.s, ROT13-encoded)
    zen = codecs.decode(sys.modules["this"].s, "rot13")
    out = [ln for ln in zen.splitlines() if ln.strip()]
    for name in DOC_MODULES:
        doc = importlib.import_module(name).__doc__ or ""
        out += [p.strip() for p in doc.split("\n\n") if p.strip()]
    return out


def main(dest: Path = HERE / "sample.npz") -> None:
    import contextlib
    import io

    import torch
    import transformers

    from placer.traces import collect as col

    torch.set_num_threads(1)  # multi-threaded float sums may differ in the last bit between runs
    with contextlib.redirect_stdout(io.StringIO()):
        texts = prompts()
    loaded = col.load_model("olmoe", from_config=SHAPE, seed=SEED, device="cpu", dtype="fp32")
    loaded = dataclasses.replace(loaded, name="olmoe-tiny-random (sample; random weights)")
    res = col.collect(loaded, texts, dest, batch_size=BATCH, seq_len=SEQ_LEN, max_tokens=MAX_TOKENS,
                      gate_weights=True, seed=SEED, extra={
                          "what": "RANDOM-WEIGHT tiny OLMoE-shaped model built from config; routing is "
                                  "not that of a trained model (skew and affinity are not realistic)",
                          "text": "Zen of Python (this.s, ROT13-decoded, one prompt per line), then the module "
                                  f"docstrings of {', '.join(DOC_MODULES)} split on blank lines",
                          "generator": "traces/make_sample.py",
                          "versions": {"python": platform.python_version(), "torch": torch.__version__,
                                       "transformers": transformers.__version__},
                          "torch_threads": 1})
    print(f"wrote {dest}: {res.num_layers} layers x {res.num_tokens} tokens x top-{res.top_k} of "
          f"{res.num_experts} experts, {res.num_sequences} sequences, {dest.stat().st_size} bytes")
    describe(dest)


def describe(path: Path) -> None:
    """Print what the sample offers: per-layer load skew (max/mean expert picks) and the
    normalised mutual information of consecutive layers' top-1 choices, next to the same with
    the next layer's choices shuffled (the finite-sample floor of NMI at this size)."""
    import numpy as np

    from placer.model.trace import Trace

    t = Trace.load(path)
    E, ids, top = t.num_experts, np.asarray(t.expert_ids), t.top1()
    loads = np.stack([np.bincount(ids[l].ravel(), minlength=E) for l in range(t.num_layers)])
    rng = np.random.default_rng(0)

    def nmi(a: np.ndarray, b: np.ndarray) -> float:
        p = np.zeros((E, E))
        np.add.at(p, (a, b), 1)
        p /= p.sum()
        pa, pb = p.sum(1), p.sum(0)
        nz = p > 0
        mi = (p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum()
        h = [-(q[q > 0] * np.log(q[q > 0])).sum() for q in (pa, pb)]
        return float(mi / np.sqrt(h[0] * h[1]))

    print("load max/mean per layer:", " ".join(f"{x:.2f}" for x in loads.max(1) / loads.mean(1)))
    print("top-1 NMI, layer l -> l+1:", " ".join(f"{nmi(top[l], top[l + 1]):.3f}" for l in range(t.num_layers - 1)))
    print("same, next layer shuffled:", " ".join(f"{nmi(top[l], rng.permutation(top[l + 1])):.3f}" for l in range(t.num_layers - 1)))


if __name__ == "__main__":
    main()
