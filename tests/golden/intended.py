"""The intended differences between the reports recorded on main a0271a5 and today's.

Each change is a step of :func:`migrate_report`, which turns a recorded report into the one the
redesigned code must write for the same case. Placement layouts (``phy2log`` and the header) and
the ``metrics`` of every report are not touched: they must be the same as recorded.

1. ``cost_model`` -> ``objective_model``: it names the objective a solver minimised, not only the
   cost model: ``ep`` is the pairwise co-activation cut (``ep-pairwise``), a joint model with a
   load weight says so (``coherent + 0.5 x max GPU load``).
2. Baselines and EPLB report the objective of the requested cost model (before: the load model's
   sum of busiest-GPU loads, under ``cost_model: load``). For ``--cost coherent`` on all tokens
   that is exactly the recorded in-sample ``metrics.solution.in_sample.coherent_total``.
3. ``bound_method`` (top level) replaces ``details.bound_name`` / ``details.lower_bound_name``;
   for the exact layer-chain programmes it names the programme that proved optimality.
4. ``notes`` (top level) replaces ``details.notes``; ``details.objective_model`` (partition) goes,
   it repeated ``cost_model``.
5. Solver parameters moved from ``constraints`` (``formulation``, ``load_weight``, which applied to
   some solvers only) to ``params``, the typed parameters of the solver that was asked for.
6. A heuristic whose objective meets its proven bound is ``optimal`` (before: partition always
   said ``heuristic``, layer_descent upgraded itself). No recorded case has such a gap of 0.
7. ``layer_descent`` runs the local search ``partition`` uses (:mod:`placer.solvers.search`, from
   the same four starts, no kicks) instead of its own per-layer descent: its layout may differ
   (cases :data:`NEW_LAYOUT`). What depends on the layout is not compared (``phy2log``, the
   report's ``objective`` and ``gap``, ``metrics.solution``); the objective must be at most the
   recorded one. Every other field, the header and the other metrics, still is.
8. ``partition`` computes its objectives through :mod:`placer.cost.objectives` (the value every
   command gives its placement: layers summed in order) instead of numpy's pairwise sum of the
   same per-layer values: the report's ``objective``, ``gap`` and the starts' ``initial`` and
   ``objective`` in ``details`` may differ in the last bits (compared to ``ROUNDING``). The
   layout is the recorded one.
9. ``partition`` is an anytime search (issue 12): after its starts it runs kicks and exact window
   moves until they stop gaining or the time limit ends, instead of exactly 200 kicks. Its layout
   may differ on every case where it ran (:func:`relayout`); the objective must be at most the
   recorded one (main's, never worse). Its starts are the recorded ones (``details.starts``,
   ``best_start``, ``load_cap`` still compared); the work counts (``kicks``, ``kicks_accepted``,
   the new ``stopped_by`` and ``window_moves*`` that replace ``hit_time_limit``) and what depends
   on the layout (``max_imbalance``, step 7's fields) are not.
10. ``auto`` states its size model: where it used to say ``L x E x G = N > 2048: too large to
   prove optimal`` it now says that no exact proof is within reach (the MILP of N binaries would
   not prove in the time limit).

11. ``solve`` minimises predicted step time when it knows the model's expert shape (issue 13);
   no recorded case gives one (``--model``), so they minimise traffic as before and say so: the
   report's ``constraints.objective`` is ``traffic`` and the first note reads :data:`TRAFFIC_NOTE`.

12. On several nodes the ``eplb`` baseline, and ``--solver eplb``, is the better of EPLB's
   hierarchical and global policies on the same replicas (issue 14; before: EPLB's own rule, the
   hierarchical policy, whose cost can be several times the global one's). On those cases
   (:func:`eplb_best_of_both`) ``metrics.eplb`` may differ, never worse in the requested cost
   model, and the report gains ``baselines.eplb`` (the policy kept, EPLB's rule and both scores);
   a case that solves with ``eplb`` gets the kept policy's layout (:func:`relayout`), and its
   ``details`` (``policy``, ``eplb_rule``, ``policies``, ``max_imbalance``) and ``notes`` are
   today's. Cases on one node are unchanged.
13. ``input.fitted_on`` (issue 14): what a placement was fitted on (the trace's digest and the
   token range of the fitting part), for ``compare --split test`` to warn about in-sample scores.
   Recorded reports lack it: :func:`without_fitted_on` checks its shape and drops it before the
   comparison; every other ``input`` field is compared as before.
14. ``partition`` and ``layer_descent`` report the deadline lower bound of
   :mod:`placer.solvers.bounds` (issue 12: b-matching flows, then the projected eigenvalue and
   eigenvalue/degree-split bounds on layer chains, within the time limit; the pooled-replica
   b-matching with replicas) instead of the per-pair b-matching: ``bound`` may be higher, never
   lower than the recorded one (the flows all fit in these cases' time limit) and never above the
   objective; ``bound_method`` names the methods that gave it; ``gap`` follows, and a gap of 0
   makes the status ``optimal`` (step 6). :func:`tighter_bound` checks this and returns the
   expected report with those fields taken from the new one. The exact models still report the
   bound of before (they use it as a cut).

15. With replicas and a load cap, ``partition``'s first start is the replica-free solution
   refined under the cap its first copies must meet (``replica-free, capped``; issue 12, seventh
   session: at DeepSeek-V3 shape the uncapped one's repair doubled its cost). It takes a start's
   place: the recorded starts follow it in their order, less one random start (a random start is
   seeded by its place, so the one whose place it took goes), and ``best_start`` counts it. Where the first copies cannot meet the cap it does not exist and the starts are the
   recorded ones. :func:`capped_start` checks this; the objective is at most the recorded one
   (step 9).

Command lines changed with the options (``tests/golden/cases.py``): ``--load-weight 0.5`` is now
``--param load_weight=0.5``; solve cases without ``--cost`` pass main's default ``--cost coherent``
(the default is now ep, what engines run); cases on 32 and 64 GPUs pass ``--gpus-per-node`` equal to the GPU
count, because the default is now nodes of 8 GPUs when G is a multiple of 8 (one node before).
"""

from __future__ import annotations

import copy
from typing import Any

BASELINES = ("contiguous", "round_robin", "random", "eplb")
TRAFFIC_NOTE = "minimised traffic: the step-time objective needs the model's expert shape (--model)"   # step 11
NEW_LAYOUT = frozenset({"solve_sample_layer_descent_g4", "solve_mixtral_layer_descent_g4"})   # step 7
SEARCH_DETAILS = ("starts", "best_start", "load_cap")   # step 9: what partition's details still compare
LAYOUT_FIELDS = ("objective", "gap")     # step 7: report fields that depend on the layout (and metrics.solution)
ROUNDING = 1e-12                         # step 8: relative difference of a re-ordered float sum
DEADLINE_BOUND = frozenset({"partition", "layer_descent"})   # step 14: solvers reporting the deadline bound
BOUND_FIELDS = ("bound", "bound_method", "gap", "status")    # step 14: what the tighter bound changes


def objective_name(cost: str, load_weight: float = 0.0) -> str:
    base = "ep-pairwise" if cost == "ep" else cost
    return base if not load_weight else f"{base} + {load_weight:g} x max GPU load"


def eplb_best_of_both(old_report: dict[str, Any]) -> bool:
    """Step 12: the case runs on several nodes, where the eplb baseline is the better EPLB policy."""
    return old_report["topology"]["num_nodes"] > 1


def relayout(name: str, old_report: dict[str, Any]) -> bool:
    """Steps 7, 9 and 12: the case's layout may differ from the recorded one (never worse)."""
    return (name in NEW_LAYOUT or old_report["solver"] == "partition"
            or (old_report["solver"] == "eplb" and eplb_best_of_both(old_report)))


def migrate_report(old: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The report today's code writes for the case that recorded ``old`` (see module docstring);
    ``params``: the solver parameters the case asked for (defaults filled in)."""
    r = copy.deepcopy(old)
    details = r["details"]
    cons = r["constraints"]
    load_weight = cons.pop("load_weight")
    cons.pop("formulation")
    r.pop("cost_model")
    solver = r["solver"]
    objective_model = objective_name(cons["cost"], load_weight if solver == "joint" else 0.0)
    bound_method = details.pop("bound_name", None) or details.pop("lower_bound_name", None)
    if details.get("formulation", "").startswith(("layer-chain", "chain of")):
        bound_method = f"exact: {details['formulation']}"
    notes = [TRAFFIC_NOTE, *details.pop("notes", [])]
    cons["objective"] = "traffic"
    details.pop("objective_model", None)
    if solver in BASELINES:
        in_sample = r["metrics"]["solution"]["in_sample"]
        coherent_all_tokens = cons["cost"] == "coherent" and cons["holdout"] is None
        r["objective"] = in_sample["coherent_total"] if coherent_all_tokens else r["objective"]
    if solver == "partition":
        details = {k: v for k, v in details.items() if k in SEARCH_DETAILS}
    chosen = r["chosen"]
    if chosen.startswith("partition (L x E x G = "):
        size = chosen[len("partition (L x E x G = "):].split(" ")[0]
        chosen = ("partition (no exact proof within reach: the layer-chain programme does not apply and the MILP "
                  f"({size} binaries) would not prove in the time limit)")
    status = r["status"]
    if status in ("heuristic", "feasible") and r["gap"] == 0.0:
        status = "optimal"
    out = {"solver": solver, "chosen": chosen, "status": status, "objective_model": objective_model,
           "objective": r["objective"], "bound": r["bound"], "bound_method": bound_method, "gap": r["gap"],
           "notes": notes, "details": details, "params": params, "topology": r["topology"],
           "constraints": cons, "input": r["input"], "metrics": r["metrics"]}
    if eplb_best_of_both(old):
        out["baselines"] = None      # step 12: today's, checked by the test
    return out


def without_fitted_on(report: dict[str, Any]) -> dict[str, Any]:
    """Step 13: ``report`` with ``input.fitted_on`` checked (a token range from 0 within the
    trace, a 16-hex-digit digest) and removed."""
    inputs = dict(report["input"])
    fit = inputs.pop("fitted_on", None)
    if fit is not None:
        lo, hi = fit["tokens"]
        assert lo == 0 and 0 < hi <= fit["of_tokens"] and len(fit["trace_digest"]) == 16, fit
    return {**report, "input": inputs}


def tighter_bound(expected: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """Step 14: ``expected`` with the bound fields of ``report`` after checking that its bound is
    valid against its objective and never weaker than the recorded one (relative ``ROUNDING``)."""
    if expected["solver"] not in DEADLINE_BOUND or expected["bound"] is None:
        return expected
    bound, obj = report["bound"], report["objective"]
    assert bound >= expected["bound"] * (1 - ROUNDING), ("bound weaker than recorded", bound, expected["bound"])
    assert bound <= obj * (1 + ROUNDING), ("bound above the objective", bound, obj)
    assert report["bound_method"].startswith(("coherent hop-weighted", "ep-pairwise hop-weighted")), \
        report["bound_method"]
    assert report["status"] == ("optimal" if report["gap"] == 0.0 else expected["status"]), report["status"]
    return {**expected, **{k: report[k] for k in BOUND_FIELDS}}


CAPPED_START = "replica-free, capped"    # step 15


def capped_start(expected: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """Step 15: ``expected`` with ``details.starts`` and ``best_start`` of ``report`` when its
    first start is the capped replica-free one, after checking that the rest are the recorded
    starts in order less one random start, and that ``best_start`` is the cheapest start."""
    got = report.get("details", {}).get("starts")
    if expected["solver"] != "partition" or not got or got[0]["start"] != CAPPED_START:
        return expected
    want = expected["details"]["starts"]
    assert len(got) == len(want), (got, want)

    def same(new: dict, old: dict) -> bool:
        return new["start"] == old["start"] and all(abs(new[k] - old[k]) <= ROUNDING * max(1.0, abs(old[k]))
                                                    for k in ("initial", "objective"))

    # the recorded starts, less one random start, are the new ones after the first, in order
    assert any(all(map(same, got[1:], want[:i] + want[i + 1:]))
               for i, old in enumerate(want) if old["start"] == "random"), (got, want)
    best = report["details"]["best_start"]
    assert got[best]["objective"] == min(s["objective"] for s in got), (best, got)
    details = {**expected["details"], "starts": got, "best_start": best}
    return {**expected, "details": details}
