"""The shared replication rule and the no-double-placement bins, against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from placer.errors import PlacerError
from placer.solvers.packing import DistinctBins
from placer.solvers.replicate import replica_counts, replica_counts_batched, replicate


def best_max_per_replica(load, num_slots, cap):
    """Brute force: the smallest achievable max_e load[e] / cnt[e] over all count vectors."""
    E = len(load)
    best = np.inf
    for cnt in itertools.product(range(1, cap + 1), repeat=E):
        if sum(cnt) == num_slots:
            best = min(best, max(w / c for w, c in zip(load, cnt)))
    return best


@settings(max_examples=80, deadline=None)
@given(load=st.lists(st.integers(0, 50), min_size=1, max_size=5), extra=st.integers(0, 6),
       cap=st.integers(1, 4))
def test_greedy_replication_minimises_the_largest_load_per_replica(load, extra, cap):
    E = len(load)
    P = E + extra
    if P > E * cap:
        with pytest.raises(PlacerError, match="at most one copy per GPU"):
            replica_counts(np.array(load), P, cap)
        return
    cnt = replica_counts(np.array(load), P, cap)
    assert cnt.sum() == P and cnt.min() >= 1 and cnt.max() <= cap
    got = max(w / c for w, c in zip(load, cnt))
    assert got == pytest.approx(best_max_per_replica(load, P, cap))


def test_replication_hand_made():
    # 2 redundant slots: 90 -> 45 per replica, then 60 is the largest, so 60 gets the second.
    phy2log, rank, cnt = replicate(np.array([[90, 60, 10]]), 5)
    assert cnt.tolist() == [[2, 2, 1]]
    assert phy2log.tolist() == [[0, 1, 2, 0, 1]]
    assert rank.tolist() == [[0, 0, 0, 1, 1]]
    # ties go to the lowest expert id
    assert replica_counts(np.array([7, 7, 7]), 4).tolist() == [2, 1, 1]
    # a cap of 1 copy: nothing can be replicated
    with pytest.raises(PlacerError, match="lower --replicas"):
        replica_counts(np.array([5, 1]), 3, max_count=1)


def test_batched_equals_per_layer():
    rng = np.random.default_rng(3)
    load = rng.integers(0, 100, size=(4, 7))
    batched = replica_counts_batched(load, 12, max_count=3)
    assert batched.tolist() == [replica_counts(row, 12, max_count=3).tolist() for row in load]


@settings(max_examples=60, deadline=None)
@given(bins=st.integers(2, 5), cap=st.integers(1, 4), seed=st.integers(0, 10**6))
def test_distinct_bins_never_double_place(bins, cap, seed):
    # Random labels with at most `bins` items per label, put in random order by the "first
    # allowed bin" rule (the worst for conflicts): every bin ends full, no label twice in a bin.
    rng = np.random.default_rng(seed)
    n = bins * cap
    labels = []
    lab = 0
    while len(labels) < n:
        labels += [lab] * int(rng.integers(1, min(bins, n - len(labels)) + 1))
        lab += 1
    labels = np.array(labels)
    b = DistinctBins(bins, cap, labels, rng.random(n))
    for item in rng.permutation(n):
        b.put(int(item), lambda cand: cand[0])
    assert sorted(i for its in b.items for i in its) == list(range(n))
    for its in b.items:
        assert len(its) == cap
        assert len(set(labels[its])) == cap
    for its, held, load in zip(b.items, b.held, b.load):
        assert held == set(labels[its].tolist())
        assert load == pytest.approx(b.weight[its].sum())

