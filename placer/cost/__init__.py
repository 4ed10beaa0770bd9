"""The cost models every placement is judged by: ``coherent``, ``ep`` and ``load``.

Notation: L MoE layers, T tokens, top-K, E logical experts, G GPUs, S slots per GPU,
``hop[a, b]`` the topology's unitless hop cost (0 same GPU, 1 same node, ``inter_node_cost``
across nodes). ``docs/cost-models.md`` gives the full definitions; in short:

- **coherent** (ExFlow, one all-to-all per layer; a token stays where its expert ran): a
  token's cost between layers l and l+1 is the mean over its K x K pairs (i at l, j at l+1) of
  ``hop(gpu(l, i), gpu(l+1, j))``; with replicas each pair uses its nearest replicas (minimum
  hop over replica pairs; ties: lowest physical slots). Unit: hop-weighted token transitions.
  :mod:`placer.cost.coherent`.
- **ep** (standard expert parallelism, two all-to-alls per layer with dedup): each token has a
  home GPU (default: sequence s lives on GPU ``s % G``); per layer it is sent once to each
  distinct remote GPU serving one of its top-K experts, and combined back. Unit: token copies
  (and bytes, and seconds, given a hidden size). :mod:`placer.cost.ep`; the replica choice in
  :mod:`placer.cost.routing` and :mod:`placer.cost.cover`.
- **load**: token picks per GPU per layer; a replicated expert's picks split evenly over its
  replicas. Imbalance = max / mean over GPUs. :mod:`placer.cost.load`.

Results: :mod:`placer.cost.results`; times: :mod:`placer.cost.alltoall`; all models in one
JSON-able report: :mod:`placer.cost.report`. The formulas on aggregate counts that solvers
share: :mod:`placer.cost.objectives`.

Tokens a capacity-limited router dropped (``Trace.dropped``) are neither dispatched nor counted,
as in :class:`~placer.model.profile.Profile`.

Everything is vectorised over tokens (no Python loop over tokens) and reads a Trace chunk by
chunk (``Trace.iter_chunks``; the load counts through :meth:`Profile.from_trace`), so memory is
bounded by the chunk and memory-mapped traces of any length work. Speed at DeepSeek-V3 shape:
``docs/benchmarks.md``.
"""

from placer.cost.alltoall import alltoall_time
from placer.cost.coherent import coherent_cost
from placer.cost.cover import DEFAULT_LIMITS, CoverLimits
from placer.cost.ep import default_home, ep_cost, first_occurrence
from placer.cost.inputs import check_compatible, replica_gpus
from placer.cost.load import load_cost
from placer.cost.objectives import nearest_pairs
from placer.cost.registry import COST_MODELS, CostModel, EvalOptions, cost_model_names
from placer.cost.report import default_costs, evaluate, passes_over_trace
from placer.cost.results import CoherentCost, EPCost, LoadCost
from placer.cost.routing import serving_gpus

__all__ = ["COST_MODELS", "CostModel", "EvalOptions", "cost_model_names", "default_costs", "DEFAULT_LIMITS", "CoherentCost", "CoverLimits", "EPCost", "LoadCost", "alltoall_time",
           "check_compatible", "coherent_cost", "default_home", "ep_cost", "evaluate", "first_occurrence",
           "load_cost", "nearest_pairs", "passes_over_trace", "replica_gpus", "serving_gpus"]
