"""The scalable heuristic ``partition`` (:mod:`.solver`), its starts (:mod:`.starts`) and its
METIS binding (:mod:`.metis`); the local search it runs is :mod:`placer.solvers.search`."""

from placer.solvers.partition.solver import PartitionParams, solve  # noqa: F401  (registers the solver)
