"""The calibrated h800 preset against published measurements (truths from publications, not from our code).

DeepEP ``docs/legacy.md`` "Performance" (H800, 8 GPUs a node, hidden 7168, 256 experts, top-8,
FP8 dispatch, BF16 combine) and DeepGEMM's README (commit a6d97a1, FP8 grouped contiguous GEMMs
on H800). The byte matrices are the *expected* ones under DeepEP's uniform test routing,
built here in closed form (``benchmarks/bench_calibration.py`` samples them instead), and the
model's :func:`exchange_time` predicts each kernel's time. ``docs/time-model.md`` states the
tolerance: every calibrated row within 0.95-1.08x; checked here at 12 %.
"""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from placer.cost.time import exchange_time
from placer.model.hardware import hardware
from placer.model.topology import Topology

H, E, K, GPN = 7168, 256, 8, 8
FP8_NORMAL, FP8_LL, BF16 = H * (1 + 4 / 128), H + H / 128 * 4 + 16, 2 * H
TOLERANCE = 0.12
HW = hardware("h800")


def p_hit(experts_in_group: int) -> float:
    """Chance a token's K uniform distinct picks hit a given group of experts."""
    return 1 - comb(E - experts_in_group, K) / comb(E, K)


def check(predicted: float, published: float) -> None:
    assert predicted / published == pytest.approx(1.0, abs=TOLERANCE), (predicted, published)


@pytest.mark.parametrize("op, per, bandwidth", [("dispatch", FP8_NORMAL, 153e9), ("combine", BF16, 158e9)])
def test_normal_intranode_ep8(op, per, bandwidth):
    tokens, G = 4096, 8
    copies = tokens * p_hit(E // G)                      # to each other GPU
    M = np.full((G, G), copies * per)
    np.fill_diagonal(M, 0.0)
    published = G * copies * per / bandwidth             # DeepEP: bytes a rank receives, its own included
    check(exchange_time(M, Topology.for_cluster(G, GPN), HW), published)


@pytest.mark.parametrize("op, per, bandwidth", [("dispatch", FP8_NORMAL, 58e9), ("combine", BF16, 57e9)])
def test_normal_internode_ep32(op, per, bandwidth):
    """4 nodes, group limit min(4, nodes) = 4: uniform; one RDMA copy per remote node, NVLink forwarding."""
    tokens, G = 4096, 32
    nodes = G // GPN
    node_copies, gpu_copies = tokens * p_hit(E // nodes), tokens * p_hit(E // G)
    M = np.zeros((G, G))
    for a in range(G):
        n, r = divmod(a, GPN)
        for m in range(nodes):
            if m != n:
                M[a, m * GPN + r] = node_copies * per
            else:
                # rank r of node n forwards what reached it from every node (its own tokens too)
                M[a, n * GPN:(n + 1) * GPN] = nodes * gpu_copies * per
        M[a, a] = 0.0
    if op == "combine":
        M = M.T
    published = nodes * node_copies * per / bandwidth    # DeepEP: tokens to distinct nodes, own included
    check(exchange_time(M, Topology.for_cluster(G, GPN), HW), published)


@pytest.mark.parametrize("G, dispatch_us, combine_us", [(8, 77, 114), (128, 192, 369)])
def test_low_latency(G, dispatch_us, combine_us):
    """128 tokens a rank, every pick its own message (no dedup)."""
    picks = 128 * K / G                                  # to each GPU
    topo = Topology.for_cluster(G, GPN)
    for per, us in ((FP8_LL, dispatch_us), (BF16, combine_us)):
        M = np.full((G, G), picks * per)
        np.fill_diagonal(M, 0.0)
        check(exchange_time(M, topo, HW), us * 1e-6)


def test_deepgemm_expert_ffn():
    """DeepSeek-V3's FFN: gate+up (4 x 8192 x N 4096 x K 7168, 1297 TFLOPS) and down (N 7168, K 2048, 1099)."""
    flops = [2.0 * 4 * 8192 * 4096 * 7168, 2.0 * 4 * 8192 * 7168 * 2048]
    published = flops[0] / 1297e12 + flops[1] / 1099e12
    predicted = sum(flops) / (HW.flops("fp8") * HW.compute_efficiency)
    assert predicted / published == pytest.approx(1.0, abs=0.03)
