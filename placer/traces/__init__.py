"""Traces: the data model, its native file, importers and the transformers collector."""
