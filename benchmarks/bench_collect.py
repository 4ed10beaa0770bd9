"""Collection overhead: a forward pass with and without the router hooks (goal: < 5 %).

Builds a small OLMoE-shaped model from its config with random weights (no download), then
times, interleaved, (a) the plain forward pass and (b) the forward pass with the collector's
hooks plus :meth:`RouterRecorder.take` (moving the real tokens' ids and weights to numpy), on
the same right-padded batch. Reports wall-clock and process CPU time (CPU time is less
disturbed by other processes on a shared machine), min and median over repeats; the overhead is
the ratio of medians minus one. Writing shards to disk is not included.

    python benchmarks/bench_collect.py [--device cpu|cuda] [--dtype fp32|bf16] [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from placer.traces import collect as col  # noqa: E402
from placer.traces.collect.collector import forward  # noqa: E402

SHAPE = ("hidden_size=128,intermediate_size=256,num_hidden_layers=8,num_attention_heads=4,"
         "num_key_value_heads=4,num_experts=32,num_experts_per_tok=4,vocab_size=1024")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    device = col.resolve_device(args.device)
    loaded = col.load_model("olmoe", from_config=SHAPE, seed=0, device=device, dtype=args.dtype)
    net, config = loaded.model, loaded.config
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 1024, (args.batch, args.seq), generator=g)
    mask = torch.ones_like(ids)
    for b in range(args.batch):  # ragged lengths, so the mask matters
        mask[b, args.seq - (args.seq // (2 * args.batch)) * b:] = 0
    ids, mask = ids.to(device), mask.to(device)
    sites = col.find_routers(net, config)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def plain() -> tuple[float, float]:
        sync()
        t, c = time.perf_counter(), time.process_time()
        forward(net, config, ids, mask)
        sync()
        return time.perf_counter() - t, time.process_time() - c

    def hooked() -> tuple[float, float]:
        rec = col.RouterRecorder(sites, gate_weights=True)
        try:
            sync()
            t, c = time.perf_counter(), time.process_time()
            forward(net, config, ids, mask)
            rec.take(mask.bool())
            sync()
            return time.perf_counter() - t, time.process_time() - c
        finally:
            rec.close()

    with torch.inference_mode():
        for _ in range(3):  # warm-up
            plain()
            hooked()
        a, b = [], []
        for _ in range(args.repeats):
            a.append(plain())
            b.append(hooked())
    tokens = int(mask.sum())

    def stats(x: list[tuple[float, float]], i: int) -> dict[str, float]:
        v = [p[i] for p in x]
        return {"min": min(v), "median": statistics.median(v)}

    def overhead(i: int) -> float:
        return statistics.median(p[i] for p in b) / statistics.median(p[i] for p in a) - 1

    res = {
        "device": device, "dtype": args.dtype or ("bf16" if device == "cuda" else "fp32"),
        "model": f"olmoe from config: {SHAPE}", "moe_layers": len(sites),
        "batch": list(ids.shape), "real_tokens": tokens, "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "plain_wall_s": stats(a, 0), "hooked_wall_s": stats(b, 0),
        "plain_cpu_s": stats(a, 1), "hooked_cpu_s": stats(b, 1),
        "overhead_wall_median": overhead(0), "overhead_cpu_median": overhead(1),
        "tokens_per_s_hooked_wall": tokens / statistics.median(p[0] for p in b),
    }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
