"""Importers: turn routing dumps of other tools into a :class:`Trace` (or a :class:`Profile`).

Every format is an ``Importer`` registered under a name (``moe-place import --format NAME``) in
:mod:`~placer.traces.importers.registry`, which also detects the format of a file from its
extension and a look at its content. Formats that carry only aggregate counts (per-layer loads,
layer-pair matrices) give a Profile, not a Trace. Reading files (several at once, native files
first) is :mod:`placer.traces.load`.

The exact layouts are in ``docs/formats.md``. Modules, one per format family:
``arrays`` (``.npz`` with ``expert_ids``, ExFlow ``.npy``), ``counts`` (native counts, OLMoE and
fiddler count files), ``layer_json`` (per-layer JSON), ``jsonl`` (per-(token, layer) records,
Megatron router traces, SGLang/vLLM ``routed_experts``) and ``sglang`` (SGLang
expert-distribution recorder ``.pt`` dumps; needs torch); ``common`` holds what they share.
"""
