"""What ``solve`` prints for a person: each figure explained, which way is better, one line on
balance with what to pass, and the inter-node hop cost where per-transition costs can exceed 1."""

from __future__ import annotations

from placer.commands.render import balance_line, hop_scale, metric_rows, solve_summary


def _report(imbalance: dict[str, float], **cons) -> dict:
    metrics = {name: {"in_sample": {"coherent_per_transition": 0.7, "ep_copies_per_token_layer": 1.5,
                                    "max_imbalance": v}} for name, v in imbalance.items()}
    return {"chosen": "partition", "status": "heuristic", "objective_model": "ep-pairwise", "objective": 10.0,
            "bound": 8.0, "gap": 0.2, "notes": [], "metrics": metrics,
            "topology": {"num_gpus": 16, "gpus_per_node": 8, "num_nodes": 2, "hop_intra_node": 1.0,
                         "hop_inter_node": 18.0},
            "constraints": {"replicas": 0, "max_imbalance": None, "objective": "traffic", **cons}}


def test_the_summary_explains_every_figure_and_the_hop_scale():
    text = "\n".join(solve_summary(_report({"solution": 2.0, "contiguous": 1.7, "eplb": 1.02}), {}, "p.json"))
    assert "lower is better" in text and "bound: no placement goes below it" in text
    for column in ("coherent/transition:", "ep copies/token-layer:", "max imbalance:"):
        assert f"  {column}" in text
    assert "18 other node; above 1: inter-node moves" in text
    assert max(len(line) for line in text.splitlines() if not line.startswith("balance:")) <= 150


def test_balance_says_which_baseline_is_better_balanced_and_what_to_pass():
    line = balance_line(_report({"solution": 2.0, "contiguous": 1.7, "eplb": 1.02}))
    assert line.startswith("balance: less balanced than contiguous (1.700) and eplb (1.020)")
    assert "--max-imbalance 1.05" in line and "--replicas 1x" in line and "--objective time" in line
    line = balance_line(_report({"solution": 1.3, "contiguous": 1.7, "eplb": 1.02}, replicas=8, max_imbalance=1.3))
    assert "less balanced than eplb (1.020)" in line and "contiguous" not in line.split(";")[0]
    assert "lower --max-imbalance (now 1.3)" in line and "more --replicas" in line
    assert "as balanced as" in balance_line(_report({"solution": 1.01, "contiguous": 1.7, "eplb": 1.0}))


def test_evaluate_rows_state_the_hop_scale_of_their_topology():
    assert hop_scale({"hop_intra_node": 1.0, "hop_inter_node": None}) == "0 same GPU, 1 another GPU"
    rows = dict(metric_rows({"coherent": {"per_transition": 3.4, "total": 10.0, "inter_node_share": 0.2, "max_link": 5},
                             "topology": {"hop_intra_node": 1.0, "hop_inter_node": 7.0}}))
    assert any("7 other node" in label for label in rows)
