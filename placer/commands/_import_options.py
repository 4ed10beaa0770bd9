"""Click options shared by every command that reads routing data (import, profile, inspect)."""

from __future__ import annotations

from typing import Any, Callable

import click


def _format_names() -> list[str]:
    from placer.traces.importers.registry import formats
    return list(formats())


def import_options(func: Callable) -> Callable:
    """Add ``--format``, ``--num-experts``, ``--key``, ``--top-k`` and ``--num-hidden-layers``."""
    opts = [
        click.option("--format", "fmt", default=None, metavar="FORMAT",
                     help="Input format (default: detected from extension and content); "
                          "see docs/formats.md or 'moe-place import --list-formats'."),
        click.option("--num-experts", type=click.IntRange(min=1), default=None,
                     help="Number of routed experts E (default: largest id seen + 1)."),
        click.option("--key", default=None,
                     help="Entry to take from a file holding many, e.g. olmoe__arxiv (the error lists the choices)."),
        click.option("--top-k", type=click.IntRange(min=1), default=None,
                     help="Experts per token, for counts that do not say it and raw routed_experts payloads."),
        click.option("--num-hidden-layers", type=click.IntRange(min=1), default=None,
                     help="Layer count of raw int32 SGLang routed_experts payloads."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def load_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """Pop the shared options from a command's keyword arguments for ``load_input``."""
    return {"fmt": kw.pop("fmt"), "num_experts": kw.pop("num_experts"), "key": kw.pop("key"),
            "top_k": kw.pop("top_k"), "num_hidden_layers": kw.pop("num_hidden_layers")}
