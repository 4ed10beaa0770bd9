"""The collector: record routing traces from transformers MoE models by hooking their routers.

Modules: :mod:`~placer.traces.collect.prompts` (prompt files, byte tokens, sequences, batches),
:mod:`~placer.traces.collect.models` (torch/transformers, device, loading a checkpoint or a tiny
random-weight model), :mod:`~placer.traces.collect.hooks` (finding and recording the routers),
:mod:`~placer.traces.collect.shards` (spilling routing to disk) and
:mod:`~placer.traces.collect.collector` (the collection loop). What commands and scripts call is
importable from here; none of it imports torch until it runs.
"""

from placer.traces.collect.collector import CollectResult, collect
from placer.traces.collect.hooks import RouterRecorder, find_routers
from placer.traces.collect.models import (TINY_CONFIGS, LoadedModel, import_torch_transformers, load_model,
                                          resolve_device)
from placer.traces.collect.prompts import read_prompts

__all__ = ["CollectResult", "LoadedModel", "RouterRecorder", "TINY_CONFIGS", "collect", "find_routers",
           "import_torch_transformers", "load_model", "read_prompts", "resolve_device"]
