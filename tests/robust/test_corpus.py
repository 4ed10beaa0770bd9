"""The bad-input corpus (tests/support/corpus.py) through every command that reads each kind, in
this process: every run must end in exit 2 with one line and nothing written (``clean``), never a
traceback, a multi-line error, an output left behind or a changed input.

The full corpus (832 items, about 4,400 runs, ~35 s) is slow; the fast subset runs every 24th
item of every kind. ``plan`` sweeps cluster shapes and reports a shape it cannot build as an
``infeasible`` row naming the problem, with exit 0: those runs are :data:`REPORTED_BY_PLAN`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support import corpus
from support.inproc import corpus_outcomes, memory_cap

# (kind, item, command) that exit 0 by design: the output says what is wrong (checked below)
REPORTED_BY_PLAN = {("topology", "npy_wrong_g", "plan"), ("options", "plan_gpus_100000", "plan")}


def run_corpus(root: Path, every: int = 1) -> list[tuple[str, str, str, str, str]]:
    items = corpus.build(root)
    sample = [it for kind in corpus.KINDS for i, it in enumerate(x for x in items if x.kind == kind) if i % every == 0]
    seen: dict[tuple[str, str, str], str] = {}

    def note(item, command, outcome, run):
        seen[(item.kind, item.name, command)] = run.stdout if outcome == "accepted" else run.stderr

    with memory_cap():
        results = corpus_outcomes(root, sample, note)
    return [(*r, seen[r[:3]]) for r in results]


def check(results) -> None:
    bad = []
    for kind, name, command, outcome, text in results:
        if (kind, name, command) in REPORTED_BY_PLAN:
            if outcome != "accepted" or "infeasible" not in text:
                bad.append(f"{kind}/{name} [{command}]: {outcome}, expected an infeasible row: {text[-200:]}")
        elif outcome != "clean":
            bad.append(f"{kind}/{name} [{command}]: {outcome}: {text.strip()[-200:]}")
    assert not bad, f"{len(bad)} of {len(results)} runs not clean:\n" + "\n".join(bad)


def test_corpus_sample_is_clean(tmp_path):
    results = run_corpus(tmp_path, every=24)
    assert {k for k, *_ in results} == set(corpus.KINDS) - ({"sglang-pt"} if not _has_torch() else set())
    check(results)


@pytest.mark.slow
def test_full_corpus_is_clean(tmp_path):
    results = run_corpus(tmp_path)
    assert len(results) > 4000
    check(results)


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True
