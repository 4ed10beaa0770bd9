"""Balanced packing: weighted items into equal-size bins, never two copies of one expert in a bin.

Used wherever experts (or their replicas) are dealt to GPUs or nodes by load: DeepSeek EPLB's
packing steps (:mod:`placer.solvers.eplb`), the baselines' replica placement
(:mod:`placer.solvers.baselines`), and the balanced starts and repairs of the local search.
Weights are token picks, but any non-negative weight works.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def balanced_packing(weight: np.ndarray, num_packs: int, labels: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Pack n weighted items into ``num_packs`` packs of n / num_packs items each, balancing weight.

    Args:
        weight: ``[X, n]`` item weights (token picks) per row; n divisible by ``num_packs``.
        num_packs: m packs per row.
        labels: ``[X, n]`` optional logical expert of each item; items with one label then go
            to different packs (needs at most m items per label in a row).

    Returns:
        ``pack_index [X, n]`` (pack of each item) and ``rank_in_pack [X, n]`` (its position in
        the pack, 0 .. n/m - 1).
    """
    w = np.asarray(weight, dtype=np.float64)
    X, n = w.shape
    if num_packs < 1 or n % num_packs:
        raise ValueError(f"{n} items cannot be split evenly into {num_packs} packs")
    per_pack = n // num_packs
    pack_index = np.empty((X, n), np.int64)
    rank_in_pack = np.empty((X, n), np.int64)
    if per_pack == 1:
        pack_index[:] = np.arange(n)
        rank_in_pack[:] = 0
        return pack_index, rank_in_pack
    for x in range(X):
        lab = np.arange(n) if labels is None else labels[x]
        bins = DistinctBins(num_packs, per_pack, lab, w[x])
        lightest = lambda cand: min(cand, key=bins.load.__getitem__)  # noqa: E731  first on ties
        for item in np.argsort(-w[x], kind="stable"):
            bins.put_lightest(int(item), lightest)
        for b, its in enumerate(bins.items):
            pack_index[x, its] = b
            rank_in_pack[x, its] = np.arange(len(its))
    return pack_index, rank_in_pack


class DistinctBins:
    """Bins of ``capacity`` items each where no two items with one label share a bin.

    ``label [N]`` is each item's logical expert, ``weight [N]`` its load (token picks); the bins
    keep their item lists, which labels they hold (``has [labels, bins]``), their item counts
    and total weights up to date, so a greedy that places N items costs O(N * bins), in numpy (a
    Python scan of the bins for each item took 4 s of EPLB at 128 GPUs).
    """

    def __init__(self, num_bins: int, capacity: int, label: Sequence[int], weight: Sequence[float] | None = None):
        self.capacity = int(capacity)
        self.label = np.asarray(label, np.int64)
        self.weight = np.zeros(len(self.label)) if weight is None else np.asarray(weight, np.float64)
        self.items: list[list[int]] = [[] for _ in range(num_bins)]
        self.load = np.zeros(num_bins)
        self.count = np.zeros(num_bins, np.int64)
        self.has = np.zeros((int(self.label.max(initial=-1)) + 1, num_bins), bool)

    def add(self, b: int, item: int) -> None:
        self.items[b].append(item)
        self.has[int(self.label[item]), b] = True
        self.count[b] += 1
        self.load[b] += float(self.weight[item])

    @property
    def held(self) -> list[set[int]]:
        """The labels each bin holds."""
        return [set(np.flatnonzero(col).tolist()) for col in self.has.T]

    def _mask(self, item: int) -> np.ndarray:
        return (self.count < self.capacity) & ~self.has[int(self.label[item])]

    def allowed(self, item: int) -> list[int]:
        """Bins with room that do not hold ``item``'s label, in bin order."""
        return np.flatnonzero(self._mask(item)).tolist()

    def put_lightest(self, item: int, lightest: Callable[[list[int]], int]) -> int:
        """:meth:`put` into the lightest allowed bin (the first on ties), ``lightest`` being that
        rule on a list, for the repair."""
        ok = self._mask(item)
        if not ok.any():
            return self.put(item, lightest)
        b = int(np.argmin(np.where(ok, self.load, np.inf)))
        self.add(b, item)
        return b

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
                 for q, its in enumerate(self.items) if not self.has[lab, q]
                 for pos, other in enumerate(its) if not self.has[int(self.label[other]), h]]
        if not moves:
            raise ValueError(f"expert {lab} has at least as many copies as there are bins")
        _, _, q, pos = min(moves)
        other = self.items[q][pos]
        olab = int(self.label[other])
        self.add(h, other)
        self.items[q][pos] = item
        self.has[olab, q] = False
        self.has[lab, q] = True
        self.load[q] += float(self.weight[item] - self.weight[other])
        return q
