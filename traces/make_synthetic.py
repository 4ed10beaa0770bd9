"""Generate ``traces/synthetic.npz``: a seeded routing trace with planted inter-layer structure.

Regenerate exactly (byte-identical for the same arguments)::

    python traces/make_synthetic.py -o traces/synthetic.npz --seed 0

What it is (not a real model): L MoE layers of E experts, top-K. At every layer the experts are
split into C planted groups of E / C experts (a different random split per layer, so expert
ids carry no hint). Each sequence has a topic group; a token starts in its topic group with
probability ``p_topic`` (else a random group) and at each next layer stays in the same group
index with probability ``p_stay`` (else jumps to a random group). Inside its group a token picks
K distinct experts, weighted by a per-group Zipf popularity (exponent ``zipf``), so loads are
skewed as in real traces. Gate weights are a sorted random split of 1 over the K picks
(column 0 is the top-1). The planted group of every expert is stored in the trace metadata
(``extra["planted_group"]`` ``[L][E]``): a placement that puts each group on one GPU keeps
about ``p_stay`` of the top-1 transitions on one GPU (with C = G).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from placer.model.trace import Trace  # noqa: E402


def generate(layers: int = 12, experts: int = 32, top_k: int = 2, groups: int = 4, sequences: int = 64,
             seq_len: int = 128, p_topic: float = 0.7, p_stay: float = 0.85, zipf: float = 1.0,
             seed: int = 0) -> Trace:
    """The planted trace (module docstring); deterministic in ``seed``."""
    if experts % groups or top_k > experts // groups:
        raise SystemExit("experts must split into groups of at least top_k experts")
    rng = np.random.default_rng(seed)
    size = experts // groups
    # members[l, c] = the experts of planted group c at layer l
    members = np.stack([rng.permutation(experts).reshape(groups, size) for _ in range(layers)])
    pop = 1.0 / np.arange(1, size + 1) ** zipf
    popularity = np.stack([[rng.permutation(pop / pop.sum()) for _ in range(groups)] for _ in range(layers)])
    T = sequences * seq_len
    topic = np.repeat(rng.integers(0, groups, sequences), seq_len)
    group = np.where(rng.random(T) < p_topic, topic, rng.integers(0, groups, T))
    ids = np.empty((layers, T, top_k), np.int64)
    for l in range(layers):
        if l:
            group = np.where(rng.random(T) < p_stay, group, rng.integers(0, groups, T))
        # K distinct picks by popularity: Gumbel top-k over the group's members
        keys = np.log(popularity[l, group]) + rng.gumbel(size=(T, size))
        local = np.argsort(-keys, axis=1)[:, :top_k]
        ids[l] = members[l, group[:, None], local]
    w = np.sort(rng.dirichlet(np.ones(top_k), size=(layers, T)), axis=2)[:, :, ::-1]
    planted = np.empty((layers, experts), np.int64)
    for l in range(layers):
        for c in range(groups):
            planted[l, members[l, c]] = c
    return Trace(expert_ids=ids, num_experts=experts, gate_weights=w.astype(np.float16),
                 seq_offsets=np.arange(0, T + 1, seq_len, dtype=np.int64), model="synthetic-planted",
                 source=f"traces/make_synthetic.py --seed {seed}",
                 extra={"planted_group": planted.tolist(), "p_topic": p_topic, "p_stay": p_stay,
                        "groups": groups, "zipf": zipf, "seed": seed})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", default=str(Path(__file__).with_name("synthetic.npz")))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--experts", type=int, default=32)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--sequences", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--p-stay", type=float, default=0.85)
    a = ap.parse_args()
    trace = generate(a.layers, a.experts, a.top_k, a.groups, a.sequences, a.seq_len, p_stay=a.p_stay, seed=a.seed)
    trace.validate(a.output)
    trace.save(a.output)
    print(f"wrote {a.output}: {trace.describe()}")


if __name__ == "__main__":
    main()
