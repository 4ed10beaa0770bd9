"""``moe-place export PLACEMENT --format F -o OUT``: write a placement for a serving engine."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from placer import export as ex
from placer.errors import PlacerError, missing_package
from placer.fileio import atomic_path, write_json, write_npz
from placer.model.placement import Placement


def _loads_for_counts(placement: Placement, trace_path: str | None) -> np.ndarray:
    """``[L, E]`` token picks per expert: from ``--trace``, else the placement's ``report.load``."""
    if trace_path is not None:
        from placer.model.profile import Profile
        from placer.traces.load import load_input

        data = load_input(trace_path)
        if (data.num_layers, data.num_experts) != (placement.num_layers, placement.num_experts):
            raise PlacerError(f"{trace_path}: the trace has {data.num_layers} layers x {data.num_experts} experts but the "
                              f"placement has {placement.num_layers} x {placement.num_experts}; use the trace it was solved on")
        return data.load if isinstance(data, Profile) else Profile.from_trace(data, coact=False, trans=False).load
    load = placement.report.get("load") if isinstance(placement.report, dict) else None
    if load is None:
        raise PlacerError("--format sglang-counts needs expert loads: pass --trace TRACE.npz (the trace the placement was solved on)")
    return np.asarray(load)


def _write_pt(out: Path, arrays: dict[str, np.ndarray]) -> None:
    try:
        import torch
    except ImportError:
        raise missing_package("torch", "writing .pt files") from None
    with atomic_path(out) as tmp:
        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, tmp)


@click.command("export")
@click.argument("placement_path", metavar="PLACEMENT", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(ex.FORMATS), required=True, help="Output format.")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), required=True,
              help="Output file (eplb: .npz, or .pt with torch installed).")
@click.option("--moe-layers", default=None,
              help="Decoder layer number of each placement layer, e.g. 1-26 or 0,2,4 (default: from the "
                   "placement's trace metadata, else 0..L-1).")
@click.option("--num-hidden-layers", type=int, default=None,
              help="All decoder layers of the model, dense ones included (default: from the trace metadata, "
                   "else last MoE layer + 1).")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False), default=None,
              help="sglang-counts: the trace (or counts profile) whose per-expert loads to write.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary to stdout.")
def command(placement_path: str, fmt: str, out: str, moe_layers: str | None, num_hidden_layers: int | None,
            trace_path: str | None, as_json: bool) -> None:
    """Export PLACEMENT (a moe-place placement JSON) for a serving engine.

    Formats: sglang (--init-expert-location file; prints the launch flags), sglang-counts
    (expert loads for SGLang's own balancer), eplb (phy2log/log2phy/logcnt arrays), vllm-ascend
    (expert map JSON), csv (layer,gpu,slot,expert).
    """
    placement = Placement.load(placement_path)
    layers = ex.parse_layers(moe_layers) if moe_layers is not None else None
    out_path = Path(out)
    summary: dict = {"format": fmt, "output": str(out_path), "layers": placement.num_layers,
                     "experts": placement.num_experts, "gpus": placement.num_gpus,
                     "redundant_experts": placement.num_replicas}
    if fmt in ("sglang", "sglang-counts") and out_path.suffix != ".json":
        # SGLang reads a file only when the name ends in .json (.pt: torch); any other
        # string it parses as inline JSON and fails.
        raise PlacerError(f"{out_path}: SGLang only reads --init-expert-location files named *.json; "
                          f"use -o {out_path.with_suffix('.json')}")
    if fmt == "sglang":
        obj = ex.to_sglang(placement, layers, num_hidden_layers)
        write_json(out_path, obj, indent=None)
        flags = ex.sglang_launch_flags(placement, out_path)
        rows = obj[ex.SGLANG_KEY]
        summary.update(num_hidden_layers=len(rows), physical_experts=len(rows[0]), launch_flags=flags)
        message = (f"wrote {out_path}: {len(rows)} decoder layers x {len(rows[0])} physical experts "
                   f"({placement.num_replicas} redundant) on {placement.num_gpus} EP ranks\n"
                   f"launch SGLang with: {flags}")
    elif fmt == "sglang-counts":
        moe, H = ex.resolve_layers(placement, layers, num_hidden_layers)
        obj = ex.to_sglang_counts(_loads_for_counts(placement, trace_path), moe, H)
        write_json(out_path, obj, indent=None)
        summary.update(num_hidden_layers=H,
                       launch_flags=f"--ep-size {placement.num_gpus} --ep-num-redundant-experts "
                                    f"{placement.num_replicas} --init-expert-location {out_path}")
        message = (f"wrote {out_path}: expert loads for {H} decoder layers; SGLang balances them itself with: "
                   f"{summary['launch_flags']}")
    elif fmt == "eplb":
        arrays = ex.to_eplb(placement)
        if out_path.suffix == ".pt":
            _write_pt(out_path, arrays)
        else:
            write_npz(out_path, arrays)
        message = f"wrote {out_path}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items())
    elif fmt == "vllm-ascend":
        write_json(out_path, ex.to_vllm_ascend(placement), indent=1)
        message = f"wrote {out_path}: vllm-ascend expert map, {placement.num_layers} MoE layers on {placement.num_gpus} devices"
    else:
        text = ex.to_csv(placement)
        with atomic_path(out_path) as tmp:
            tmp.write_text(text)
        message = f"wrote {out_path}: {placement.num_layers * placement.num_slots} rows layer,gpu,slot,expert"
    click.echo(json.dumps(summary) if as_json else message)
