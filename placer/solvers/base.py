"""One call shape for every placement algorithm (baselines, EPLB, exact models, heuristics, auto).

A solver is a function ``fn(profile, topology, constraints, params) -> SolveResult`` registered
with :func:`register` under a name, with a frozen dataclass of typed, validated parameters
(``params``; :class:`NoParams` when it has none). Everything else goes through
:func:`solve`, which builds and checks the parameters, times the call and checks the result,
so ``moe-place solve``, ``compare``, ``plan`` and the benchmarks treat every solver alike.

- :class:`Constraints`: what every solver honours (replicas, balance cap, cost model) and how
  long it may run (time limit, seed, backend, threads).
- What a solver reads (``needs``): every solver reads the loads; most also read the pair
  counts of the cost model they minimise (:data:`PAIRS`: transitions for ``coherent``,
  co-activations for ``ep``). :func:`solve` checks that once, before the solver runs, and names
  the solvers that fit the input when it does not (a loads-only input: ``eplb``, the baselines).
- :class:`SolveResult`: the placement, a :class:`Status`, the objective and bound in the units of
  the objective it names (``objective_model``: ``coherent``, ``ep-pairwise``, either ``+ w x max
  GPU load``; see :mod:`placer.cost.objectives`), deterministic ``details``, and wall-clock
  ``timings`` kept apart so that files never depend on the machine's speed.
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable, Mapping

from placer.cost.objectives import COSTS
from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology
from placer.registry import Registry


class Status(StrEnum):
    """What a solver proved about its placement."""

    OPTIMAL = "optimal"        # objective == proven lower bound
    FEASIBLE = "feasible"      # an exact model stopped early; the bound may be below the objective
    HEURISTIC = "heuristic"    # no optimality claim
    BASELINE = "baseline"      # a fixed rule (contiguous, round robin, random)


@dataclass(frozen=True)
class Constraints:
    """What every solver honours.

    - ``replicas``: redundant slots per layer in total (P = E + replicas, P divisible by G).
    - ``max_imbalance``: bound on per-layer max/mean GPU token load (None: unconstrained).
    - ``cost``: the communication model to minimise, ``coherent`` or ``ep``.
    - ``time_limit``: seconds of wall time for the search.
    - ``seed``: all randomness derives from it; same inputs and seed give the same placement.
    - ``backend``: exact-model backend (``cpsat``, ``highs``, ``cbc``, or any PuLP solver name).
    - ``threads``: worker threads for backends (1 keeps CP-SAT deterministic).
    """

    replicas: int = 0
    max_imbalance: float | None = None
    cost: str = "coherent"
    time_limit: float = 60.0
    seed: int = 0
    backend: str | None = None
    threads: int = 1

    def __post_init__(self) -> None:
        if self.replicas < 0:
            raise PlacerError(f"--replicas must be >= 0, got {self.replicas}")
        if self.max_imbalance is not None and not (math.isfinite(self.max_imbalance) and self.max_imbalance >= 1.0):
            raise PlacerError(f"--max-imbalance must be a number >= 1.0 (max/mean load), got {self.max_imbalance}")
        if self.cost not in COSTS:
            raise PlacerError(f"unknown cost model '{self.cost}'; use --cost coherent or --cost ep")
        if not (math.isfinite(self.time_limit) and self.time_limit > 0):
            raise PlacerError(f"--time-limit must be a positive number of seconds, got {self.time_limit:g}")
        if self.threads < 1:
            raise PlacerError(f"--threads must be >= 1, got {self.threads}")

    def slots_per_gpu(self, num_experts: int, num_gpus: int) -> int:
        """S = (E + replicas) / G, or a :class:`PlacerError` that says what would work."""
        total = num_experts + self.replicas
        if total % num_gpus:
            ok_g = [g for g in range(1, total + 1) if total % g == 0 and g <= 1024]
            next_r = (-num_experts) % num_gpus
            while next_r < self.replicas:
                next_r += num_gpus
            raise PlacerError(
                f"{num_experts} experts + {self.replicas} replicas = {total} slots cannot be split evenly over "
                f"{num_gpus} GPUs; use --gpus in {ok_g[:12]} or --replicas {next_r}")
        if self.replicas > num_experts * (num_gpus - 1):
            raise PlacerError(f"--replicas {self.replicas} cannot fit: each expert can have at most one replica per GPU "
                              f"({num_experts * (num_gpus - 1)} redundant slots at most on {num_gpus} GPUs)")
        return total // num_gpus


# ------------------------------------------------------------------------ parameters
def param(default: Any, help: str, *, min: float | None = None, max: float | None = None,
          choices: tuple[Any, ...] | None = None) -> Any:
    """A solver parameter: a dataclass field with its help text and range (checked by :func:`make_params`)."""
    return field(default=default, metadata={"help": help, "min": min, "max": max, "choices": choices})


@dataclass(frozen=True)
class NoParams:
    """A solver without tuning parameters."""


def make_params(cls: type, values: Mapping[str, Any] | None, solver: str) -> Any:
    """An instance of the parameter dataclass ``cls`` from ``values`` (strings from the command
    line are converted to each field's type); unknown names and out-of-range values give one line."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        known = ", ".join(fields) or "none"
        raise PlacerError(f"solver '{solver}' has no parameter '{unknown[0]}'; its parameters: {known} "
                          f"(moe-place solve --list-solvers)")
    hints = typing.get_type_hints(cls)
    out = {name: _convert(value, hints[name], f"{solver} parameter {name}") for name, value in values.items()}
    for name, f in fields.items():
        value = out.get(name, f.default)
        _check_range(value, f, f"{solver} parameter {name}")
    return cls(**out)


def describe_params(cls: type) -> list[dict[str, Any]]:
    """``[{name, type, default, help}]`` of a parameter dataclass (for ``--list-solvers``)."""
    hints = typing.get_type_hints(cls)
    return [{"name": f.name, "type": _type_name(hints[f.name]), "default": f.default,
             "help": f.metadata.get("help", "")} for f in dataclasses.fields(cls)]


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if args else tp
    name = getattr(base, "__name__", str(base))
    return f"{name} or none" if len(typing.get_args(tp)) > len(args) else name


def _convert(value: Any, tp: Any, what: str) -> Any:
    args = typing.get_args(tp)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), tp) if args else tp
    if isinstance(value, str):
        text = value.strip()
        if optional and text.lower() in ("none", "null", ""):
            return None
        try:
            if base is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                return text.lower() in ("true", "1", "yes")
            if base is int:
                return int(text)
            if base is float:
                return float(text)
        except ValueError:
            raise PlacerError(f"{what} must be {_type_name(tp)}, got {value!r}") from None
        return text
    if value is None and optional:
        return None
    if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if base is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if base is bool and isinstance(value, bool):
        return value
    if base is str and isinstance(value, str):
        return value
    raise PlacerError(f"{what} must be {_type_name(tp)}, got {value!r}")


def _check_range(value: Any, f: dataclasses.Field, what: str) -> None:
    if value is None or isinstance(value, bool):
        return
    meta = f.metadata
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise PlacerError(f"{what} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise PlacerError(f"{what} must be a finite number, got {value}")
    if meta.get("min") is not None and value < meta["min"]:
        raise PlacerError(f"{what} must be >= {meta['min']}, got {value}")
    if meta.get("max") is not None and value > meta["max"]:
        raise PlacerError(f"{what} must be <= {meta['max']}, got {value}")


# ----------------------------------------------------------------------------- result
@dataclass
class SolveResult:
    """A placement and what the solver proved about it.

    ``objective`` and ``bound`` are in the units of ``objective_model`` (None where a solver
    cannot compute it, e.g. a loads-only profile). ``details`` is deterministic (it goes into
    placement files); ``timings`` holds wall-clock seconds (printed, never written to a file).
    ``choice``: how the solver was chosen (``auto`` says which it ran and why); ``params``: the
    parameters of the solver that was asked for (set by :func:`solve`).
    """

    placement: Placement
    solver: str
    status: Status
    objective_model: str
    objective: float | None = None
    bound: float | None = None
    bound_method: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    choice: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def gap(self) -> float | None:
        """Relative gap ``(objective - bound) / objective`` for a minimisation; 0 when both are 0."""
        if self.objective is None or self.bound is None:
            return None
        if self.objective <= 0:
            return 0.0 if self.bound >= self.objective - 1e-9 else None
        return max(0.0, (self.objective - self.bound) / self.objective)

    def summary(self) -> dict[str, Any]:
        """The deterministic part as plain data (no timings)."""
        return {"solver": self.solver, "status": str(self.status), "objective_model": self.objective_model,
                "objective": self.objective, "bound": self.bound, "bound_method": self.bound_method,
                "gap": self.gap, "details": self.details, "notes": self.notes}


# --------------------------------------------------------------------------- registry
SolverFn = Callable[[Profile, Topology, Constraints, Any], SolveResult]


# What a solver reads from a Profile besides the loads [L, E], which every solver reads.
PAIRS = "pairs"    # the cost model's pair counts: trans [L-1, E, E] (coherent) or coact [L, E, E] (ep)

PAIR_COUNTS = {"coherent": "inter-layer transition counts", "ep": "co-activation counts"}


def has_pairs(profile: Profile, cost: str) -> bool:
    """Does ``profile`` hold the pair counts the ``cost`` model needs? (One layer has no transitions
    to count, so the coherent cost needs none there.)"""
    if cost == "ep":
        return profile.coact is not None
    return profile.trans is not None or profile.num_layers < 2


@dataclass(frozen=True)
class SolverSpec:
    """A registered solver: its function, parameter class, one-line description, what it can place
    and what it reads (``needs``: :data:`PAIRS`, or nothing beyond the loads)."""

    name: str
    fn: SolverFn
    params: type = NoParams
    description: str = ""
    replicas: bool = False     # can place redundant experts
    needs: tuple[str, ...] = (PAIRS,)

    def fits(self, profile: Profile, cost: str) -> bool:
        """Can this solver run on ``profile`` under the ``cost`` model?"""
        return PAIRS not in self.needs or has_pairs(profile, cost)


SOLVERS: Registry[SolverSpec] = Registry("solver", (
    "placer.solvers.baselines", "placer.solvers.eplb", "placer.solvers.partition", "placer.solvers.exact.models",
    "placer.solvers.exact.moetuner", "placer.solvers.layer_descent", "placer.solvers.auto"))


def register(name: str, description: str, params: type = NoParams, replicas: bool = False,
             needs: tuple[str, ...] = (PAIRS,)) -> Callable[[SolverFn], SolverFn]:
    """Decorator: make ``fn`` the solver ``name`` (see :class:`SolverSpec`)."""
    def deco(fn: SolverFn) -> SolverFn:
        SOLVERS.add(name, SolverSpec(name, fn, params, description, replicas, needs), fn.__module__)
        return fn
    return deco


def get_solver(name: str) -> SolverSpec:
    """The registered solver ``name``, or a one-line error listing the names."""
    return SOLVERS.get(name)


def available_solvers() -> dict[str, str]:
    """Solver names and their descriptions, in registration order."""
    return {name: spec.description for name, spec in SOLVERS.items().items()}


def check_inputs(spec: SolverSpec, profile: Profile, cost: str) -> None:
    """A one-line :class:`PlacerError` unless ``spec`` can run on what ``profile`` holds, naming
    the solvers that can (``eplb`` first: it balances loads and places replicas)."""
    if spec.fits(profile, cost):
        return
    fit = [n for n, s in SOLVERS.items().items() if s.fits(profile, cost) and n != "auto"]
    fit.sort(key=lambda n: n != "eplb")
    other = "coherent" if cost == "ep" else "ep"
    also = f", or --cost {other}" if has_pairs(profile, other) else ""
    has = "loads only" if not has_pairs(profile, other) else f"loads and {PAIR_COUNTS[other]}"
    raise PlacerError(f"solver '{spec.name}' minimises {cost} traffic, which needs {PAIR_COUNTS[cost]}, but this input "
                      f"has {has}; use --solver {fit[0]} (fits this input: {', '.join(fit)}){also}, "
                      f"or give a per-token trace")


def solve(name: str, profile: Profile, topology: Topology, constraints: Constraints,
          params: Any = None) -> SolveResult:
    """Run solver ``name``: build its parameters (a mapping, an instance or None for defaults),
    check that it can use what ``profile`` holds (:func:`check_inputs`), call it, check the
    placement, record its wall time in ``timings["solver_s"]``, and mark a
    result whose objective meets its proven bound as optimal, whatever the algorithm."""
    spec = get_solver(name)
    if params is None or isinstance(params, Mapping):
        params = make_params(spec.params, params, name)
    elif not isinstance(params, spec.params):
        raise TypeError(f"solver {name} takes {spec.params.__name__}, got {type(params).__name__}")
    check_inputs(spec, profile, constraints.cost)
    t0 = time.perf_counter()
    result = spec.fn(profile, topology, constraints, params)
    result.timings.setdefault("solver_s", time.perf_counter() - t0)
    result.params = dataclasses.asdict(params)
    result.placement.validate(f"{result.solver} placement")
    if (result.status in (Status.HEURISTIC, Status.FEASIBLE) and result.objective is not None
            and result.bound is not None and result.objective <= result.bound + 1e-9 * max(1.0, abs(result.objective))):
        result.status = Status.OPTIMAL
    return result
