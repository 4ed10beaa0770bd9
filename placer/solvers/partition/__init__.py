"""The scalable heuristic (see :mod:`placer.solvers.partition.solver`)."""

from placer.solvers.partition.solver import PartitionParams, build_problem, objective, solve  # noqa: F401
