"""The step-time model against published measurements: DeepEP's all-to-all kernels, DeepGEMM's grouped GEMMs.

Usage (repository root): ``python benchmarks/bench_calibration.py [--hardware h800] [--fit]``

DeepEP (github.com/deepseek-ai/DeepEP, ``docs/legacy.md`` "Performance", the V1 kernels) on H800
(NVLink ~160 GB/s measured, CX7 400 Gb/s RDMA, 8 GPUs a node):

- **normal kernels**: 4096 tokens a rank, hidden 7168, 256 experts, top-8 (internode: group-limited
  to ``min(nodes, 4)`` nodes, as ``tests/legacy/test_internode.py``), FP8 dispatch (7168 x (1 + 4/128)
  bytes a token), BF16 combine (2 x 7168). Published: "bottleneck bandwidth", the test's *logical*
  bytes over the kernel time: intranode the bytes a rank receives (its own tokens included),
  internode the tokens it sends to distinct nodes (its own node included).
- **low-latency kernels**: 128 tokens a rank, hidden 7168, 256 experts, top-8, every pick sent on
  its own (no dedup), FP8 dispatch (7168 + 7168/128 x 4 + 16 bytes), BF16 combine. Published: latency.

Routing is drawn as DeepEP's tests draw it (``|N(0, 1)| + 1`` scores, top-k: uniform), experts
``e // (E / G)`` on GPU ``e // (E / G)`` (contiguous). For each configuration this builds the
``[G, G]`` byte matrix the kernel moves and predicts its time with the model's
:func:`placer.cost.time.exchange_time` (latency + the slowest GPU's max(NVLink, NIC) bytes over
bandwidth x efficiency). The internode normal kernel is hierarchical: a token crosses to each
distinct remote node once (RDMA to the same local rank), then is forwarded over NVLink to that
node's GPUs; the ``flat`` column is what the project's ep accounting (one copy per distinct
remote GPU, all through the NIC when it crosses nodes) predicts for the same routing.

The published time is the published bandwidth's definition inverted: ``t = logical bytes / GB/s``
with the logical bytes counted on the same sampled routing (normal kernels), or the published
latency (low-latency kernels). ``--fit`` fits the two links' efficiencies and latencies by least squares on
``log(predicted / published)`` over every row (Nelder-Mead; prints the fit).

DeepGEMM (github.com/deepseek-ai/DeepGEMM, README at its first release, commit a6d97a1): FP8
grouped GEMMs, contiguous layout, on H800: the TFLOPS published against the dense FP8 peak give
the compute efficiency of an expert FFN (gate+up: N = 4096, K = 7168; down: N = 7168, K = 2048).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from placer.cost.time import exchange_time  # noqa: E402
from placer.model.hardware import hardware  # noqa: E402
from placer.model.topology import Topology  # noqa: E402

HIDDEN, EXPERTS, TOPK, GPN = 7168, 256, 8, 8
FP8_NORMAL = HIDDEN * (1 + 4 / 128)              # DeepEP test_internode's fp8_factor x bf16 bytes
FP8_LL = HIDDEN + HIDDEN / 128 * 4 + 16          # test_low_latency's num_fp8_bytes
BF16 = 2 * HIDDEN

# (kernel, EP, dispatch published, combine published): GB/s for normal, microseconds for low-latency
NORMAL = [("intranode", 8, 153, 158), ("internode", 16, 43, 43), ("internode", 32, 58, 57), ("internode", 64, 51, 50)]
LOW_LATENCY = [(8, 77, 114), (16, 118, 195), (32, 155, 273), (64, 173, 314), (128, 192, 369), (256, 194, 360)]
# DeepGEMM FP8 grouped contiguous GEMMs on H800: (groups, M per group, N, K, TFLOPS)
DEEPGEMM = [(4, 8192, 4096, 7168, 1297), (4, 8192, 7168, 2048, 1099), (8, 4096, 4096, 7168, 1288),
            (8, 4096, 7168, 2048, 1093)]


def routing(tokens: int, ep: int, rng: np.random.Generator, groups: int | None = None) -> np.ndarray:
    """``[tokens, TOPK]`` experts as DeepEP's tests draw them (group-limited to ``groups`` nodes)."""
    scores = np.abs(rng.standard_normal((tokens, EXPERTS), dtype=np.float32)) + 1
    if groups is not None:
        nodes = ep // GPN
        best = scores.reshape(tokens, nodes, -1).max(axis=2)
        keep = np.argpartition(-best, groups - 1, axis=1)[:, :groups]
        mask = np.zeros((tokens, nodes), bool)
        np.put_along_axis(mask, keep, True, axis=1)
        scores = np.where(np.repeat(mask, EXPERTS // nodes, axis=1), scores, 0.0)
    return np.argpartition(-scores, TOPK - 1, axis=1)[:, :TOPK]


def hits(ids: np.ndarray, groups: int) -> np.ndarray:
    """``[tokens, groups]`` whether a token picks an expert of each group (GPU or node)."""
    out = np.zeros((len(ids), groups), bool)
    out[np.arange(len(ids))[:, None], ids // (EXPERTS // groups)] = True
    return out


def normal_matrices(kind: str, ep: int, tokens: int, seed: int = 0):
    """Bytes-per-token-copy matrices ``[ep, ep]`` (copies) of the normal kernel, the flat per-GPU
    accounting, and the logical copies DeepEP's bandwidth is quoted on (per rank, mean)."""
    rng = np.random.default_rng(seed)
    nodes = ep // GPN
    kernel = np.zeros((ep, ep))
    flat = np.zeros((ep, ep))
    logical = 0.0
    for a in range(ep):
        ids = routing(tokens, ep, rng, None if kind == "intranode" else min(nodes, 4))
        gpu = hits(ids, ep)
        flat[a] = gpu.sum(axis=0)
        if kind == "intranode":
            kernel[a] = flat[a]
            logical += gpu.sum()                 # received (symmetric: what a rank sends = receives)
            continue
        node = hits(ids, nodes)
        logical += node.sum()                    # tokens sent to distinct nodes, own node included
        n, r = divmod(a, GPN)
        for m in range(nodes):
            if m != n:
                kernel[a, m * GPN + r] += node[:, m].sum()
            # forwarded on node m by its rank r to the GPUs the token picks there
            kernel[m * GPN + r, m * GPN:(m + 1) * GPN] += gpu[:, m * GPN:(m + 1) * GPN].sum(axis=0)
    np.fill_diagonal(kernel, 0.0)
    np.fill_diagonal(flat, 0.0)
    return kernel, flat, logical / ep


def low_latency_matrix(ep: int, tokens: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((ep, ep))
    for a in range(ep):
        ids = routing(tokens, ep, rng)
        out[a] = np.bincount((ids // (EXPERTS // ep)).ravel(), minlength=ep)
    np.fill_diagonal(out, 0.0)
    return out


def rows(hw, seed: int = 0, cache: dict | None = None) -> list[dict]:
    """Predicted against published seconds for every DeepEP configuration (module docstring)."""
    cache = {} if cache is None else cache
    out = []
    for kind, ep, d_bw, c_bw in NORMAL:
        if ("n", ep) not in cache:
            cache[("n", ep)] = normal_matrices(kind, ep, 4096, seed)
        kernel, flat, logical = cache[("n", ep)]
        topo = Topology.for_cluster(ep, GPN)
        for op, per, bw, m in (("dispatch", FP8_NORMAL, d_bw, kernel), ("combine", BF16, c_bw, kernel.T)):
            out.append({"kernel": f"normal {kind}", "ep": ep, "op": op,
                        "published_s": logical * per / (bw * 1e9), "published": f"{bw} GB/s",
                        "predicted_s": exchange_time(m * per, topo, hw),
                        "flat_s": exchange_time((flat if op == "dispatch" else flat.T) * per, topo, hw)})
    for ep, d_us, c_us in LOW_LATENCY:
        if ("ll", ep) not in cache:
            cache[("ll", ep)] = low_latency_matrix(ep, 128, seed)
        m = cache[("ll", ep)]
        topo = Topology.for_cluster(ep, GPN)
        for op, per, us, mm in (("dispatch", FP8_LL, d_us, m), ("combine", BF16, c_us, m.T)):
            t = exchange_time(mm * per, topo, hw)
            out.append({"kernel": "low-latency", "ep": ep, "op": op, "published_s": us * 1e-6,
                        "published": f"{us} us", "predicted_s": t, "flat_s": t})
    for r in out:
        r["ratio"] = r["predicted_s"] / r["published_s"]
    return out


def gemm_rows(hw) -> list[dict]:
    out = []
    for g, m, n, k, tflops in DEEPGEMM:
        flops = 2.0 * g * m * n * k
        out.append({"shape": f"{g} x {m} x {n} x {k}", "published_s": flops / (tflops * 1e12),
                    "predicted_s": flops / (hw.fp8_flops * hw.compute_efficiency), "implied_efficiency": tflops * 1e12 / hw.fp8_flops})
    for r in out:
        r["ratio"] = r["predicted_s"] / r["published_s"]
    return out


FIT_FIELDS = ("scale_up_efficiency", "scale_out_efficiency", "scale_up_latency_s", "scale_out_latency_s")


def fitted(hw, x) -> object:
    return dataclasses.replace(hw, **{f: float(v) for f, v in zip(FIT_FIELDS, x)})


def fit(hw, cache: dict) -> tuple:
    """The :data:`FIT_FIELDS` minimising the rms of ``log(predicted / published)`` over every row
    (Nelder-Mead from the preset, efficiencies kept in (0, 1], latencies >= 0), and that rms."""
    from scipy.optimize import minimize

    def err(x):
        if not (0 < x[0] <= 1 and 0 < x[1] <= 1 and x[2] > 0 and x[3] > 0):
            return 1e9
        return math.sqrt(np.mean([math.log(r["ratio"]) ** 2 for r in rows(fitted(hw, x), cache=cache)]))

    x0 = [getattr(hw, f) for f in FIT_FIELDS]
    res = minimize(err, x0, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 2000})
    return tuple(res.x), float(res.fun)


def markdown(table: list[dict], gemm: list[dict]) -> str:
    lines = ["| kernel | EP | op | published | published time | predicted | predicted / published | flat ep accounting / published |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['kernel']} | {r['ep']} | {r['op']} | {r['published']} | {r['published_s'] * 1e6:.0f} us "
                     f"| {r['predicted_s'] * 1e6:.0f} us | {r['ratio']:.2f} | {r['flat_s'] / r['published_s']:.2f} |")
    lines += ["", "| DeepGEMM FP8 grouped GEMM (groups x M x N x K) | published | predicted | predicted / published | implied efficiency |",
              "|---|---|---|---|---|"]
    for r in gemm:
        lines.append(f"| {r['shape']} | {r['published_s'] * 1e6:.0f} us | {r['predicted_s'] * 1e6:.0f} us "
                     f"| {r['ratio']:.2f} | {r['implied_efficiency']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hardware", default="h800")
    ap.add_argument("--fit", action="store_true", help="Fit the links' efficiencies and latencies (least squares).")
    args = ap.parse_args()
    hw = hardware(args.hardware)
    cache: dict = {}
    if args.fit:
        x, err = fit(hw, cache)
        print("fit: " + ", ".join(f"{f}={v:.3g}" for f, v in zip(FIT_FIELDS, x))
              + f"; rms |log ratio| {err:.3f} (x{math.exp(err):.3f})")
        hw = fitted(hw, x)
    table = rows(hw, cache=cache)
    logs = [abs(math.log(r["ratio"])) for r in table]
    print(f"hardware {hw.name}: efficiency up/out {hw.scale_up_efficiency}/{hw.scale_out_efficiency}, latency up/out "
          f"{hw.scale_up_latency_s * 1e6:.0f}/{hw.scale_out_latency_s * 1e6:.0f} us, compute_efficiency "
          f"{hw.compute_efficiency}; predicted/published {min(r['ratio'] for r in table):.2f}..{max(r['ratio'] for r in table):.2f}, "
          f"rms |log| {math.sqrt(np.mean(np.square(logs))):.3f}")
    print(markdown(table, gemm_rows(hw)))


if __name__ == "__main__":
    main()
