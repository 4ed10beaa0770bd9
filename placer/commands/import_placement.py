"""``import-placement SRC``: read an engine's placement file back as a moe-place placement.

Reads any format :mod:`placer.export` registers a reader for (SGLang's ``--init-expert-location``
map, vllm-ascend's expert map, our CSV, the ``eplb`` ``.npz``/``.pt``, our own JSON), writes the
canonical placement JSON, and with ``--migrate-to NEW`` reports how many expert weights move to
go from SRC to NEW. ``moe-place import`` hands placement files to :func:`import_placement` too.
"""

from __future__ import annotations

import json

import click

from placer.commands.types import NON_NEGATIVE, OUTPUT_FILE, POSITIVE_INT
from placer.errors import PlacerError
from placer.export import ReadOptions, migration_cost, parse_layers, read_placement_any
from placer.model.placement import Placement


def import_placement(src: str, out: str | None, num_experts: int | None, gpus: int | None,
                     gpus_per_node: int | None, moe_layers: str | None, target: str | None = None,
                     expert_bytes: float | None = None) -> tuple[dict, str]:
    """Read placement file SRC, save it to OUT and/or price the move to TARGET.

    Returns the ``--json`` summary and the lines for people. ``moe_layers`` is the option's text
    (e.g. ``"1-26"``); ``expert_bytes`` the bytes of one expert's weights.
    """
    if out is None and target is None:
        raise PlacerError("nothing to do: give -o OUT.json to save the placement and/or --migrate-to NEW.json")
    if expert_bytes is not None and expert_bytes < 0:
        raise PlacerError(f"--expert-bytes must be non-negative, got {expert_bytes}")
    layers = tuple(parse_layers(moe_layers)) if moe_layers is not None else None
    placement = read_placement_any(src, ReadOptions(num_experts, gpus, layers, gpus_per_node))
    summary: dict = {"source": src, "layers": placement.num_layers, "experts": placement.num_experts,
                     "gpus": placement.num_gpus, "slots_per_gpu": placement.slots_per_gpu}
    lines = [f"read {src}: {placement.num_layers} MoE layers, {placement.num_experts} experts, "
             f"{placement.num_gpus} GPUs x {placement.slots_per_gpu} slots"]
    if target is not None:
        migration = migration_cost(placement, Placement.load(target), expert_bytes)
        summary["migration"] = migration
        size = f" ({migration['bytes_total'] / 2**30:.3f} GiB)" if expert_bytes is not None else ""
        lines.append(f"migration to {target}: {migration['moved_total']} expert copies over "
                     f"{migration['layers']} layers{size}; per layer: {migration['moved_per_layer']}")
    if out is not None:
        placement.save(out)
        summary["output"] = out
        lines.append(f"wrote {out}")
    return summary, "\n".join(lines)


@click.command("import-placement")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", type=OUTPUT_FILE, default=None,
              help="Write the placement as moe-place JSON here.")
@click.option("--num-experts", type=POSITIVE_INT, default=None, help="Logical experts E (SGLang maps do not record it).")
@click.option("--gpus", type=POSITIVE_INT, default=None, help="EP ranks G (SGLang maps and .npz do not record it).")
@click.option("--gpus-per-node", type=POSITIVE_INT, default=None, help="GPUs per node (default: all in one node).")
@click.option("--moe-layers", default=None,
              help="SGLang map rows that are MoE layers, e.g. 1-26 (default: every row).")
@click.option("--migrate-to", "target", type=click.Path(dir_okay=False), default=None,
              help="A placement to move to: report the expert weights that must be copied.")
@click.option("--expert-bytes", type=NON_NEGATIVE, default=None, help="Bytes of one expert's weights (for the migration report).")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary to stdout.")
def command(src: str, out: str | None, num_experts: int | None, gpus: int | None, gpus_per_node: int | None,
            moe_layers: str | None, target: str | None, expert_bytes: float | None, as_json: bool) -> None:
    """Import an engine placement file (SGLang, vllm-ascend, CSV, eplb .npz) as a placement."""
    summary, text = import_placement(src, out, num_experts, gpus, gpus_per_node, moe_layers, target, expert_bytes)
    click.echo(json.dumps(summary) if as_json else text)
