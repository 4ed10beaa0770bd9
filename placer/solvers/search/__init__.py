"""The constraint-keeping local search that every heuristic uses (``partition``, ``layer_descent``,
the exact models' warm start).

The search works on an *instance layout*: ``gpu [L, P]``, the GPU of every instance (an expert
or one of its replicas, P = G x S slots per layer) of every MoE layer; instance x of layer l is
a copy of expert ``prob.inst_expert[l, x]``. A replica-free layout (P = E) is a ``gpu_of
[L, E]`` table. Every step keeps: exactly S instances per GPU per layer, no two instances of one
expert on one GPU, and the per-layer load cap when one applies.

- :mod:`.problem`: the instance (:class:`~.problem.Problem`, :func:`~.problem.build_problem`),
  its objective, always computed by :mod:`placer.cost.objectives` on the layout's replica GPUs
  ``rg [L, E, R]``, and the placement it stands for (:func:`~.problem.to_placement`).
- :mod:`.moves`: incremental costs of moving or swapping instances (what makes the search fast;
  checked against the objective by the tests).
- :mod:`.refine`: the moves themselves (exact per-layer re-assignment, pairwise swaps, GPU
  relabelling of layer suffixes), :func:`~.refine.refine` and the iterated local search
  :func:`~.refine.perturb_and_refine`.
- :mod:`.feasible`: repairs to exact per-GPU counts, distinct replica GPUs and the load cap.
"""
