"""Options every command shares, with one name, one type and one default each.

Click parameter types check values at parse time (a bad value is a one-line usage error, exit 2):
:data:`POSITIVE_INT`, :data:`SECONDS` (finite, > 0), :data:`FRACTION` ([0, 1)), :data:`IMBALANCE`
(>= 1), :class:`Replicas` (a count or ``Nx``, N per GPU), :class:`IntList` (``4,8,16``),
:class:`Size` (``80GiB``), :class:`Bandwidth` (``intra=900GB/s,inter=50GB/s``) and
:class:`KeyValue` (``name=value`` for ``--param``). Option groups are decorators
(:func:`topology_options`, :func:`constraint_options`, ...), composed the way click composes
commands, so the same option reads the same everywhere.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable

import click

from placer.errors import PlacerError
from placer.model.topology import DEFAULT_GPUS_PER_NODE, NIC_BYTES_PER_S, NVLINK_BYTES_PER_S

_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
          "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}


class _Number(click.ParamType):
    """A finite float or int within ``[lo, hi)`` (``lo_open``: excluding ``lo``)."""

    def __init__(self, kind: type, lo: float | None, hi: float | None = None, lo_open: bool = False, what: str = ""):
        self.kind, self.lo, self.hi, self.lo_open = kind, lo, hi, lo_open
        self.name = what or kind.__name__
        self.what = what

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, self.kind) and not isinstance(value, bool):
            v = value
        else:
            try:
                v = self.kind(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not {'an integer' if self.kind is int else 'a number'}", param, ctx)
        if isinstance(v, float) and not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if (self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo))) or \
                (self.hi is not None and v >= self.hi):
            self.fail(f"{value!r} is not a {self.what}", param, ctx)
        return v


POSITIVE_INT = _Number(int, 1, what="integer >= 1")
NON_NEGATIVE_INT = _Number(int, 0, what="integer >= 0")
SECONDS = _Number(float, 0.0, lo_open=True, what="seconds > 0")
FRACTION = _Number(float, 0.0, 1.0, what="share between 0 and 1 (0 included, 1 not)")
IMBALANCE = _Number(float, 1.0, what="max/mean >= 1")
NON_NEGATIVE = _Number(float, 0.0, what="number >= 0")
POSITIVE_FLOAT = _Number(float, 0.0, lo_open=True, what="number > 0")


class Replicas(click.ParamType):
    """Redundant experts per layer: a count (``16``) or a multiple of the GPU count (``1x``, ``2x``),
    resolved per GPU count by :func:`placer.solvers.replicate.replicas_for`."""

    name = "replicas"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        s = str(value).strip().lower()
        try:
            ok = (0 <= float(s[:-1]) < math.inf) if s.endswith("x") else int(s) >= 0
        except ValueError:
            ok = False
        if not ok:
            self.fail(f"{value!r}: write a count (16) or a per-GPU multiple (1x)", param, ctx)
        return s


class ReplicasList(Replicas):
    """A comma list of :class:`Replicas` specs, e.g. ``0,8,1x``."""

    name = "list"

    def convert(self, value: Any, param: Any, ctx: Any) -> list[str]:
        if isinstance(value, list):
            return value
        out = [super(ReplicasList, self).convert(v, param, ctx) for v in str(value).split(",") if v.strip()]
        return out or ["0"]


class IntList(click.ParamType):
    """A comma list of positive integers, e.g. ``4,8,16``."""

    name = "list"

    def convert(self, value: Any, param: Any, ctx: Any) -> list[int]:
        if isinstance(value, list):
            return value
        try:
            out = [int(x) for x in str(value).split(",") if x.strip()]
        except ValueError:
            self.fail(f"{value!r} must be a comma list of integers, e.g. 4,8,16", param, ctx)
        if not out or min(out) < 1:
            self.fail(f"{value!r} must list positive integers, e.g. 4,8,16", param, ctx)
        return out


class Size(click.ParamType):
    """Bytes: ``80GiB``, ``900GB``, ``1.5e9`` (a ``/s`` suffix is allowed, for bandwidths)."""

    name = "size"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def parse_size(text: Any) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*(?:/s)?\s*", str(text).lower())
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"{text!r} is not a size; write e.g. 80GiB, 900GB/s or 1.5e9")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{text!r} must be a positive size")
    return value


class Bandwidth(click.ParamType):
    """``intra=900GB/s,inter=50GB/s`` -> ``(intra, inter)`` bytes/s; either may be left out."""

    name = "bandwidth"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[float, float]:
        if isinstance(value, tuple):
            return value
        out = {"intra": NVLINK_BYTES_PER_S, "inter": NIC_BYTES_PER_S}
        for part in str(value).split(","):
            if not part.strip():
                continue
            key, sep, v = part.partition("=")
            if not sep or key.strip() not in out:
                self.fail(f"{value!r}: write intra=900GB/s,inter=50GB/s", param, ctx)
            try:
                out[key.strip()] = parse_size(v)
            except ValueError as exc:
                self.fail(f"{key.strip()}: {exc}", param, ctx)
        return out["intra"], out["inter"]


class KeyValue(click.ParamType):
    """``name=value`` (``--param starts=16``); returns the pair."""

    name = "name=value"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, v = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"{value!r}: write name=value, e.g. starts=16", param, ctx)
        return key.strip(), v.strip()


class Registered(click.ParamType):
    """A name from a registry, checked when the option is parsed (so plug-ins registered after the
    command was imported count): ``names()`` lists the valid names, ``extra`` adds fixed ones."""

    def __init__(self, kind: str, names: Callable[[], Any], extra: tuple[str, ...] = ()):
        self.name, self.names, self.extra = kind, names, extra

    def choices(self) -> list[str]:
        return [*self.extra, *self.names()]

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        if value in self.choices():
            return value
        self.fail(f"unknown {self.name} {value!r}; choose one of: {', '.join(self.choices())}", param, ctx)

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return "[" + "|".join(self.choices()) + "]"


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


# =========================================================================== robustness (issue 15)
# Types that check a value completely when it is parsed, before any work: where outputs may be
# written (placer.fileio.check_output_file/_dir), the --topology file, the --backend name.
# placer.cli also refuses an output that is one of the command's inputs.
class OutputFile(click.ParamType):
    """A file to write (:func:`placer.fileio.check_output_file`); the command gets ``path_type``."""

    name = "file"

    def __init__(self, path_type: type = str, folder: bool = False):
        self.path_type, self.folder = path_type, folder
        self.name = "folder" if folder else "file"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from placer.fileio import check_output_dir, check_output_file
        try:
            return self.path_type((check_output_dir if self.folder else check_output_file)(value))
        except PlacerError as exc:
            self.fail(str(exc), param, ctx)


class BandwidthFile(click.ParamType):
    """``--topology FILE``: a readable ``[G, G]`` bandwidth matrix (bytes/s), checked when parsed."""

    name = "file"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from placer.model.topology import Topology, read_bandwidth_matrix
        try:
            Topology.from_bandwidth_matrix(read_bandwidth_matrix(value), name=str(value))
        except PlacerError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


class Backend(click.ParamType):
    """``--backend``: cpsat, highs, cbc (or an alias) or a PuLP solver name."""

    name = "backend"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from placer.solvers.exact.milp import backend_name
        if backend_name(str(value)) in ("cpsat", "highs", "cbc"):
            return value
        try:
            import pulp
            names = list(dict.fromkeys(pulp.listSolvers()))
        except ImportError:
            names = []
        if value in names:
            return value
        self.fail(f"unknown backend {value!r}; use cpsat, highs, cbc" + (f" or a PuLP solver: {', '.join(names)}" if names else ""),
                  param, ctx)


OUTPUT_FILE, OUTPUT_PATH, OUTPUT_DIR = OutputFile(), OutputFile(Path), OutputFile(folder=True)
BANDWIDTH_FILE, BACKEND = BandwidthFile(), Backend()


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
