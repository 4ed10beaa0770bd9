"""Which experts get the redundant slots, and fitting copies onto GPUs without doubling up.

The replication rule is DeepSeek EPLB's: hand out the redundant slots one at a time, each to
the expert whose load per replica (``load[e] / logcnt[e]``) is currently the largest; ties go to
the lowest expert id. Every expert starts with one copy. ``max_count`` caps the copies of one
expert (the number of GPUs it may sit on): a placement never holds two copies of one expert on
one GPU, so an expert can have at most one copy per GPU. Experts at the cap are skipped.

Loads are token picks (``Profile.load``), but any non-negative weight works.
"""

from __future__ import annotations

from typing import Callable, Sequence

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


class DistinctBins:
    """Bins of ``capacity`` items each where no two items with one label share a bin.

    ``label [N]`` is each item's logical expert, ``weight [N]`` its load (token picks); the bins
    keep their item lists, label sets and total weights up to date, so a greedy that places N
    items costs O(N * bins).
    """

    def __init__(self, num_bins: int, capacity: int, label: Sequence[int], weight: Sequence[float] | None = None):
        self.capacity = int(capacity)
        self.label = np.asarray(label, np.int64)
        self.weight = np.zeros(len(self.label)) if weight is None else np.asarray(weight, np.float64)
        self.items: list[list[int]] = [[] for _ in range(num_bins)]
        self.held: list[set[int]] = [set() for _ in range(num_bins)]
        self.load = [0.0] * num_bins

    def add(self, b: int, item: int) -> None:
        self.items[b].append(item)
        self.held[b].add(int(self.label[item]))
        self.load[b] += float(self.weight[item])

    def allowed(self, item: int) -> list[int]:
        """Bins with room that do not hold ``item``'s label, in bin order."""
        lab = int(self.label[item])
        return [b for b, its in enumerate(self.items) if len(its) < self.capacity and lab not in self.held[b]]

    def put(self, item: int, choose: Callable[[list[int]], int]) -> int:
        """Put ``item`` in ``choose(allowed bins)``; if no bin qualifies, make room by one swap.

        Returns the bin that received ``item``. The repair (EPLB's double placement is what
        it prevents): every bin with room holds the label; take ``h = choose(bins with room)``
        and a full bin ``q`` without the label. ``q`` holds ``capacity`` distinct labels and
        ``h`` at most ``capacity - 2`` besides this one, so some item of ``q`` has a label absent
        from ``h``; it moves to ``h`` and ``item`` takes its place. Of all such moves, the one
        with the lightest moved item wins (``h`` grows least), then the highest item id (callers
        number redundant copies after first copies, so a copy moves before an original). A ``q``
        exists whenever the label has fewer copies placed than there are bins, which callers
        guarantee by capping copies at the number of bins.
        """
        ok = self.allowed(item)
        if ok:
            b = choose(ok)
            self.add(b, item)
            return b
        lab = int(self.label[item])
        open_bins = [b for b, its in enumerate(self.items) if len(its) < self.capacity]
        if not open_bins:
            raise ValueError("every bin is full")
        h = choose(open_bins)
        moves = [(float(self.weight[other]), -other, q, pos)
                 for q, its in enumerate(self.items) if lab not in self.held[q]
                 for pos, other in enumerate(its) if int(self.label[other]) not in self.held[h]]
        if not moves:
            raise ValueError(f"expert {lab} has at least as many copies as there are bins")
        _, _, q, pos = min(moves)
        other = self.items[q][pos]
        olab = int(self.label[other])
        self.add(h, other)
        self.items[q][pos] = item
        self.held[q].discard(olab)
        self.held[q].add(lab)
        self.load[q] += float(self.weight[item] - self.weight[other])
        return q
