"""Traces in: reading routing inputs (:mod:`~placer.traces.load`), importers for other tools'
formats (:mod:`~placer.traces.importers`) and the transformers collector
(:mod:`~placer.traces.collect`). The Trace itself and its native file are in :mod:`placer.model`."""
