"""The cost models every placement is judged by (see :mod:`placer.cost.models`)."""

from placer.cost.models import (COST_MODELS, CoherentCost, EPCost, LoadCost, alltoall_time, check_compatible,
                                  coherent_cost, default_home, ep_cost, evaluate, first_occurrence, load_cost,
                                  nearest_pairs, passes_over_trace, replica_gpus, serving_gpus)

__all__ = ["COST_MODELS", "CoherentCost", "EPCost", "LoadCost", "alltoall_time", "check_compatible",
           "coherent_cost", "default_home", "ep_cost", "evaluate", "first_occurrence", "load_cost",
           "nearest_pairs", "passes_over_trace", "replica_gpus", "serving_gpus"]
