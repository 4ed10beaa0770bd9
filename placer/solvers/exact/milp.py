"""A small backend-neutral MILP and the three ways to solve it: CP-SAT, HiGHS, PuLP (CBC & co).

The exact models are built once as a :class:`LinearModel` (variables with bounds and
integrality, sparse rows ``lo <= a.x <= hi``, a linear objective to MINIMISE, an optional
warm-start vector) and handed to :func:`solve_model` with a backend name:

- ``cpsat``: OR-Tools CP-SAT. Needs integer coefficients: every row and the objective whose
  coefficients are not integers is multiplied by the smallest power of ten (up to 10^6) that
  makes them integral, then rounded (rows: bounds rounded inward so no infeasible point enters);
  the result says whether anything was rounded. Continuous variables become integer variables,
  which is exact for the models here (their optimal values are sums of integer counts).
  Deterministic: ``num_workers = threads``, fixed ``random_seed``, ``interleave_search`` (2+ workers).
- ``highs``: highspy directly (warm start through ``setSolution``, proven bound from
  ``mip_dual_bound``). Its banner is kept off stdout so ``--json`` output stays clean.
- ``cbc`` (PuLP's ``COIN_CMD``) and any other PuLP solver name (``GUROBI``, ``CPLEX_CMD``, ...).
  CBC ignores its time limit in the root LP, so a watchdog kills the CBC child (by pid) a grace
  after it; the bound is read from CBC's log (PuLP says "Optimal" after a time-limit stop).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from placer.errors import PlacerError, missing_package

# PuLP solver names a user may have, and the pip package that provides each
_PULP_PACKAGES = {"GUROBI": "gurobipy", "GUROBI_CMD": "gurobipy", "CPLEX_PY": "cplex", "CPLEX_CMD": "cplex",
                  "HiGHS": "highspy", "XPRESS_PY": "xpress", "XPRESS": "xpress", "SCIP_PY": "pyscipopt",
                  "COPT": "coptpy", "MOSEK": "mosek", "GLPK_CMD": "glpk (system package)", "CHOCO_CMD": "choco"}


@dataclass
class LinearModel:
    """``min c.x + offset`` s.t. ``lo <= A x <= hi``, ``lb <= x <= ub``, some ``x`` integer."""

    lb: list[float] = field(default_factory=list)
    ub: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    rows: list[tuple[np.ndarray, np.ndarray, float, float]] = field(default_factory=list)
    obj: dict[int, float] = field(default_factory=dict)
    offset: float = 0.0
    hint: np.ndarray | None = None

    @property
    def num_vars(self) -> int:
        return len(self.lb)

    def add_vars(self, shape: tuple[int, ...] | int, lb: float = 0.0, ub: float = 1.0,
                 integer: bool = True) -> np.ndarray:
        """New variables, returned as an index array of ``shape``."""
        n = int(np.prod(shape))
        start = len(self.lb)
        self.lb.extend([float(lb)] * n)
        self.ub.extend([float(ub)] * n)
        self.integer.extend([bool(integer)] * n)
        return np.arange(start, start + n).reshape(shape)

    def add_row(self, idx, coef, lo: float = -math.inf, hi: float = math.inf) -> None:
        idx = np.asarray(idx, dtype=np.int64).ravel()
        coef = np.broadcast_to(np.asarray(coef, dtype=np.float64), idx.shape).ravel()
        nz = coef != 0
        self.rows.append((idx[nz], coef[nz], float(lo), float(hi)))

    def add_obj(self, idx, coef) -> None:
        idx = np.asarray(idx, dtype=np.int64).ravel()
        coef = np.broadcast_to(np.asarray(coef, dtype=np.float64), idx.shape).ravel()
        for i, c in zip(idx.tolist(), coef.tolist()):
            if c:
                self.obj[i] = self.obj.get(i, 0.0) + c

    def objective_of(self, x: np.ndarray) -> float:
        return self.offset + sum(c * x[i] for i, c in self.obj.items())

    def size(self) -> dict[str, int]:
        return {"variables": self.num_vars, "integer_variables": int(sum(self.integer)),
                "rows": len(self.rows), "nonzeros": int(sum(len(r[0]) for r in self.rows))}


@dataclass
class ModelResult:
    """What a backend proved: ``status`` optimal / feasible / infeasible / no_solution."""

    status: str
    values: np.ndarray | None
    objective: float | None
    bound: float | None
    time_s: float
    backend: str
    notes: list[str] = field(default_factory=list)


def backend_name(name: str | None) -> str:
    """Normalise a ``--backend`` value; PuLP solver names keep their PuLP spelling."""
    if name is None:
        return "cpsat"
    low = name.lower().replace("-", "").replace("_", "")
    aliases = {"cpsat": "cpsat", "ortools": "cpsat", "highs": "highs", "highspy": "highs", "cbc": "cbc",
               "pulpcbc": "cbc", "pulpcbccmd": "cbc"}
    return aliases.get(low, name)


def solve_model(model: LinearModel, backend: str | None, time_limit: float, seed: int = 0,
                threads: int = 1) -> ModelResult:
    """Solve ``model`` with ``backend`` within ``time_limit`` seconds (see module docstring)."""
    name = backend_name(backend)
    time_limit = max(0.5, float(time_limit))
    if name == "cpsat":
        return _solve_cpsat(model, time_limit, seed, threads)
    if name == "highs":
        return _solve_highs(model, time_limit, seed, threads)
    return _solve_pulp(model, name, time_limit, seed, threads)


# ------------------------------------------------------------------ CP-SAT
def _int_scale(coefs: np.ndarray) -> tuple[int, bool]:
    """Smallest 10^k (k <= 6) making ``coefs`` integral; ``(scale, rounded)``."""
    for k in range(7):
        s = 10 ** k
        v = coefs * s
        if np.all(np.abs(v - np.round(v)) <= 1e-9 * np.maximum(1.0, np.abs(v))):
            return s, False
    return 10 ** 6, True


def _solve_cpsat(model: LinearModel, time_limit: float, seed: int, threads: int) -> ModelResult:
    try:
        from ortools.sat.python import cp_model
    except ImportError:
        raise missing_package("ortools", "the cpsat backend") from None
    t0 = time.perf_counter()
    notes: list[str] = []
    m = cp_model.CpModel()
    big = 2 ** 50
    xs = []
    for lb, ub in zip(model.lb, model.ub):
        lo = -big if math.isinf(lb) else math.ceil(lb - 1e-9)
        hi = big if math.isinf(ub) else math.floor(ub + 1e-9)
        xs.append(m.new_int_var(lo, hi, ""))
    rounded = False
    for idx, coef, lo, hi in model.rows:
        s, r = _int_scale(coef)
        rounded |= r
        c = np.round(coef * s).astype(np.int64)
        lo_i = -big if math.isinf(lo) else math.ceil(lo * s - 1e-9)
        hi_i = big if math.isinf(hi) else math.floor(hi * s + 1e-9)
        m.add_linear_constraint(cp_model.LinearExpr.weighted_sum([xs[i] for i in idx], c.tolist()), lo_i, hi_i)
    oidx = np.array(sorted(model.obj), dtype=np.int64)
    ocoef = np.array([model.obj[i] for i in oidx.tolist()], dtype=np.float64)
    oscale, r = _int_scale(ocoef) if len(ocoef) else (1, False)
    rounded |= r
    if rounded:
        notes.append("cpsat: non-integer coefficients were scaled by up to 10^6 and rounded")
    oc = np.round(ocoef * oscale).astype(np.int64)
    m.minimize(cp_model.LinearExpr.weighted_sum([xs[i] for i in oidx], oc.tolist()))
    if model.hint is not None:
        for v, h in zip(xs, model.hint):
            m.add_hint(v, int(round(h)))
    solver = cp_model.CpSolver()
    p = solver.parameters
    # translating the model counts against the limit; whichever limit comes first stops the
    # search (a run stopped by the deterministic one is repeatable)
    left = max(0.5, float(time_limit) - (time.perf_counter() - t0))
    p.max_deterministic_time = left
    p.max_time_in_seconds = left
    p.num_workers = max(1, int(threads))
    p.random_seed = int(seed)
    if threads > 1:
        p.interleave_search = True
    p.relative_gap_limit = 0.0
    st = solver.solve(m)
    dt = time.perf_counter() - t0
    if st in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        vals = np.array([solver.value(v) for v in xs], dtype=np.float64)
        obj = model.objective_of(vals)
        bound = solver.best_objective_bound / oscale + model.offset
        status = "optimal" if st == cp_model.OPTIMAL else "feasible"
        if rounded:
            bound = None
            status = "feasible" if status == "optimal" else status
        return ModelResult(status, vals, obj, bound if status != "optimal" else obj, dt, "cpsat", notes)
    if st == cp_model.INFEASIBLE:
        return ModelResult("infeasible", None, None, None, dt, "cpsat", notes)
    return ModelResult("no_solution", None, None, None, dt, "cpsat", notes)


# ------------------------------------------------------------------- HiGHS
@contextlib.contextmanager
def _quiet_stdout():
    """Route file descriptor 1 to /dev/null: highspy prints a banner even with output off."""
    import sys
    try:
        sys.stdout.flush()
        fd = os.dup(1)
    except (OSError, ValueError):
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        yield
    finally:
        os.dup2(fd, 1)
        os.close(fd)
        os.close(null)


def _csr(model: LinearModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts = np.zeros(len(model.rows) + 1, np.int64)
    for k, (idx, _, _, _) in enumerate(model.rows):
        starts[k + 1] = starts[k] + len(idx)
    index = np.concatenate([r[0] for r in model.rows]) if model.rows else np.zeros(0, np.int64)
    value = np.concatenate([r[1] for r in model.rows]) if model.rows else np.zeros(0)
    return starts, index, value


def _solve_highs(model: LinearModel, time_limit: float, seed: int, threads: int) -> ModelResult:
    try:
        import highspy
    except ImportError:
        raise missing_package("highspy", "the highs backend") from None
    t0 = time.perf_counter()
    with _quiet_stdout():
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("time_limit", float(time_limit))
        h.setOptionValue("random_seed", int(seed))
        h.setOptionValue("mip_rel_gap", 0.0)
        h.setOptionValue("threads", max(1, int(threads)))
        n = model.num_vars
        lp = highspy.HighsLp()
        lp.num_col_ = n
        lp.num_row_ = len(model.rows)
        cost = np.zeros(n)
        for i, c in model.obj.items():
            cost[i] = c
        lp.col_cost_ = cost
        lp.offset_ = model.offset
        inf = highspy.kHighsInf
        lp.col_lower_ = np.where(np.isinf(model.lb), -inf, model.lb)
        lp.col_upper_ = np.where(np.isinf(model.ub), inf, model.ub)
        lp.row_lower_ = np.array([-inf if math.isinf(r[2]) else r[2] for r in model.rows])
        lp.row_upper_ = np.array([inf if math.isinf(r[3]) else r[3] for r in model.rows])
        starts, index, value = _csr(model)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.start_ = starts.astype(np.int32)
        lp.a_matrix_.index_ = index.astype(np.int32)
        lp.a_matrix_.value_ = value
        lp.a_matrix_.num_col_ = n
        lp.a_matrix_.num_row_ = len(model.rows)
        lp.integrality_ = [highspy.HighsVarType.kInteger if b else highspy.HighsVarType.kContinuous
                           for b in model.integer]
        h.passModel(lp)
        h.setOptionValue("time_limit", max(0.5, float(time_limit) - (time.perf_counter() - t0)))
        if model.hint is not None:
            sol = highspy.HighsSolution()
            sol.col_value = list(map(float, model.hint))
            sol.value_valid = True
            h.setSolution(sol)
        h.run()
        ms = h.getModelStatus()
        info = h.getInfo()
        sol = h.getSolution()
    dt = time.perf_counter() - t0
    ok = info.primal_solution_status == 2  # kSolutionStatusFeasible
    if ms == highspy.HighsModelStatus.kInfeasible:
        return ModelResult("infeasible", None, None, None, dt, "highs")
    if not ok:
        return ModelResult("no_solution", None, None, None, dt, "highs")
    vals = np.array(sol.col_value, dtype=np.float64)
    obj = model.objective_of(vals)
    bound = float(info.mip_dual_bound)
    if ms == highspy.HighsModelStatus.kOptimal:
        return ModelResult("optimal", vals, obj, obj, dt, "highs")
    return ModelResult("feasible", vals, obj, bound if math.isfinite(bound) else None, dt, "highs")


# -------------------------------------------------------------------- PuLP
def _pulp_solver(name: str, time_limit: float, seed: int, threads: int, log_path: str, warm: bool):
    try:
        import pulp
    except ImportError:
        raise missing_package("pulp", f"the {name} backend") from None
    if name == "cbc":
        return pulp.COIN_CMD(path=_cbc_binary(), msg=False, timeLimit=time_limit, gapRel=0.0, warmStart=warm,
                             threads=max(1, threads), logPath=log_path,
                             options=[f"randomCbcSeed {max(1, seed + 1)}"])
    available = pulp.listSolvers(onlyAvailable=True)
    if name not in pulp.listSolvers():
        raise PlacerError(f"unknown backend '{name}'; use cpsat, highs, cbc or a PuLP solver name "
                          f"({', '.join(pulp.listSolvers())})")
    if name not in available:
        pkg = _PULP_PACKAGES.get(name, name.split("_")[0].lower())
        raise PlacerError(f"backend '{name}' is not available here; install its Python package "
                          f"(pip install {pkg}) and licence, or use --backend cpsat/highs/cbc")
    return pulp.getSolver(name, msg=False, timeLimit=time_limit, warmStart=warm)


def _cbc_binary() -> str:
    """CBC on PATH (``pip install pulp[cbc]``), else the one PuLP bundles (deprecated ``PULP_CBC_CMD``'s)."""
    from pulp.apis import coin_api

    return shutil.which("cbc") or coin_api.pulp_cbc_path


def _children_named(fragment: str) -> list[int]:
    """Pids of this process's direct children whose command name contains ``fragment``."""
    me, out = os.getpid(), []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        if ppid == me and fragment in comm.lower():
            out.append(int(entry))
    return out


def _solve_pulp(model: LinearModel, name: str, time_limit: float, seed: int, threads: int) -> ModelResult:
    import pulp

    t0 = time.perf_counter()
    prob = pulp.LpProblem("placement", pulp.LpMinimize)
    xs = [prob.add_variable(f"x{i}", lowBound=None if math.isinf(lb) else lb, upBound=None if math.isinf(ub) else ub,
                            cat=pulp.LpInteger if integ else pulp.LpContinuous)
          for i, (lb, ub, integ) in enumerate(zip(model.lb, model.ub, model.integer))]
    prob += pulp.LpAffineExpression([(xs[i], c) for i, c in model.obj.items()]) + model.offset
    for k, (idx, coef, lo, hi) in enumerate(model.rows):
        expr = pulp.LpAffineExpression([(xs[i], c) for i, c in zip(idx.tolist(), coef.tolist())])
        if lo == hi:
            prob += (expr == lo), f"r{k}"
        else:
            if not math.isinf(lo):
                prob += (expr >= lo), f"l{k}"
            if not math.isinf(hi):
                prob += (expr <= hi), f"u{k}"
    if model.hint is not None:
        for v, h in zip(xs, model.hint):
            v.setInitialValue(float(round(h)) if v.cat == pulp.LpInteger else float(h))
    with tempfile.TemporaryDirectory(prefix="moe-place-cbc-") as tmp:
        log_path = os.path.join(tmp, "cbc.log")
        time_limit = max(0.5, time_limit - (time.perf_counter() - t0))
        solver = _pulp_solver(name, time_limit, seed, threads, log_path, model.hint is not None)
        killed = threading.Event()
        done = threading.Event()

        def watchdog() -> None:
            # CBC ignores its limit during the root LP: kill our own CBC child by pid.
            if not done.wait(time_limit + max(5.0, 0.2 * time_limit)):
                for pid in _children_named("cbc"):
                    killed.set()
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)

        dog = threading.Thread(target=watchdog, daemon=True)
        dog.start()
        try:
            prob.solve(solver)
        except pulp.PulpSolverError:
            if not killed.is_set():
                raise PlacerError(f"backend {name} failed on the model; try --backend cpsat or highs") from None
        finally:
            done.set()
        log = Path(log_path).read_text() if os.path.exists(log_path) else ""
    dt = time.perf_counter() - t0
    notes = ["cbc: killed after overrunning its time limit (root LP)"] if killed.is_set() else []
    if killed.is_set():
        return ModelResult("no_solution", None, None, None, dt, name, notes)
    if prob.status == pulp.LpStatusInfeasible:
        return ModelResult("infeasible", None, None, None, dt, name, notes)
    if prob.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible) or any(v.varValue is None for v in xs):
        return ModelResult("no_solution", None, None, None, dt, name, notes)
    vals = np.array([v.varValue for v in xs], dtype=np.float64)
    obj = model.objective_of(vals)
    stopped = re.search(r"Result - (Stopped|Time limit)", log) is not None
    if prob.sol_status == pulp.LpSolutionOptimal and not stopped:
        return ModelResult("optimal", vals, obj, obj, dt, name, notes)
    bound = None
    mb = re.search(r"Lower bound:\s*([-0-9.eE+]+)", log)
    if mb:
        bound = float(mb.group(1)) + model.offset if name == "cbc" else None
    return ModelResult("feasible", vals, obj, bound, dt, name, notes)

