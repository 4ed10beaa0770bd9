"""The collector: hook the router modules of transformers MoE models (torch, lazily)."""

from placer.traces.collect.collector import *  # noqa: F401,F403
from placer.traces.collect.collector import _forward, _import_torch_transformers  # noqa: F401
