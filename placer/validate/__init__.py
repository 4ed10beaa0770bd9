"""The distributed replay behind ``moe-place validate``: a placement on real torch.distributed.

G ranks (gloo on CPU, NCCL on GPUs) each build only the experts the placement puts on them and
replay trace tokens layer by layer with ``all_to_all_single`` dispatch and combine, then check
that the outputs equal a single-process reference and that the bytes sent equal the cost model's
prediction. Modules:

- :mod:`placer.validate.routing`: numpy, who sends which token rows to whom (no torch);
- :mod:`placer.validate.predict`: the cost model's byte prediction for the same tokens (no torch);
- :mod:`placer.validate.model`: seeded expert FFNs and the single-process reference (torch);
- :mod:`placer.validate.worker`: one rank's replay, timing and byte counting (torch);
- :mod:`placer.validate.launch`: spawning G ranks or joining a ``torchrun`` job, failure handling.

Importing this package does not import torch.
"""
