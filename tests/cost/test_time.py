"""The step-time model's pieces against hand-computed values (docs/time-model.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from placer.cost.time import StepSpec, active_experts, exchange_time, expert_times
from placer.errors import PlacerError
from placer.model.experts import ExpertShape
from placer.model.hardware import hardware
from placer.model.topology import Topology
from placer.solvers.tradeoff import REBALANCED, worst_case

HW = hardware("h100")


def test_exchange_within_a_node_is_latency_plus_the_busiest_link():
    M = np.zeros((4, 4))
    M[0, 1], M[0, 2], M[3, 1] = 1e6, 2e6, 4e6            # GPU 1 receives 5e6, GPU 0 sends 3e6
    up = HW.scale_up_bytes_per_s * HW.scale_up_efficiency
    assert exchange_time(M, Topology.for_cluster(4), HW) == pytest.approx(HW.scale_up_latency_s + 5e6 / up)
    assert exchange_time(np.zeros((4, 4)), Topology.for_cluster(4), HW) == 0.0


def test_exchange_across_nodes_takes_the_slower_of_nvlink_and_nic():
    M = np.zeros((16, 16))
    M[0, 8] = 1e6                                        # crosses nodes
    M[0, 1] = 2e6                                        # stays in node 0
    up = HW.scale_up_bytes_per_s * HW.scale_up_efficiency
    out = HW.scale_out_bytes_per_s * HW.scale_out_efficiency
    want = HW.scale_out_latency_s + max(2e6 / up, 1e6 / out)
    assert exchange_time(M, Topology.for_cluster(16, 8), HW) == pytest.approx(want)


def test_roofline_decode_reads_weights_prefill_computes():
    shape = ExpertShape(1024, 512)
    rg = np.array([[[0], [0], [1], [1]]])                # [L=1, E=4, R=1]: experts 0, 1 on GPU 0
    pick = np.array([[0.5, 0.5, 0.5, 0.5]])              # top-2 of 4, uniform
    # decode: 4 tokens -> each expert active with probability 1 - 0.5^4
    act = active_experts(pick, rg, 4, 2)
    assert act == pytest.approx(np.full((1, 2), 2 * (1 - 0.5 ** 4)))
    spec = StepSpec(HW, shape, 4, "decode")
    t = expert_times(np.full((1, 2), 4.0), act, spec)
    memory = act * shape.expert_bytes / (HW.hbm_bytes_per_s * HW.memory_efficiency)
    assert t == pytest.approx(memory)
    # prefill: 8192 tokens, 8192 picks a GPU: the FLOPs bound
    picks = np.full((1, 2), 8192.0)
    t = expert_times(picks, active_experts(pick, rg, 8192, 2), StepSpec(HW, shape, 8192))
    assert t == pytest.approx(picks * shape.flops_per_pick / (HW.bf16_flops * HW.compute_efficiency))


def test_hardware_file_takes_its_base_and_refuses_unknown_fields(tmp_path):
    f = tmp_path / "mine.json"
    f.write_text(json.dumps({"base": "h100", "scale_out_bytes_per_s": 25e9}))
    hw = hardware(f)
    assert hw.name == "mine" and hw.scale_out_bytes_per_s == 25e9 and hw.hbm_bytes_per_s == HW.hbm_bytes_per_s
    f.write_text(json.dumps({"base": "h100", "nic": 1}))
    with pytest.raises(PlacerError, match="unknown hardware field 'nic'"):
        hardware(f)


def _row(fold, cand, cap, step, imb):
    return {"fold": fold, "candidate": cand, "max_imbalance": cap, "step_s": step, "window_imbalance": imb}


def test_worst_case_over_windows_picks_the_least_worst_ratio_and_keeps_eplb_balance():
    rows = [_row(0, "contiguous", None, 12, 1.6), _row(0, "eplb", None, 10, 1.05),
            _row(0, "partition", 1.1, 9, 1.2), _row(0, "partition", 1.02, 9.5, 1.04),
            _row(1, "contiguous", None, 12, 1.6), _row(1, "eplb", None, 10, 1.06),
            _row(1, "partition", 1.1, 11, 1.3), _row(1, "partition", 1.02, 9.8, 1.05),
            {"fold": 1, "candidate": "partition", "max_imbalance": 1.01, "skipped": "infeasible"},
            _row(0, "partition", 1.01, 5, 1.0)]          # scored on one fold only: not a candidate
    out = {(r["candidate"], r["max_imbalance"]): r for r in worst_case(rows, 2, replicas=False)}
    assert set(out) == {("contiguous", None), ("eplb", None), ("partition", 1.1), ("partition", 1.02)}
    assert out["partition", 1.1]["worst_ratio"] == pytest.approx(1.1)     # fold 1: 11 / 10
    assert out["partition", 1.02]["worst_ratio"] == pytest.approx(0.98)
    assert min(out.values(), key=lambda r: r["worst_ratio"])["max_imbalance"] == 1.02
    kept = {(r["candidate"], r["max_imbalance"]) for r in worst_case(rows, 2, replicas=True)}
    assert kept == {("eplb", None), ("partition", 1.02)}                  # worst 1.05 <= EPLB's 1.06
    # rebalanced candidates of the solver are exempt from the veto; contiguous is not
    kept = {(r["candidate"], r["max_imbalance"]) for r in worst_case(rows, 2, replicas=True, exempt=("partition",))}
    assert kept == {("eplb", None), ("partition", 1.02), ("partition", 1.1)}
    # contiguous rebalanced is exempt too; the raw layout stays under the veto
    rows += [_row(0, REBALANCED, None, 11.9, 1.3), _row(1, REBALANCED, None, 11.9, 1.3)]
    kept = {(r["candidate"], r["max_imbalance"])
            for r in worst_case(rows, 2, replicas=True, exempt=("partition", REBALANCED))}
    assert kept == {("eplb", None), ("partition", 1.02), ("partition", 1.1), (REBALANCED, None)}
