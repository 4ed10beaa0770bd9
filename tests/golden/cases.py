"""Golden cases: CLI runs whose outputs were recorded on main a0271a5, before the redesign.

Every case is a ``moe-place`` command line whose stop does not depend on the machine's speed:
exact models only where they prove optimality by construction (the layer-chain programme, chained
matchings, MoETuner's small ILPs), heuristics with a time limit far above what they use, so that
their own work counts (starts, sweeps, kicks) end them. ``tests/golden/record.py`` writes the
outputs into ``tests/data/golden/``; ``tests/golden/test_golden.py`` re-runs the cases and compares.

Placeholders: ``{sample}`` the shipped ``traces/sample.npz``; ``{esft}``, ``{esft_summary}``,
``{mixtral}`` real traces from ``../shared/traces``; ``{out}`` the output file;
``{golden:NAME}`` the recorded output of another case (an input to this one).

Command lines changed after recording (``tests/golden/intended.py``): two with the options, the
solve cases name main's default ``--cost coherent`` (the default is now ep), and
the ``partition`` cases pass ``--param kicks=200`` (the count main ran; partition is now an
anytime search, and a count keeps the cases quick and machine-independent).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOLDEN_DIR = REPO / "tests" / "data" / "golden"
LONG = "600"   # a limit no case reaches: the solvers' own work counts stop them


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    output: str            # "file": the -o file is the golden output; "stdout": the printed JSON
    suffix: str = ".json"
    shared: bool = False   # needs ../shared/traces

    @property
    def golden(self) -> Path:
        return GOLDEN_DIR / f"{self.name}{self.suffix}"


def _solve(name: str, trace: str, *args: str) -> Case:
    cost = () if "--cost" in args else ("--cost", "coherent")      # main's default cost model
    return Case(name, ("solve", trace, *args, *cost, "--time-limit", LONG, "--seed", "0", "-o", "{out}"), "file",
                shared=trace != "{sample}")


CASES: list[Case] = [
    # --- solve on the shipped sample (8 MoE layers x 32 experts, top-4)
    _solve("solve_sample_contiguous_g4", "{sample}", "--gpus", "4", "--solver", "contiguous"),
    _solve("solve_sample_round_robin_g4", "{sample}", "--gpus", "4", "--solver", "round_robin"),
    _solve("solve_sample_random_g4", "{sample}", "--gpus", "4", "--solver", "random"),
    _solve("solve_sample_eplb_g4", "{sample}", "--gpus", "4", "--solver", "eplb"),
    _solve("solve_sample_eplb_g4_r4", "{sample}", "--gpus", "4", "--replicas", "4", "--solver", "eplb"),
    _solve("solve_sample_eplb_g8_n4_r8", "{sample}", "--gpus", "8", "--gpus-per-node", "4", "--replicas", "8",
           "--solver", "eplb"),
    _solve("solve_sample_partition_g4", "{sample}", "--gpus", "4", "--solver", "partition", "--param", "kicks=200"),
    _solve("solve_sample_partition_g4_holdout", "{sample}", "--gpus", "4", "--solver", "partition", "--param", "kicks=200",
           "--holdout", "0.5"),
    _solve("solve_sample_partition_g4_r4", "{sample}", "--gpus", "4", "--replicas", "4", "--solver", "partition", "--param", "kicks=200"),
    _solve("solve_sample_partition_g4_ep", "{sample}", "--gpus", "4", "--cost", "ep", "--solver", "partition", "--param", "kicks=200"),
    _solve("solve_sample_partition_g8_n4_cap", "{sample}", "--gpus", "8", "--gpus-per-node", "4",
           "--max-imbalance", "1.5", "--solver", "partition", "--param", "kicks=200"),
    _solve("solve_sample_layer_descent_g4", "{sample}", "--gpus", "4", "--solver", "layer_descent"),
    _solve("solve_sample_exflow_g32", "{sample}", "--gpus", "32", "--gpus-per-node", "32", "--solver", "exflow"),
    _solve("solve_sample_auto_g4_r4", "{sample}", "--gpus", "4", "--replicas", "4"),
    # --- Mixtral-8x7B MT-Bench coding (32 x 8, top-2): small enough for the exact programmes
    _solve("solve_mixtral_exflow_g4", "{mixtral}", "--gpus", "4", "--solver", "exflow"),
    _solve("solve_mixtral_exflow_g2_cap", "{mixtral}", "--gpus", "2", "--solver", "exflow", "--max-imbalance", "1.2"),
    _solve("solve_mixtral_joint_g4_ep", "{mixtral}", "--gpus", "4", "--solver", "joint", "--cost", "ep"),
    _solve("solve_mixtral_joint_g2_lw", "{mixtral}", "--gpus", "2", "--solver", "joint", "--param", "load_weight=0.5"),
    _solve("solve_mixtral_moetuner_g4", "{mixtral}", "--gpus", "4", "--solver", "moetuner"),
    _solve("solve_mixtral_layer_descent_g4", "{mixtral}", "--gpus", "4", "--solver", "layer_descent"),
    _solve("solve_mixtral_partition_g4", "{mixtral}", "--gpus", "4", "--solver", "partition", "--param", "kicks=200"),
    _solve("solve_mixtral_partition_g8_r8", "{mixtral}", "--gpus", "8", "--replicas", "8", "--solver", "partition", "--param", "kicks=200"),
    _solve("solve_mixtral_auto_g4", "{mixtral}", "--gpus", "4"),
    _solve("solve_mixtral_auto_g8", "{mixtral}", "--gpus", "8"),
    _solve("solve_mixtral_eplb_g4_r4", "{mixtral}", "--gpus", "4", "--replicas", "4", "--solver", "eplb"),
    # --- ESFT intent (DeepSeek-V2-Lite shape, 26 x 64, top-6): strong affinity
    _solve("solve_esft_partition_g8", "{esft}", "--gpus", "8", "--solver", "partition", "--param", "kicks=200"),
    _solve("solve_esft_partition_g16_n8", "{esft}", "--gpus", "16", "--gpus-per-node", "8", "--solver", "partition", "--param", "kicks=200"),
    _solve("solve_esft_partition_g8_r8", "{esft}", "--gpus", "8", "--replicas", "8", "--solver", "partition", "--param", "kicks=200"),
    _solve("solve_esft_partition_g8_ep_holdout", "{esft}", "--gpus", "8", "--cost", "ep", "--holdout", "0.5",
           "--solver", "partition", "--param", "kicks=200"),
    _solve("solve_esft_auto_g8", "{esft}", "--gpus", "8"),
    _solve("solve_esft_exflow_g64", "{esft}", "--gpus", "64", "--gpus-per-node", "64", "--solver", "exflow"),
    _solve("solve_esft_eplb_g16_n8_r16", "{esft}", "--gpus", "16", "--gpus-per-node", "8", "--replicas", "16",
           "--solver", "eplb"),
    _solve("solve_esft_contiguous_g8", "{esft}", "--gpus", "8", "--solver", "contiguous"),
    # --- evaluate --json (the figures every command reports)
    Case("evaluate_sample_partition", ("evaluate", "{sample}", "{golden:solve_sample_partition_g4}", "--json",
                                       "--hidden-size", "128"), "stdout"),
    Case("evaluate_sample_partition_r4_test", ("evaluate", "{sample}", "{golden:solve_sample_partition_g4_r4}",
                                               "--json", "--split", "test", "--hidden-size", "64"), "stdout"),
    Case("evaluate_sample_eplb_n4", ("evaluate", "{sample}", "{golden:solve_sample_eplb_g8_n4_r8}", "--json",
                                     "--inter-node-cost", "7"), "stdout"),
    Case("evaluate_esft_partition_g16", ("evaluate", "{esft}", "{golden:solve_esft_partition_g16_n8}", "--json",
                                         "--hidden-size", "2048"), "stdout", shared=True),
    Case("evaluate_esft_summary_partition_r8", ("evaluate", "{esft_summary}", "{golden:solve_esft_partition_g8_r8}",
                                                "--json", "--cost", "ep", "--hidden-size", "2048"), "stdout",
         shared=True),
    Case("evaluate_mixtral_exflow", ("evaluate", "{mixtral}", "{golden:solve_mixtral_exflow_g4}", "--json"),
         "stdout", shared=True),
    # --- compare (solver names fitted on the train half, scored held out)
    Case("compare_sample", ("compare", "{sample}", "contiguous", "round_robin", "eplb",
                            "{golden:solve_sample_partition_g4}", "--split", "test", "--json"), "stdout"),
    # --- export files
    Case("export_sample_sglang", ("export", "{golden:solve_sample_partition_g4}", "--format", "sglang",
                                  "-o", "{out}"), "file"),
    Case("export_sample_r4_sglang", ("export", "{golden:solve_sample_partition_g4_r4}", "--format", "sglang",
                                     "-o", "{out}", "--moe-layers", "1-8", "--num-hidden-layers", "10"), "file"),
    Case("export_sample_sglang_counts", ("export", "{golden:solve_sample_partition_g4}", "--format", "sglang-counts",
                                         "--trace", "{sample}", "-o", "{out}"), "file"),
    Case("export_sample_r4_eplb", ("export", "{golden:solve_sample_partition_g4_r4}", "--format", "eplb",
                                   "-o", "{out}"), "file", suffix=".npz"),
    Case("export_sample_r4_vllm_ascend", ("export", "{golden:solve_sample_partition_g4_r4}", "--format",
                                          "vllm-ascend", "-o", "{out}"), "file"),
    Case("export_sample_r4_csv", ("export", "{golden:solve_sample_partition_g4_r4}", "--format", "csv",
                                  "-o", "{out}"), "file", suffix=".csv"),
    Case("export_esft_sglang", ("export", "{golden:solve_esft_partition_g8_r8}", "--format", "sglang",
                                "-o", "{out}"), "file", shared=True),
]


def expand(case: Case, out: Path, traces: dict[str, Path]) -> list[str]:
    """The command line of ``case`` with its placeholders filled in."""
    args = []
    for a in case.args:
        if a == "{out}":
            args.append(str(out))
        elif a.startswith("{golden:"):
            ref = next(c for c in CASES if c.name == a[len("{golden:"):-1])
            args.append(str(ref.golden))
        elif a.startswith("{") and a.endswith("}"):
            args.append(str(traces[a[1:-1]]))
        else:
            args.append(a)
    return args


def trace_paths(shared: Path) -> dict[str, Path]:
    return {"sample": REPO / "traces" / "sample.npz",
            "esft": shared / "esft" / "esft_v2lite_intent.npz",
            "esft_summary": shared / "esft" / "esft_v2lite_summary.npz",
            "mixtral": shared / "mixtral_mtbench" / "coding.json"}
