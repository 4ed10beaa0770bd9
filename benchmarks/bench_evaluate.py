"""Evaluation speed at DeepSeek-V3 shape: 58 MoE layers x 256 experts, top-8, 64 GPUs (8 per node).

Builds a synthetic 1 M-token trace (skewed loads, some inter-layer affinity, 8 distinct experts
per token), writes it as a native trace so evaluation reads it memory-mapped chunk by chunk, and
times each cost model on a replica-free contiguous placement and on one with G replicas (the
G most loaded experts of each layer get a second slot on another GPU; S = 5 at 64 GPUs).

    /work/venv/bin/python benchmarks/bench_evaluate.py [--tokens 1000000] [--gpus 64] [--json]

Results are recorded in docs/benchmarks.md (## Evaluation speed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from placer.cost import coherent_cost, ep_cost, load_cost  # noqa: E402
from placer.model.placement import Placement  # noqa: E402
from placer.model.topology import Topology  # noqa: E402
from placer.model.trace import Trace  # noqa: E402

L, E, K, G, GPN = 58, 256, 8, 64, 8


def synthetic_trace(tokens: int, seed: int = 0, seq_len: int = 4096) -> Trace:
    """Expert k of a token comes from block k of 32 experts (so the 8 are distinct), with a
    skewed choice inside the block, kept from the previous layer with probability 0.5 (affinity),
    and a per-layer permutation of expert ids."""
    rng = np.random.default_rng(seed)
    ids = np.empty((L, tokens, K), np.uint8)
    popularity = 1.0 / np.arange(1, 33) ** 0.8
    popularity /= popularity.sum()
    r = rng.choice(32, size=(tokens, K), p=popularity).astype(np.int16)
    base = (np.arange(K) * 32).astype(np.int16)
    for l in range(L):
        if l:
            redraw = rng.random((tokens, K)) < 0.5
            r = np.where(redraw, rng.choice(32, size=(tokens, K), p=popularity).astype(np.int16), r)
        perm = rng.permutation(E).astype(np.uint8)
        ids[l] = perm[base + r]
    offsets = np.unique(np.concatenate([np.arange(0, tokens, seq_len), [tokens]])).astype(np.int64)
    return Trace(ids, E, seq_offsets=offsets, model="synthetic DeepSeek-V3 shape")


def replicated_placement(trace_load: np.ndarray, G: int = G, seed: int = 0) -> Placement:
    """Contiguous experts plus a second slot for the G most loaded experts of each layer."""
    rng = np.random.default_rng(seed)
    per = E // G
    S = (E + G) // G
    phy = np.empty((L, G * S), np.int64)
    for l in range(L):
        hot = np.argsort(-trace_load[l], kind="stable")[:G]
        home = np.arange(E) // (E // G)
        # give GPU g one extra expert whose first copy is on another GPU
        extra = np.empty(G, np.int64)
        for attempt in range(100):
            extra = rng.permutation(hot)
            if np.all(home[extra] != np.arange(G)):
                break
        rows = [np.concatenate([np.arange(g * per, (g + 1) * per), [extra[g]]]) for g in range(G)]
        phy[l] = np.concatenate(rows)
    return Placement(phy, E, G, min(GPN, G)).validate()


def timed(fn):
    """(wall seconds, CPU seconds of this process, result): CPU time is steadier on a shared machine."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--gpus", type=int, default=G, help="GPUs (8 per node); E / G experts each")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    gpus = args.gpus
    t_gen, _, trace = timed(lambda: synthetic_trace(args.tokens))
    topo = Topology.uniform(gpus, min(GPN, gpus))
    contiguous = Placement.from_gpu_of(np.tile(np.arange(E) // (E // gpus), (L, 1)), gpus, min(GPN, gpus))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.npz")
        trace.save(path)
        del trace
        mm = Trace.load(path)
        replicated = replicated_placement(_expert_loads(mm), gpus)
        for name, pl in (("contiguous (no replicas)", contiguous),
                         (f"{gpus} replicas (S={replicated.slots_per_gpu})", replicated)):
            t_c, cpu_c, c = timed(lambda: coherent_cost(mm, pl, topo))
            t_e, cpu_e, e = timed(lambda: ep_cost(mm, pl, topo, hidden_size=7168, dtype_bytes=2))
            t_l, cpu_l, lo = timed(lambda: load_cost(mm, pl))
            rows.append({"placement": name, "coherent_s": t_c, "ep_s": t_e, "load_s": t_l,
                         "coherent_cpu_s": cpu_c, "ep_cpu_s": cpu_e, "load_cpu_s": cpu_l,
                         "coherent_per_transition": c.per_transition,
                         "ep_copies_per_token_layer": e.copies_per_token_layer,
                         "ep_time_s": e.time_s, "mean_imbalance": lo.mean_imbalance})
    info = {"tokens": args.tokens, "load_average": os.getloadavg(), "shape": f"{L} x {E}, top-{K}, {gpus} GPUs ({min(GPN, gpus)} per node)",
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "generate_s": t_gen, "rows": rows}
    if args.json:
        print(json.dumps(info, indent=1))
        return
    print(f"{info['tokens']} tokens, {info['shape']}, {info['machine']}, "
          f"load average {info['load_average'][0]:.1f}")
    print("seconds, wall (CPU of this process)")
    print(f"{'placement':26s} {'coherent':>16s} {'ep':>16s} {'load':>16s}")
    for r in rows:
        cells = [f"{r[k + '_s']:.2f} ({r[k + '_cpu_s']:.2f})" for k in ("coherent", "ep", "load")]
        print(f"{r['placement']:26s} " + " ".join(f"{c:>16s}" for c in cells))


def _expert_loads(trace: Trace) -> np.ndarray:
    from placer.model.profile import Profile
    return Profile.from_trace(trace, coact=False, trans=False).load


if __name__ == "__main__":
    main()
