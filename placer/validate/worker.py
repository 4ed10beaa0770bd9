"""One rank of the replay: build local experts, replay every layer with all_to_all_single, time it.

Every rank runs :func:`run_rank` inside an initialised process group. Per layer and placement it
exchanges row counts (``all_to_all_single`` on int64), the rows' routing metadata (int64), and the
hidden-state rows (fp32, uneven split sizes) as :mod:`placer.validate.routing` plans them. Bytes
are counted from the split sizes actually passed to the hidden-state collectives; metadata and
count exchanges are reported apart (``meta_bytes``).

What proves the placement was used, not only that outputs came out right:

- each rank's expert bank may build only the experts the placement puts on that rank
  (:class:`~placer.validate.model.ExpertBank`; building another fails the run), and the plan is
  checked before the replay: every pick is routed to a rank that holds its expert;
- every (layer, token, pick) is computed exactly once over all ranks (counted in the checking
  passes and summed on rank 0);
- outputs are checked twice, with the trace's gate weights and with unit weights (a wrong
  expert cannot hide behind tiny or zero gate weights).

Two untimed checking passes per placement (trace weights, unit weights) come first, then
``warmup + iters`` timed ones with the trace's weights. Rank 0 gathers outputs, counts and
times and builds the report (:mod:`placer.validate.report`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from placer.cost import default_home
from placer.validate import faults, routing
from placer.validate.model import ExpertBank, NotHeld, experts_mix, held_experts, initial_activations, rmsnorm

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
    # test hooks (placer.validate.faults), read from the environment by the caller
    fail_spec: str | None = None
    mutation: str | None = None
    # rank 0 appends one byte here per finished pass (the parent's progress bar)
    progress_path: str | None = None

    @property
    def passes(self) -> int:
        """Replays per run: two checking passes and the timed ones, for both placements."""
        return 2 * (2 + self.warmup + self.iters)


def _placement(phy2log: np.ndarray, cfg: ReplayConfig):
    from placer.model.placement import Placement
    return Placement(phy2log, cfg.num_experts, cfg.world_size)


def _trace(cfg: ReplayConfig):
    from placer.model.trace import Trace
    return Trace(expert_ids=cfg.expert_ids, num_experts=cfg.num_experts, gate_weights=cfg.gate,
                 seq_offsets=cfg.offsets)


class Replayer:
    """Plans and buffers of one placement on one rank, and its replay loop."""

    def __init__(self, cfg: ReplayConfig, phy2log: np.ndarray, rank: int, bank: ExpertBank, device, name: str):
        self.cfg, self.rank, self.bank, self.device = cfg, rank, bank, device
        G = cfg.world_size
        self.ids = np.asarray(cfg.expert_ids, np.int64)
        L, T, K = self.ids.shape
        self.shape = (L, T, K)
        self.gate = routing.gate_weights(cfg.gate, self.shape)
        self.home = default_home(_trace(cfg), G)
        self.my_tok = np.flatnonzero(self.home == rank)
        pl = _placement(phy2log, cfg)
        held = pl.expert_gpus                              # [L, E, G]
        self.layers: list[dict[str, Any]] = []
        if cfg.mode == "ep":
            for l in range(L):
                dest = routing.ep_dest(self.ids[l], self.home, pl, l)
                _check_served(name, l, self.ids[l], dest, held[l])
                plan = routing.ep_layer(dest, self.home, G)
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
                    "experts": self.ids[l, tt, kk], "weights": self.gate[l, tt, kk], "key": key,
                    "resid": self._t(np.flatnonzero(kk == self.top1[l, tt])),
                })
        self.fail_at = faults.fail_point(cfg.fail_spec, rank)

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
    def run(self, x0, unit: bool = False) -> dict[str, Any]:
        """Replay all layers once. ``x0`` ``[T, H]`` on device; ``unit``: every gate weight 1.
        Returns outputs, times, bytes and ``served [L, T*K]``: picks this rank computed."""
        import torch
        L, T, K = self.shape
        G, row = self.cfg.world_size, self.cfg.hidden * ROW_DTYPE_BYTES
        traffic = np.zeros((L, G), np.int64)     # bytes this rank sent to each rank, per layer
        served = np.zeros((L, T * K), np.int32)
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
                    meta_out = faults.corrupt_route(self.cfg.mutation, self.rank, l, lay["meta"], lay["send"])
                    recv, meta, xr, c1 = self._exchange(lay["send"], meta_out, x[lay["rows"]])
                    m = meta.cpu().numpy()
                    bits = (m[:, 1:2] >> np.arange(K)) & 1
                    mrow, k = np.nonzero(bits)
                    tok = m[mrow, 0]
                    w = np.ones(len(tok), np.float32) if unit else self.gate[l, tok, k]
                    partial = torch.zeros_like(xr)
                    experts_mix(self.bank, l, rmsnorm(xr), self.ids[l, tok, k], w, mrow, partial)
                    np.add.at(served[l], tok * K + k, 1)
                    back, c2 = self._combine(partial, lay["send"], recv)
                    x = x.index_add(0, lay["rows"], back)
                    traffic[l] += (lay["send"] + recv) * row
                    meta_bytes += int((lay["send"].sum() - lay["send"][self.rank]) * 16 + (G - 1) * 8)
                    comm = c1 + c2
                else:
                    P = torch.zeros_like(X)
                    w = np.ones_like(lay["weights"]) if unit else lay["weights"]
                    experts_mix(self.bank, l, rmsnorm(X), lay["experts"], w, np.arange(len(X)), P)
                    np.add.at(served[l], lay["key"], 1)
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
                "layer_s": layer_s, "comm_s": comm_s, "served": served}


def _check_served(name: str, layer: int, ids: np.ndarray, dest: np.ndarray, held: np.ndarray) -> None:
    """Every pick ``ids [T, K]`` routed to ``dest [T, K]`` lands on a rank that holds its expert
    (``held [E, G]``, read from the placement itself, not from the routing code)."""
    bad = ~held[ids, dest]
    if bad.any():
        t, k = np.argwhere(bad)[0]
        raise NotHeld(f"the {name}'s routing serves pick {k} of token {t} at layer {layer} (expert {ids[t, k]}) on "
                      f"rank {dest[t, k]}, which the placement does not give that expert; the replay did not "
                      f"follow the placement")


def _progress(cfg: ReplayConfig, rank: int) -> None:
    if rank == 0 and cfg.progress_path:
        with open(cfg.progress_path, "ab") as fh:
            fh.write(b".")


def run_rank(cfg: ReplayConfig, rank: int, device) -> dict[str, Any] | None:
    """The replay on one rank of an initialised process group; rank 0 returns the report."""
    import torch
    import torch.distributed as dist
    from placer.validate.report import build_report
    G = cfg.world_size
    L, T, K = cfg.expert_ids.shape
    banks = {name: ExpertBank(cfg.seed, cfg.hidden, cfg.ffn, cfg.ffn_type, device,
                              allowed=held_experts(p, rank, G), owner=f"rank {rank} ({name})")
             for name, p in (("placement", cfg.phy2log), ("baseline", cfg.baseline))}
    faults.apply(cfg.mutation, rank, banks, cfg.expert_ids)
    x0_np = initial_activations(cfg.seed, T, cfg.hidden)
    x0 = torch.from_numpy(x0_np).to(device)
    reps = {name: Replayer(cfg, p, rank, banks[name], device, name)
            for name, p in (("placement", cfg.phy2log), ("baseline", cfg.baseline))}
    gathered: dict[str, dict] = {}
    for name, rep in reps.items():
        for unit in (False, True):
            dist.barrier()
            res = rep.run(x0, unit=unit)
            outs = [None] * G if rank == 0 else None
            dist.gather_object((rep.my_tok, res["out"]), outs, dst=0)
            served = torch.from_numpy(res["served"].astype(np.int64)).to(device)
            dist.all_reduce(served)
            g = gathered.setdefault(name, {})
            g["outs_unit" if unit else "outs"] = outs
            g["served_unit" if unit else "served"] = served.cpu().numpy()
            if not unit:
                tr = torch.zeros((L, G, G), dtype=torch.int64, device=device)
                tr[:, rank, :] = torch.from_numpy(res["traffic"]).to(device)
                mb = torch.tensor([res["meta_bytes"]], dtype=torch.int64, device=device)
                dist.all_reduce(tr)
                dist.all_reduce(mb)
                g["traffic"], g["meta_bytes"] = tr.cpu().numpy(), int(mb.item())
            _progress(cfg, rank)
    times: dict[str, list[np.ndarray]] = {n: [] for n in reps}
    for it in range(cfg.warmup + cfg.iters):
        for name in (reps if it % 2 == 0 else list(reps)[::-1]):
            dist.barrier()
            t0 = time.perf_counter()
            res = reps[name].run(x0)
            sample = torch.from_numpy(np.concatenate([[time.perf_counter() - t0], res["layer_s"], res["comm_s"]])).to(device)
            every = [torch.zeros_like(sample) for _ in range(G)]
            dist.all_gather(every, sample)       # [G][1 + 2L]: each rank's iteration, layers, collectives
            if it >= cfg.warmup:
                times[name].append(torch.stack(every).cpu().numpy())
            _progress(cfg, rank)
    built = [None] * G if rank == 0 else None
    dist.gather_object({n: b.built() for n, b in banks.items()}, built, dst=0)
    if rank != 0:
        return None
    return build_report(cfg, x0_np, gathered, times, built)


def check_failure(exc: BaseException) -> bool:
    """Is ``exc`` a check of the replay that failed (the placement was not followed)?"""
    return isinstance(exc, NotHeld)
