"""``moe-place inspect TRACE [--gpus G] [--plots DIR] [--json]``: what a trace offers a placement.

Shows tokens, layers, experts, top-k, per-layer load skew, inter-layer affinity (NMI and mean
max conditional probability of consecutive top-1 choices) and, for G GPUs, the upper bound on
the share of layer transitions a placement can keep on one GPU (definitions in
:mod:`placer.analysis.stats`). Accepts a native trace, a saved profile, or anything importable.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from placer.commands.options import import_options, json_option, load_kwargs
from placer.commands.types import OUTPUT_DIR, POSITIVE_INT
from placer.model.trace import DEFAULT_CHUNK_TOKENS


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def render(stats: dict) -> str:
    """The terminal table of :func:`placer.analysis.stats.summarize` output."""
    rows = [("input", stats["input"]), ("kind", stats["kind"]), ("tokens", str(stats["tokens"])),
            ("MoE layers", f"{stats['layers']} (model layers {_span(stats['moe_layers'])})"),
            ("experts", str(stats["experts"])), ("top-k", str(stats["top_k"]))]
    if stats.get("sequences") is not None:
        rows.append(("sequences", str(stats["sequences"])))
    sk = stats["load_skew"]
    rows.append(("load skew max/mean", f"mean {sk['mean']:.2f}, min {sk['min']:.2f}, max {sk['max']:.2f} over layers"))
    aff = stats["affinity"]
    if aff is None:
        rows.append(("affinity", "n/a (no layer-pair counts: loads only)"))
    else:
        rows.append(("NMI of top-1 (l, l+1)", _fmt(aff["nmi_top1"]["mean"])))
        rows.append(("mean max P(next|cur)", _fmt(aff["max_cond_prob_top1"]["mean"])))
    loc = stats.get("locality")
    if loc is not None:
        head = f"locality bound, {loc['gpus']} GPUs"
        rows.append((head, f"top-1 {_fmt(loc['bound_top1'])}, all K x K pairs {_fmt(loc['bound_pairs'])} "
                           f"(S={loc['slots_per_gpu']}; random placement keeps {loc['random_share']:.3f}, "
                           f"contiguous keeps {_fmt(loc.get('contiguous_pairs'))} of K x K pairs)"))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _span(layers: list[int]) -> str:
    if layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}"
    return ",".join(map(str, layers))


@click.command("inspect")
@click.argument("sources", nargs=-1, required=True, type=click.Path(dir_okay=True))
@import_options
@click.option("--gpus", type=POSITIVE_INT, default=None, help="GPU count for the locality bound.")
@click.option("--plots", "plots", type=OUTPUT_DIR, default=None, help="Write PNG plots into this folder.")
@click.option("--chunk-tokens", type=POSITIVE_INT, default=DEFAULT_CHUNK_TOKENS, show_default=True,
              help="Tokens read per chunk (bounds memory).")
@json_option
def command(sources: tuple[str, ...], gpus: int | None, plots: str | None, chunk_tokens: int, as_json: bool, **kw) -> None:
    """Routing statistics of SOURCES: a trace, a profile, or anything importable."""
    from placer.analysis.stats import summarize
    from placer.fileio import to_jsonable
    from placer.model.profile import Profile
    from placer.traces.load import load_input, profile_of

    data = load_input(list(sources), **load_kwargs(kw))
    prof = profile_of(data, chunk_tokens, coact=False)
    stats = {"input": ", ".join(sources), "kind": "profile" if isinstance(data, Profile) else "trace",
             "sequences": None if isinstance(data, Profile) else data.num_sequences}
    stats.update(summarize(prof, gpus))
    if plots:
        from placer.analysis.plots import inspect_plots
        stats["plots"] = [str(Path(plots) / n) for n in inspect_plots(prof, Path(plots))]
    if as_json:
        click.echo(json.dumps(to_jsonable(stats)))
    else:
        click.echo(render(stats))
        if plots:
            click.echo(f"plots: {', '.join(stats['plots'])}")
