"""One call shape for every placement algorithm (baselines, EPLB, exact models, heuristics).

A solver is a function ``solve(profile, topology, constraints) -> SolveResult`` registered
under a name with :func:`register`. ``moe-place solve --solver NAME``, ``compare`` and ``plan``
look solvers up by that name, so a new algorithm needs no change elsewhere.

Objective units: every ``objective``/``bound`` states its cost model in
``SolveResult.cost_model``. For ``coherent`` the value is ``sum_l sum_ij trans[l,i,j] / K**2 *
hop(g(l,i), g(l+1,j))``: expected hop-weighted layer transitions, summed over the profile's
tokens (divide by tokens x (L-1) for a per-transition mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from placer.errors import PlacerError
from placer.model.placement import Placement
from placer.model.profile import Profile
from placer.model.topology import Topology


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
    options: dict[str, Any] = field(default_factory=dict)

    def slots_per_gpu(self, num_experts: int, num_gpus: int) -> int:
        """S = (E + replicas) / G, or a :class:`PlacerError` that says what would work."""
        total = num_experts + self.replicas
        if self.replicas < 0:
            raise PlacerError(f"--replicas must be >= 0, got {self.replicas}")
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


@dataclass
class SolveResult:
    """A placement and what the solver proved about it.

    ``status``: ``optimal`` (proven), ``feasible`` (time limit hit, bound may exist),
    ``heuristic`` (no optimality claim), ``baseline``.
    """

    placement: Placement
    solver: str
    status: str
    cost_model: str
    objective: float | None = None
    bound: float | None = None
    time_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def gap(self) -> float | None:
        """Relative gap ``(objective - bound) / objective`` for a minimisation; 0 when both are 0."""
        if self.objective is None or self.bound is None:
            return None
        if self.objective <= 0:
            return 0.0 if self.bound >= self.objective - 1e-9 else None
        return max(0.0, (self.objective - self.bound) / self.objective)

    def summary(self) -> dict[str, Any]:
        gap = self.gap
        return {"solver": self.solver, "status": self.status, "cost_model": self.cost_model,
                "objective": self.objective, "bound": self.bound,
                "gap": None if gap is None or math.isnan(gap) else gap,
                "time_s": self.time_s, **self.details}


SolverFn = Callable[[Profile, Topology, Constraints], SolveResult]
_SOLVERS: dict[str, SolverFn] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register(name: str, description: str = "") -> Callable[[SolverFn], SolverFn]:
    """Decorator: make ``fn`` available as solver ``name``."""
    def deco(fn: SolverFn) -> SolverFn:
        _SOLVERS[name] = fn
        _DESCRIPTIONS[name] = description or (fn.__doc__ or "").strip().split("\n")[0]
        return fn
    return deco


def get_solver(name: str) -> SolverFn:
    _load_all()
    if name not in _SOLVERS:
        raise PlacerError(f"unknown solver '{name}'; choose one of: {', '.join(sorted(_SOLVERS))}")
    return _SOLVERS[name]


def available_solvers() -> dict[str, str]:
    _load_all()
    return dict(sorted(_DESCRIPTIONS.items()))


def _load_all() -> None:
    """Import the solver modules so their ``@register`` lines run (cheap: no backend imports)."""
    import importlib
    import pkgutil

    import placer.solvers as pkg
    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name != "base":
            importlib.import_module(f"placer.solvers.{mod.name}")
