"""Which experts get the redundant slots (DeepSeek EPLB's rule).

The replication rule is DeepSeek EPLB's: hand out the redundant slots one at a time, each to
the expert whose load per replica (``load[e] / logcnt[e]``) is currently the largest; ties go to
the lowest expert id. Every expert starts with one copy. ``max_count`` caps the copies of one
expert (the number of GPUs it may sit on): a placement never holds two copies of one expert on
one GPU, so an expert can have at most one copy per GPU. Experts at the cap are skipped.

Loads are token picks (``Profile.load``), but any non-negative weight works.
"""

from __future__ import annotations

import numpy as np

from placer.errors import PlacerError


def replicate(load: np.ndarray, num_slots: int, max_count: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy replication by largest load per replica, batched over rows.

    Args:
        load: ``[X, E]`` non-negative weights (token picks) per row (layer) and logical expert.
        num_slots: P, physical slots per row in total (E originals + P - E redundant copies).
        max_count: at most this many copies of one expert (None: no cap).

    Returns:
        ``phy2log [X, P]``: slot p holds expert ``phy2log[x, p]``; the first E slots are the
        experts themselves in id order, slot ``E + i`` is the i-th redundant copy handed out.
        ``rank [X, P]``: which copy of its expert the slot is (0 for the original).
        ``logcnt [X, E]``: copies of each expert (>= 1, sums to P).
    """
    w = np.asarray(load, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"load must be [X, E], got shape {w.shape}")
    X, E = w.shape
    check_slots(E, num_slots, max_count)
    phy2log = np.empty((X, num_slots), np.int64)
    phy2log[:, :E] = np.arange(E)
    rank = np.zeros((X, num_slots), np.int64)
    logcnt = np.ones((X, E), np.int64)
    rows = np.arange(X)
    for p in range(E, num_slots):
        per_replica = w / logcnt
        if max_count is not None:
            per_replica[logcnt >= max_count] = -np.inf
        # argmax returns the first maximum: ties go to the lowest expert id.
        pick = np.argmax(per_replica, axis=1)
        phy2log[:, p] = pick
        rank[:, p] = logcnt[rows, pick]
        logcnt[rows, pick] += 1
    return phy2log, rank, logcnt


def replica_counts(load: np.ndarray, num_slots: int, max_count: int | None = None) -> np.ndarray:
    """``logcnt [E]``: copies per expert when ``num_slots`` (P >= E) slots hold E experts.

    ``load [E]`` token picks; the P - E redundant slots go one by one to the expert with the
    largest load per replica (see module docstring), at most ``max_count`` copies each.
    """
    load = np.asarray(load)
    if load.ndim != 1:
        raise ValueError(f"load must be [E], got shape {load.shape}")
    return replica_counts_batched(load[None, :], num_slots, max_count)[0]


def replica_counts_batched(load: np.ndarray, num_slots: int, max_count: int | None = None) -> np.ndarray:
    """``logcnt [L, E]``: :func:`replica_counts` for every layer of ``load [L, E]``."""
    return replicate(load, num_slots, max_count)[2]


def check_slots(num_experts: int, num_slots: int, max_count: int | None) -> None:
    """Raise :class:`PlacerError` unless P slots can hold E experts with at most ``max_count`` copies each."""
    if num_slots < num_experts:
        raise PlacerError(f"{num_slots} slots cannot hold {num_experts} experts; "
                          f"give at least as many slots as experts")
    if max_count is not None and num_slots > num_experts * max_count:
        raise PlacerError(f"{num_slots} slots need more than {max_count} copies of some of the {num_experts} "
                          f"experts, but an expert can have at most one copy per GPU; lower --replicas")


def replicas_for(spec: str | int, num_gpus: int) -> int:
    """Redundant experts per layer: ``"16"`` is 16, ``"1x"`` is one per GPU (G), ``"2x"`` two per GPU."""
    s = str(spec).strip().lower()
    try:
        value = int(float(s[:-1]) * num_gpus) if s.endswith("x") else int(s)
    except ValueError:
        raise PlacerError(f"--replicas {spec!r}: write a count (16) or per-GPU multiple (1x)") from None
    if value < 0:
        raise PlacerError(f"--replicas {spec!r} must be non-negative")
    return value
