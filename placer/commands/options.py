"""Options every command shares, with one name, one type and one default each.

The values are checked by the parameter types of :mod:`placer.commands.types`. Option groups are decorators
(:func:`topology_options`, :func:`constraint_options`, ...), composed the way click composes
commands, so the same option reads the same everywhere.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from placer.errors import PlacerError
from placer.commands.types import (BACKEND, BANDWIDTH_FILE, FRACTION, IMBALANCE, NON_NEGATIVE, OUTPUT_PATH, POSITIVE_INT,
                                   SECONDS, KeyValue, Registered, Replicas)
from placer.model.topology import DEFAULT_GPUS_PER_NODE

def _apply(fn: Callable, options: list[Callable]) -> Callable:
    for opt in reversed(options):
        fn = opt(fn)
    return fn


# ------------------------------------------------------------------------ groups
def topology_options(fn: Callable) -> Callable:
    """``--gpus-per-node``, ``--inter-node-cost``, ``--topology`` (see :meth:`Topology.for_cluster`)."""
    return _apply(fn, [
        click.option("--gpus-per-node", type=POSITIVE_INT, default=None,
                     help=f"GPUs per node [default: {DEFAULT_GPUS_PER_NODE} when --gpus is a multiple of "
                          f"{DEFAULT_GPUS_PER_NODE}, else all in one node; evaluate: the placement's own]."),
        click.option("--inter-node-cost", type=NON_NEGATIVE, default=None,
                     help="Hop cost of a cross-node transfer, same-node = 1 [default: NVLink/NIC bandwidth ratio, 18]."),
        click.option("--topology", "topology_file", type=BANDWIDTH_FILE, default=None,
                     help="G x G bandwidth matrix in bytes/s (.npy or text) instead of uniform nodes."),
    ])


def constraint_options(fn: Callable) -> Callable:
    """What every solver honours: ``--cost``, ``--replicas``, ``--max-imbalance``,
    ``--time-limit``, ``--seed``, ``--backend``, ``--threads``."""
    return _apply(fn, [
        click.option("--cost", type=click.Choice(["ep", "coherent"]), default="ep", show_default=True,
                     help="Communication model: ep (standard expert parallelism, what SGLang, vLLM, DeepEP and "
                          "Megatron run: two all-to-alls a layer) or coherent (ExFlow: one exchange per layer "
                          "transition)."),
        click.option("--replicas", type=Replicas(), default="0", show_default=True,
                     help="Redundant expert slots per layer: a count (16) or per GPU (1x)."),
        click.option("--max-imbalance", type=IMBALANCE, default=None, help="Bound on per-layer max/mean GPU load."),
        click.option("--time-limit", type=SECONDS, default=60.0, show_default=True,
                     help="Seconds of search per solve."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of every randomised step."),
        click.option("--backend", type=BACKEND, default=None,
                     help="Exact backend: cpsat (default), highs, cbc, or a PuLP solver name."),
        click.option("--threads", type=POSITIVE_INT, default=1, show_default=True,
                     help="Backend threads (1 is deterministic)."),
    ])


def param_option(fn: Callable) -> Callable:
    """``--param NAME=VALUE`` (repeatable): a solver's typed parameters (``--list-solvers``)."""
    return click.option("--param", "params", type=KeyValue(), multiple=True, metavar="NAME=VALUE",
                        help="Solver parameter, repeatable, e.g. --param starts=16 (see --list-solvers).")(fn)


def params_dict(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """``--param`` pairs as a dict; a name given twice is an error."""
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise PlacerError(f"--param {key} is given twice; give each parameter once")
        out[key] = value
    return out


def holdout_option(default: float | None, help: str) -> Callable:
    """``--holdout F``: the share of sequences held out (the last F of them)."""
    return click.option("--holdout", type=FRACTION, default=default, show_default=default is not None, help=help)


def bytes_options(fn: Callable) -> Callable:
    """``--hidden-size`` and ``--dtype-bytes``: bytes of a token's activation."""
    return _apply(fn, [
        click.option("--hidden-size", type=POSITIVE_INT, default=None,
                     help="Model hidden size: gives bytes and the estimated all-to-all time."),
        click.option("--dtype-bytes", type=POSITIVE_INT, default=2, show_default=True,
                     help="Bytes per activation element (2 for bf16)."),
    ])


def json_option(fn: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON to stdout.")(fn)


def output_option(help: str) -> Callable:
    return click.option("-o", "--output", type=OUTPUT_PATH, required=True, help=help)


SPLITS = ("all", "train", "test")


def split_options(fn: Callable) -> Callable:
    """``--split all|train|test`` and the ``--holdout`` share that defines the test part."""
    return _apply(fn, [
        click.option("--split", type=click.Choice(SPLITS), default="all", show_default=True,
                     help="Score on all sequences, the training part or the held-out (test) part."),
        holdout_option(0.5, "Share of sequences (the last ones) that --split test scores on."),
    ])


def split_part(data: Any, split: str, holdout: float, name: str) -> Any:
    """``all`` of ``data``, or its training / held-out part (the last ``holdout`` of the sequences)."""
    from placer.model.trace import Trace

    if split == "all":
        return data
    if not isinstance(data, Trace):
        raise PlacerError(f"{name}: aggregate counts have no sequences to split; use --split all")
    if not holdout > 0:
        raise PlacerError("--split train/test needs --holdout above 0")
    train, test = data.split(holdout)
    return train if split == "train" else test


def cost_models_option(fn: Callable) -> Callable:
    """``--cost all|coherent|ep|load``: the cost models a report shows."""
    from placer.cost import cost_model_names

    return click.option("--cost", "cost", type=Registered("cost model", cost_model_names, ("all",)), default="all",
                        show_default=True,
                        help="Cost model(s) to report: coherent (ExFlow), ep (two all-to-alls with dedup), load.")(fn)


def scoring_options(fn: Callable) -> Callable:
    """What ``evaluate`` and ``compare`` score with: the cost models, the cluster, the tokens
    (``--split``, ``--holdout``), bytes per token, and ``--json``."""
    return _apply(fn, [cost_models_option, topology_options, split_options, bytes_options, json_option])


def import_options(fn: Callable) -> Callable:
    """How to read routing inputs: ``--format`` (a registered importer; default: detected),
    ``--num-experts``, ``--key``, ``--top-k``, ``--num-hidden-layers``."""
    from placer.traces.importers.registry import formats

    return _apply(fn, [
        click.option("--format", "fmt", type=Registered("input format", lambda: list(formats())), default=None,
                     help="Input format (default: detected from extension and content); "
                          "see docs/formats.md or 'moe-place import --list-formats'."),
        click.option("--num-experts", type=POSITIVE_INT, default=None,
                     help="Number of routed experts E (default: largest id seen + 1)."),
        click.option("--key", default=None,
                     help="Entry to take from a file holding many, e.g. olmoe__arxiv (the error lists the choices)."),
        click.option("--top-k", type=POSITIVE_INT, default=None,
                     help="Experts per token, for counts that do not say it and raw routed_experts payloads."),
        click.option("--num-hidden-layers", type=POSITIVE_INT, default=None,
                     help="Layer count of raw int32 SGLang routed_experts payloads."),
    ])


def load_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """Pop :func:`import_options`' values from a command's keyword arguments for ``load_input``."""
    return {"fmt": kw.pop("fmt"), "num_experts": kw.pop("num_experts"), "key": kw.pop("key"),
            "top_k": kw.pop("top_k"), "num_hidden_layers": kw.pop("num_hidden_layers")}


def step_options(fn: Callable) -> Callable:
    """What the step-time model needs (``docs/time-model.md``): ``--hardware``, ``--model``,
    ``--expert-intermediate-size``, ``--phase``, ``--tokens-per-step``. ``--hidden-size`` and
    ``--dtype-bytes`` come from :func:`bytes_options`."""
    return _apply(fn, [
        click.option("--hardware", default="h100", show_default=True, metavar="NAME|FILE",
                     help="GPU preset (h100, h200, h800, b200, a100, mi300x) or a JSON file of its figures."),
        click.option("--model", "model_shape", default=None, metavar="NAME|CONFIG",
                     help="The model's expert shape: a known model (deepseek-v2-lite, deepseek-v3, mixtral-8x7b, "
                          "olmoe-1b-7b, qwen3-30b-a3b) or its config.json; enables the step-time model."),
        click.option("--expert-intermediate-size", type=POSITIVE_INT, default=None,
                     help="Routed experts' intermediate size (with --hidden-size, instead of --model)."),
        click.option("--phase", type=click.Choice(["prefill", "decode"]), default="prefill", show_default=True,
                     help="prefill (compute-bound, 8192 tokens a step) or decode (memory-bound, 256)."),
        click.option("--tokens-per-step", type=POSITIVE_INT, default=None,
                     help="Tokens in one forward step [default: 8192 prefill, 256 decode]."),
    ])


def step_spec(hardware: str, model_shape: str | None, hidden_size: int | None, intermediate: int | None,
              dtype_bytes: int, phase: str, tokens_per_step: int | None):
    """The :class:`~placer.cost.time.StepSpec` the options describe, or None without an expert shape."""
    import dataclasses

    from placer.cost.time import PHASES, StepSpec
    from placer.model.experts import ExpertShape, expert_shape
    from placer.model.hardware import hardware as hardware_of

    if model_shape is not None:
        shape = expert_shape(model_shape)
        if hidden_size is not None:
            shape = dataclasses.replace(shape, hidden_size=hidden_size)
        if intermediate is not None:
            shape = dataclasses.replace(shape, intermediate_size=intermediate)
    elif hidden_size is not None and intermediate is not None:
        shape = ExpertShape(hidden_size, intermediate, name=f"H={hidden_size}, I={intermediate}")
    else:
        return None
    shape = dataclasses.replace(shape, dispatch_bytes=float(dtype_bytes), combine_bytes=float(dtype_bytes))
    return StepSpec(hardware_of(hardware), shape, tokens_per_step or PHASES[phase], phase)
