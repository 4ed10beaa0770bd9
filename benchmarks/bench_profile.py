"""Benchmark: building a Profile from a memory-mapped trace of DeepSeek-V3 shape.

    python benchmarks/bench_profile.py                      # 58 layers, 256 experts, top-8, 1 M tokens
    python benchmarks/bench_profile.py --tokens 100000      # quicker

A child process writes a synthetic trace (distinct top-8 ids per token, skewed popularity) to a
temporary native ``.npz``; this process memory-maps it and runs ``Profile.from_trace`` on one
core, twice: transitions only (``coact=False``, what ``inspect`` does) and the full profile
(``coact=True``, what ``profile`` does). It reports:

- counted pairs per second of wall time and of this process's CPU time (the machine may be
  shared: the 1-minute load average is printed too): ``T (L-1) K^2`` transition pairs, plus ``T L K^2`` co-activation pairs
  for the full profile (every (i, j) of a token's K x K picks counts as one pair, as in the
  Profile's definitions), divided by wall time;
- peak anonymous memory (heap, sampled after every chunk from /proc/self/status ``RssAnon``),
  which is what the chunk size bounds; and the process's ``VmHWM``, which also counts the
  page-cache pages of the memory-mapped file (reclaimable, not owned by the process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from placer.model.profile import Profile  # noqa: E402
from placer.model.trace import Trace  # noqa: E402


def write_trace(path: str, L: int, T: int, K: int, E: int, seed: int) -> None:
    """Distinct ids per token: ``(base + j * step) % E`` with odd ``step`` (E a power of two)."""
    rng = np.random.default_rng(seed)
    ids = np.empty((L, T, K), np.uint8 if E <= 256 else np.uint16)
    j = np.arange(K)
    pop = 1.0 / np.arange(1, E + 1) ** 0.8
    for l in range(L):
        base = rng.choice(E, size=T, p=pop / pop.sum())
        step = 2 * rng.integers(0, E // 2, size=T) + 1
        ids[l] = (base[:, None] + j[None, :] * step[:, None]) % E
    Trace(expert_ids=ids, num_experts=E, model="synthetic DeepSeek-V3 shape").save(path)


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def run(path: str, chunk: int, coact: bool) -> dict:
    trace = Trace.load(path, mmap=True, validate=False)
    L, T, K = trace.num_layers, trace.num_tokens, trace.top_k
    before = status_kb("RssAnon")
    peak = [before]

    def sample(_n: int) -> None:
        peak[0] = max(peak[0], status_kb("RssAnon"))

    t0, c0 = time.perf_counter(), time.process_time()
    prof = Profile.from_trace(trace, chunk_tokens=chunk, coact=coact, progress=sample)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    pairs = T * (L - 1) * K * K + (T * L * K * K if coact else 0)
    assert prof.load.sum() == T * L * K and prof.trans.sum() == T * (L - 1) * K * K
    return {"coact": coact, "seconds": round(dt, 2), "cpu_seconds": round(cpu, 2), "pairs": pairs,
            "pairs_per_s": pairs / dt, "pairs_per_cpu_s": pairs / cpu, "load_avg_1m": os.getloadavg()[0],
            "rss_anon_before_mb": round(before / 1024, 1), "peak_rss_anon_mb": round(peak[0] / 1024, 1), "vm_hwm_mb": round(status_kb("VmHWM") / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=58)
    ap.add_argument("--experts", type=int, default=256)
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--chunk-tokens", type=int, default=65536)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-only", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.write_only:
        write_trace(a.write_only, a.layers, a.tokens, a.top_k, a.experts, a.seed)
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.npz")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--write-only", path, "--layers", str(a.layers), "--experts",
                        str(a.experts), "--top-k", str(a.top_k), "--tokens", str(a.tokens), "--seed", str(a.seed)],
                       check=True)
        size = os.path.getsize(path)
        print(f"wrote {size / 2**20:.0f} MiB trace in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        results = [run(path, a.chunk_tokens, coact) for coact in (False, True)]
    shape = {"layers": a.layers, "experts": a.experts, "top_k": a.top_k, "tokens": a.tokens,
             "chunk_tokens": a.chunk_tokens, "trace_mib": round(size / 2**20, 1)}
    for r in results:
        print(f"coact={r['coact']!s:5}  {r['seconds']:7.2f} s  {r['pairs_per_s'] / 1e6:7.1f} M pairs/s  "
              f"(CPU {r['cpu_seconds']:.2f} s: {r['pairs_per_cpu_s'] / 1e6:.1f} M pairs/CPU-s, load {r['load_avg_1m']:.1f})  "
              f"RssAnon {r['rss_anon_before_mb']:.0f} MB before, peak {r['peak_rss_anon_mb']:.0f} MB  VmHWM {r['vm_hwm_mb']:.0f} MB")
    print(json.dumps({"shape": shape, "results": results}))


if __name__ == "__main__":
    main()
