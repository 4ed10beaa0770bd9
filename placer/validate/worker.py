"""One rank of the replay: build local experts, replay every layer with all_to_all_single, time it.

Every rank runs :func:`run_rank` inside an initialised process group. Per layer and placement it
exchanges row counts (``all_to_all_single`` on int64), the rows' routing metadata (int64), and the
hidden-state rows (fp32, uneven split sizes) as :mod:`placer.validate.routing` plans them. Bytes
are counted from the split sizes actually passed to the hidden-state collectives; metadata and
count exchanges are reported apart (``meta_bytes``). Rank 0 gathers outputs, runs the
single-process reference and the cost model's prediction, and builds the report.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from placer.cost import default_home
from placer.validate import routing
from placer.validate.model import ExpertBank, experts_mix, initial_activations, reference, rmsnorm

FAIL_ENV = "MOE_PLACE_VALIDATE_FAIL_RANK"  # test hook: "RANK" or "RANK:LAYER" exits that rank mid-replay
ROW_DTYPE_BYTES = 4


@dataclass
class ReplayConfig:
    """Everything a rank needs; shapes: ``expert_ids``/``gate`` ``[L, T, K]``, ``offsets`` ``[S+1]``,
    ``phy2log``/``baseline`` ``[L, G*S]``."""

    expert_ids: np.ndarray
    gate: np.ndarray | None
    offsets: np.ndarray
    num_experts: int
    phy2log: np.ndarray
    baseline: np.ndarray
    baseline_name: str
    world_size: int
    mode: str = "ep"
    backend: str = "gloo"
    hidden: int = 64
    ffn: int = 128
    ffn_type: str = "swiglu"
    iters: int = 3
    warmup: int = 1
    seed: int = 0
    collective_timeout_s: float = 120.0
    atol: float = 1e-4
    rtol: float = 1e-4
    info: dict[str, Any] = field(default_factory=dict)
    # read from FAIL_ENV by the caller: forked ranks would see the fork server's old environment
    fail_spec: str | None = None


def _placement(phy2log: np.ndarray, cfg: ReplayConfig):
    from placer.model.placement import Placement
    return Placement(phy2log, cfg.num_experts, cfg.world_size)


def _trace(cfg: ReplayConfig):
    from placer.model.trace import Trace
    return Trace(expert_ids=cfg.expert_ids, num_experts=cfg.num_experts, gate_weights=cfg.gate,
                 seq_offsets=cfg.offsets)


def _fail_point(spec: str | None, rank: int) -> int | None:
    """The layer at which the fault-injection hook (``FAIL_ENV``'s value) kills this rank, or None."""
    if not spec:
        return None
    r, _, layer = spec.partition(":")
    return int(layer or 1) if int(r) == rank else None


class Replayer:
    """Plans and buffers of one placement on one rank, and its replay loop."""

    def __init__(self, cfg: ReplayConfig, phy2log: np.ndarray, rank: int, bank: ExpertBank, device):
        self.cfg, self.rank, self.bank, self.device = cfg, rank, bank, device
        G = cfg.world_size
        self.ids = np.asarray(cfg.expert_ids, np.int64)
        L, T, K = self.ids.shape
        self.shape = (L, T, K)
        self.gate = routing.gate_weights(cfg.gate, self.shape)
        self.home = default_home(_trace(cfg), G)
        self.my_tok = np.flatnonzero(self.home == rank)
        pl = _placement(phy2log, cfg)
        self.layers: list[dict[str, Any]] = []
        if cfg.mode == "ep":
            for l in range(L):
                plan = routing.ep_layer(routing.ep_dest(self.ids[l], self.home, pl, l), self.home, G)
                mine = plan.rows_of(rank)
                tok = plan.tok[mine]
                self.layers.append({
                    "send": plan.counts[rank].copy(),
                    "rows": self._t(np.searchsorted(self.my_tok, tok)),
                    "meta": self._t(np.stack([tok, plan.mask[mine]], axis=1)),
                })
        else:
            gpu = routing.coherent_gpu_of(pl)
            self.top1 = routing.top1_column(cfg.gate, self.shape)
            rank_of = [gpu[l][self.ids[l]] for l in range(L)]
            self.inst = [routing.instances(rank_of[l], rank) for l in range(L)]
            for l in range(L):
                plan = (routing.coherent_transition(rank_of[l], rank_of[l + 1], G) if l + 1 < L
                        else routing.coherent_final(rank_of[l], self.home, G))
                mine = plan.rows_of(rank)
                key = self.inst[l].key
                tt, kk = key // K, key % K
                self.layers.append({
                    "send": plan.counts[rank].copy(),
                    "rows": self._t(self.inst[l].index(plan.src_key[mine])),
                    "meta": self._t(plan.dst_key[mine][:, None]),
                    "experts": self.ids[l, tt, kk], "weights": self.gate[l, tt, kk],
                    "resid": self._t(np.flatnonzero(kk == self.top1[l, tt])),
                })
        self.fail_at = _fail_point(cfg.fail_spec, rank)

    def _t(self, a: np.ndarray):
        import torch
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(self.device)

    # ------------------------------------------------------------------ comm helpers
    def _sync(self) -> None:
        if self.device.type == "cuda":
            import torch
            torch.cuda.synchronize(self.device)

    def _exchange(self, send_counts: np.ndarray, meta, rows):
        """Counts, then metadata, then hidden rows; returns (recv_counts, recv_meta, recv_rows, comm_s)."""
        import torch
        import torch.distributed as dist
        self._sync()
        t0 = time.perf_counter()
        sc = torch.as_tensor(send_counts, dtype=torch.int64, device=self.device)
        rc = torch.empty_like(sc)
        dist.all_to_all_single(rc, sc)
        recv = rc.cpu().numpy()
        sl, rl = send_counts.tolist(), recv.tolist()
        m = torch.empty((int(recv.sum()), meta.shape[1]), dtype=torch.int64, device=self.device)
        dist.all_to_all_single(m, meta, output_split_sizes=rl, input_split_sizes=sl)
        out = torch.empty((int(recv.sum()), rows.shape[1]), dtype=rows.dtype, device=self.device)
        dist.all_to_all_single(out, rows, output_split_sizes=rl, input_split_sizes=sl)
        self._sync()
        return recv, m, out, time.perf_counter() - t0

    def _combine(self, partial, send_counts: np.ndarray, recv_counts: np.ndarray):
        import torch
        import torch.distributed as dist
        self._sync()
        t0 = time.perf_counter()
        back = torch.empty((int(send_counts.sum()), partial.shape[1]), dtype=partial.dtype, device=self.device)
        dist.all_to_all_single(back, partial, output_split_sizes=send_counts.tolist(),
                               input_split_sizes=recv_counts.tolist())
        self._sync()
        return back, time.perf_counter() - t0

    # ----------------------------------------------------------------------- replay
    def run(self, x0) -> dict[str, Any]:
        """Replay all layers once. ``x0`` ``[T, H]`` on device. Returns outputs, times, bytes."""
        import torch
        L, T, K = self.shape
        G, row = self.cfg.world_size, self.cfg.hidden * ROW_DTYPE_BYTES
        traffic = np.zeros((L, G), np.int64)     # bytes this rank sent to each rank, per layer
        meta_bytes = 0
        layer_s, comm_s = np.zeros(L), np.zeros(L)
        with torch.no_grad():
            if self.cfg.mode == "ep":
                x = x0[self._t(self.my_tok)]
            else:
                X = x0[self._t(self.inst[0].key // K)]
            for l, lay in enumerate(self.layers):
                if self.fail_at == l:
                    os._exit(3)
                self._sync()
                t0 = time.perf_counter()
                if self.cfg.mode == "ep":
                    recv, meta, xr, c1 = self._exchange(lay["send"], lay["meta"], x[lay["rows"]])
                    m = meta.cpu().numpy()
                    bits = (m[:, 1:2] >> np.arange(K)) & 1
                    mrow, k = np.nonzero(bits)
                    tok = m[mrow, 0]
                    partial = torch.zeros_like(xr)
                    experts_mix(self.bank, l, rmsnorm(xr), self.ids[l, tok, k], self.gate[l, tok, k], mrow, partial)
                    back, c2 = self._combine(partial, lay["send"], recv)
                    x = x.index_add(0, lay["rows"], back)
                    traffic[l] += (lay["send"] + recv) * row
                    meta_bytes += int((lay["send"].sum() - lay["send"][self.rank]) * 16 + (G - 1) * 8)
                    comm = c1 + c2
                else:
                    P = torch.zeros_like(X)
                    experts_mix(self.bank, l, rmsnorm(X), lay["experts"], lay["weights"],
                                np.arange(len(X)), P)
                    P.index_add_(0, lay["resid"], X[lay["resid"]])
                    recv, meta, rows, comm = self._exchange(lay["send"], lay["meta"], P[lay["rows"]])
                    nxt = self.inst[l + 1].key if l + 1 < L else self.my_tok
                    X = torch.zeros((len(nxt), P.shape[1]), dtype=P.dtype, device=self.device)
                    X.index_add_(0, self._t(np.searchsorted(nxt, meta[:, 0].cpu().numpy())), rows)
                    traffic[l] += lay["send"] * row
                    meta_bytes += int((lay["send"].sum() - lay["send"][self.rank]) * 8 + (G - 1) * 8)
                self._sync()
                layer_s[l], comm_s[l] = time.perf_counter() - t0, comm
        out = x if self.cfg.mode == "ep" else X
        traffic[:, self.rank] = 0  # a send to oneself is a local copy
        return {"out": out.cpu().numpy(), "traffic": traffic, "meta_bytes": meta_bytes,
                "layer_s": layer_s, "comm_s": comm_s}


def run_rank(cfg: ReplayConfig, rank: int, device) -> dict[str, Any] | None:
    """The replay on one rank of an initialised process group; rank 0 returns the report."""
    import torch
    import torch.distributed as dist
    G = cfg.world_size
    L, T, K = cfg.expert_ids.shape
    bank = ExpertBank(cfg.seed, cfg.hidden, cfg.ffn, cfg.ffn_type, device)
    x0_np = initial_activations(cfg.seed, T, cfg.hidden)
    x0 = torch.from_numpy(x0_np).to(device)
    reps = {"placement": Replayer(cfg, cfg.phy2log, rank, bank, device),
            "baseline": Replayer(cfg, cfg.baseline, rank, bank, device)}
    times = {n: {"iter": [], "layer": [], "comm": []} for n in reps}
    last: dict[str, dict] = {}
    for it in range(cfg.warmup + cfg.iters):
        for name in (reps if it % 2 == 0 else list(reps)[::-1]):
            dist.barrier()
            t0 = time.perf_counter()
            res = reps[name].run(x0)
            local = torch.tensor([time.perf_counter() - t0], dtype=torch.float64, device=device)
            per = torch.from_numpy(np.stack([res["layer_s"], res["comm_s"]])).to(device)
            # the slowest rank bounds a step
            dist.all_reduce(local, op=dist.ReduceOp.MAX)
            dist.all_reduce(per, op=dist.ReduceOp.MAX)
            if it >= cfg.warmup:
                times[name]["iter"].append(float(local.item()))
                times[name]["layer"].append(per[0].cpu().numpy())
                times[name]["comm"].append(per[1].cpu().numpy())
            last[name] = res
    gathered = {}
    for name, res in last.items():
        tr = torch.zeros((L, G, G), dtype=torch.int64, device=device)
        tr[:, rank, :] = torch.from_numpy(res["traffic"]).to(device)
        mb = torch.tensor([res["meta_bytes"]], dtype=torch.int64, device=device)
        dist.all_reduce(tr)
        dist.all_reduce(mb)
        outs = [None] * G if rank == 0 else None
        toks = reps[name].my_tok
        dist.gather_object((toks, res["out"]), outs, dst=0)
        gathered[name] = {"traffic": tr.cpu().numpy(), "meta_bytes": int(mb.item()), "outs": outs}
    built = [None] * G if rank == 0 else None
    dist.gather_object(bank.built(), built, dst=0)
    if rank != 0:
        return None
    return _report(cfg, x0_np, gathered, times, built)


def _only_local(cfg: ReplayConfig, built: list) -> bool:
    """Every rank built only experts that the placement or the baseline puts on it."""
    S = cfg.phy2log.shape[1] // cfg.world_size, cfg.baseline.shape[1] // cfg.world_size
    for rank, keys in enumerate(built):
        allowed = {(l, int(e)) for p, s in zip((cfg.phy2log, cfg.baseline), S)
                   for l in range(p.shape[0]) for e in p[l, rank * s:(rank + 1) * s]}
        if not set(keys) <= allowed:
            return False
    return True


def _median_rows(rows: list[np.ndarray]) -> np.ndarray:
    return np.median(np.stack(rows), axis=0)


def _report(cfg: ReplayConfig, x0: np.ndarray, gathered: dict, times: dict,
            built: list) -> dict[str, Any]:
    """Compare with the reference and the cost model; shape the JSON report."""
    from placer.validate.predict import predict_bytes
    L, T, K = cfg.expert_ids.shape
    G = cfg.world_size
    gate = routing.gate_weights(cfg.gate, (L, T, K))
    ref = reference(np.asarray(cfg.expert_ids, np.int64), gate, x0,
                    ExpertBank(cfg.seed, cfg.hidden, cfg.ffn, cfg.ffn_type))
    trace = _trace(cfg)
    home = default_home(trace, G)
    coherent = cfg.mode == "coherent"
    n_pred = L - 1 if coherent else L
    out: dict[str, Any] = {}
    for name in ("placement", "baseline"):
        g = gathered[name]
        got = np.zeros_like(ref)
        seen = np.zeros(T, bool)
        for toks, rows in g["outs"]:
            got[toks] = rows
            seen[toks] = True
        err = float(np.max(np.abs(got - ref))) if seen.all() else float("inf")
        match = bool(seen.all() and np.allclose(got, ref, rtol=cfg.rtol, atol=cfg.atol))
        tr = g["traffic"]                      # [L, G, G] bytes
        counted = tr[:n_pred]
        pred = predict_bytes(trace, _placement(cfg.phy2log if name == "placement" else cfg.baseline, cfg),
                             cfg.mode, cfg.hidden, home)
        measured = int(counted.sum())
        traffic_m = counted.sum(axis=0)
        out[name] = {
            "outputs_match": match, "max_abs_error": err,
            "bytes_measured": measured, "bytes_predicted": pred["bytes"],
            "bytes_match": measured == pred["bytes"] and (
                pred["traffic"] is None or traffic_m.tolist() == pred["traffic"]),
            "predicted_by": pred["predicted_by"],
            "traffic_measured": traffic_m.tolist(), "traffic_predicted": pred["traffic"],
            "bytes_final_gather": int(tr[L - 1].sum()) if coherent else 0,
            "meta_bytes": g["meta_bytes"],
            "time_s": statistics.median(times[name]["iter"]),
            "comm_time_s": float(np.sum(_median_rows(times[name]["comm"]))),
            "per_layer_measured": counted.sum(axis=(1, 2)).tolist(),
            "per_layer_predicted": pred["per_layer"],
            "layer_time_s": _median_rows(times[name]["layer"]).tolist(),
            "layer_comm_s": _median_rows(times[name]["comm"]).tolist(),
        }
    p, b = out["placement"], out["baseline"]
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
    return {
        "mode": cfg.mode, "backend": cfg.backend, "world_size": G, "layers": L, "tokens": T, "top_k": K,
        "num_experts": cfg.num_experts, "hidden_size": cfg.hidden, "ffn_size": cfg.ffn,
        "ffn_type": cfg.ffn_type, "dtype": "float32", "iters": cfg.iters, "seed": cfg.seed,
        "baseline": cfg.baseline_name, **cfg.info,
        "experts_built_per_rank": [len(b) for b in built],
        "experts_only_local": _only_local(cfg, built),
        "outputs_match": p["outputs_match"] and b["outputs_match"],
        "bytes_measured": p["bytes_measured"], "bytes_predicted": p["bytes_predicted"],
        "bytes_match": p["bytes_match"] and b["bytes_match"],
        "baseline_bytes_measured": b["bytes_measured"], "baseline_bytes_predicted": b["bytes_predicted"],
        "bytes_ratio": p["bytes_measured"] / b["bytes_measured"] if b["bytes_measured"] else None,
        "time_placement_s": p["time_s"], "time_baseline_s": b["time_s"],
        "time_ratio": p["time_s"] / b["time_s"] if b["time_s"] else None,
        "comm_time_placement_s": p["comm_time_s"], "comm_time_baseline_s": b["comm_time_s"],
        "comm_time_ratio": p["comm_time_s"] / b["comm_time_s"] if b["comm_time_s"] else None,
        "placement": {k: v for k, v in p.items() if not k.startswith(("per_layer", "layer_"))},
        "baseline_detail": {k: v for k, v in b.items() if not k.startswith(("per_layer", "layer_"))},
        "per_layer": per_layer,
    }
