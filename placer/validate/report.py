"""The replay's report (rank 0): outputs against the reference, bytes against the cost model, the
proof that the placement was used, and consistent timings.

Checks (``passed`` is their conjunction; ``failed_checks`` names those that failed):

- ``outputs_match``: final hidden states equal the single-process reference with the trace's
  gate weights, and ``outputs_match_unit_weights`` with every gate weight 1 (so an expert
  computed wrongly shows even where the trace's weights are tiny or zero);
- ``bytes_match``: measured off-rank bytes equal the cost model's, in total and per link;
- ``picks_served_once``: every (layer, token, pick) was computed exactly once over all ranks;
- ``experts_only_local``: no rank built an expert its placement does not give it (the banks
  refuse to, so a run that finished has this true; it is reported for the record).

Timings: each timed iteration records, per rank, its iteration time and per-layer wall and
collective times. The iteration's time is its slowest rank's, and every figure reported for an
iteration comes from that same rank and iteration, so a communication time never exceeds the
layer and the iteration it is part of. The iteration reported is the median one (the lower
median for an even count).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from placer.cost import default_home
from placer.validate import routing
from placer.validate.model import ExpertBank, held_experts, reference

GLOO_NOTE = ("gloo runs the collectives on this machine's CPUs: these times do not predict NCCL times on GPUs "
             "(the bytes do; time a GPU run with --dist-backend nccl)")


def _outputs(outs: list, ref: np.ndarray, rtol: float, atol: float) -> tuple[bool, float]:
    got = np.zeros_like(ref)
    seen = np.zeros(ref.shape[0], bool)
    for toks, rows in outs:
        got[toks] = rows
        seen[toks] = True
    if not seen.all():
        return False, float("inf")
    return bool(np.allclose(got, ref, rtol=rtol, atol=atol)), float(np.max(np.abs(got - ref)))


def median_sample(samples: list[np.ndarray]) -> np.ndarray:
    """``[1 + 2L]`` the slowest rank's figures of the median iteration (see the module docstring);
    ``samples``: per iteration ``[G, 1 + 2L]`` (iteration, layer times, collective times)."""
    slowest = [s[int(np.argmax(s[:, 0]))] for s in samples]
    order = np.argsort([s[0] for s in slowest], kind="stable")
    return slowest[int(order[(len(order) - 1) // 2])]


def build_report(cfg, x0: np.ndarray, gathered: dict, times: dict, built: list) -> dict[str, Any]:
    """Compare with the references and the cost model; shape the JSON report."""
    from placer.validate.predict import predict_bytes
    from placer.validate.worker import _placement, _trace
    L, T, K = cfg.expert_ids.shape
    G = cfg.world_size
    ids = np.asarray(cfg.expert_ids, np.int64)
    bank = ExpertBank(cfg.seed, cfg.hidden, cfg.ffn, cfg.ffn_type)
    refs = {"outs": reference(ids, routing.gate_weights(cfg.gate, (L, T, K)), x0, bank),
            "outs_unit": reference(ids, np.ones((L, T, K), np.float32), x0, bank)}
    home = default_home(_trace(cfg), G)
    coherent = cfg.mode == "coherent"
    n_pred = L - 1 if coherent else L
    out: dict[str, Any] = {}
    for name, phy in (("placement", cfg.phy2log), ("baseline", cfg.baseline)):
        g = gathered[name]
        match, err = _outputs(g["outs"], refs["outs"], cfg.rtol, cfg.atol)
        match_unit, err_unit = _outputs(g["outs_unit"], refs["outs_unit"], cfg.rtol, cfg.atol)
        tr = g["traffic"]                      # [L, G, G] bytes
        counted = tr[:n_pred]
        pred = predict_bytes(_trace(cfg), _placement(phy, cfg), cfg.mode, cfg.hidden, home)
        measured = int(counted.sum())
        traffic_m = counted.sum(axis=0)
        sample = median_sample(times[name])
        local = all(set(map(tuple, b[name])) <= held_experts(phy, r, G) for r, b in enumerate(built))
        out[name] = {
            "outputs_match": match, "max_abs_error": err,
            "outputs_match_unit_weights": match_unit, "max_abs_error_unit_weights": err_unit,
            "picks_served_once": bool(np.all(g["served"] == 1) and np.all(g["served_unit"] == 1)),
            "experts_only_local": local,
            "bytes_measured": measured, "bytes_predicted": pred["bytes"],
            "bytes_match": measured == pred["bytes"] and (
                pred["traffic"] is None or traffic_m.tolist() == pred["traffic"]),
            "predicted_by": pred["predicted_by"],
            "traffic_measured": traffic_m.tolist(), "traffic_predicted": pred["traffic"],
            "bytes_final_gather": int(tr[L - 1].sum()) if coherent else 0,
            "meta_bytes": g["meta_bytes"],
            "time_s": float(sample[0]),
            "comm_time_s": float(sample[1 + L:].sum()),
            "per_layer_measured": counted.sum(axis=(1, 2)).tolist(),
            "per_layer_predicted": pred["per_layer"],
            "layer_time_s": sample[1:1 + L].tolist(),
            "layer_comm_s": sample[1 + L:].tolist(),
        }
    return _shape(cfg, out, built)


CHECKS = ("outputs_match", "outputs_match_unit_weights", "bytes_match", "picks_served_once", "experts_only_local")


def _shape(cfg, out: dict[str, Any], built: list) -> dict[str, Any]:
    L, T, K = cfg.expert_ids.shape
    p, b = out["placement"], out["baseline"]
    n_pred = L - 1 if cfg.mode == "coherent" else L
    per_layer = []
    for l in range(L):
        row = {"layer": l,
               "time_placement_s": p["layer_time_s"][l], "time_baseline_s": b["layer_time_s"][l],
               "comm_placement_s": p["layer_comm_s"][l], "comm_baseline_s": b["layer_comm_s"][l]}
        if l < n_pred:
            row.update(bytes_measured=p["per_layer_measured"][l], bytes_predicted=p["per_layer_predicted"][l],
                       baseline_bytes_measured=b["per_layer_measured"][l],
                       baseline_bytes_predicted=b["per_layer_predicted"][l])
        per_layer.append(row)
    checks = {c: bool(p[c] and b[c]) for c in CHECKS}
    return {
        "mode": cfg.mode, "backend": cfg.backend, "world_size": cfg.world_size, "layers": L, "tokens": T, "top_k": K,
        "num_experts": cfg.num_experts, "hidden_size": cfg.hidden, "ffn_size": cfg.ffn,
        "ffn_type": cfg.ffn_type, "dtype": "float32", "iters": cfg.iters, "seed": cfg.seed,
        "baseline": cfg.baseline_name, **cfg.info,
        "passed": all(checks.values()), "failed_checks": [c for c, ok in checks.items() if not ok], **checks,
        "experts_built_per_rank": [len(x["placement"]) for x in built],
        "bytes_measured": p["bytes_measured"], "bytes_predicted": p["bytes_predicted"],
        "baseline_bytes_measured": b["bytes_measured"], "baseline_bytes_predicted": b["bytes_predicted"],
        "bytes_ratio": p["bytes_measured"] / b["bytes_measured"] if b["bytes_measured"] else None,
        "time_placement_s": p["time_s"], "time_baseline_s": b["time_s"],
        "time_ratio": p["time_s"] / b["time_s"] if b["time_s"] else None,
        "comm_time_placement_s": p["comm_time_s"], "comm_time_baseline_s": b["comm_time_s"],
        "comm_time_ratio": p["comm_time_s"] / b["comm_time_s"] if b["comm_time_s"] else None,
        "notes": [GLOO_NOTE] if cfg.backend == "gloo" else [],
        "placement": {k: v for k, v in p.items() if not k.startswith(("per_layer", "layer_"))},
        "baseline_detail": {k: v for k, v in b.items() if not k.startswith(("per_layer", "layer_"))},
        "per_layer": per_layer,
    }
