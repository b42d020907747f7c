"""The rule a would-be next version of rra-bert-m is judged by in ``benches/layers.sh`` and
``benches/rows.sh``, in one place. Fixed before the first of those runs (commit 22a0781):

(a) its cost per pair is at most 2x rra-bert-mini 0.5.0's on both the dev-set and the held-out
    pairs (``benches/students.py``, interleaved rounds, one run);
(b) its dev-set MRR, through the service, is not below rra-bert-m 0.6.2's in either language;
(c) its held-out NDCG@10 minus 0.6.2's has a paired 95% interval not wholly below 0.

It reads a run folder's ``eval/eval.json`` (``evaluate``, the candidates listed before 0.6.2 so
each is compared with it), ``ood.json`` (``ood``) and ``cost.json`` (``students.py``)."""

from __future__ import annotations

import json

CURRENT, MINI = "rra-bert-m", "rra-bert-mini-0.5.0"
RULE = ("cost per pair at most 2x rra-bert-mini 0.5.0 on both pair sets; dev-set MRR not below "
        "rra-bert-m 0.6.2's in either language; held-out NDCG@10 minus 0.6.2's: paired 95% interval "
        "not wholly below 0")


def judge(run_dir: str, names: list[str]) -> dict[str, dict]:
    """Each candidate's figures and checks, and 0.6.2's figures (no checks), by name."""
    ev, ood, cost = (json.load(open(f"{run_dir}/{p}")) for p in ("eval/eval.json", "ood.json", "cost.json"))

    def mrr(name, lang):
        return ood["sets"][lang]["rankers"][name]["MRR"]

    rows = {}
    for name in names + [CURRENT]:
        c = {p: cost[p]["ms_per_pair"] for p in ("ood", "heldout")}
        row = {"heldout_ndcg10": {g: ev["methods"][name][f"ground_truth/{g}"]["NDCG@10"] for g in ("all", "en", "ko")},
               "ood_mrr": {lang: mrr(name, lang) for lang in ("en", "ko")},
               "cost_vs_mini": {p: round(c[p][name] / c[p][MINI], 3) for p in c}}
        if name != CURRENT:
            comp = next(x for x in ev["comparisons"] if x["a"] == name and x["b"] == CURRENT and x["group"] == "all")
            checks = {"cost": all(r <= 2.0 for r in row["cost_vs_mini"].values()),
                      "ood_en": row["ood_mrr"]["en"] >= mrr(CURRENT, "en"),
                      "ood_ko": row["ood_mrr"]["ko"] >= mrr(CURRENT, "ko"),
                      "in_domain": comp["ci95"][1] >= 0}
            row.update(heldout_minus_current={k: comp[k] for k in ("mean_difference", "ci95")},
                       checks=checks, passes=all(checks.values()))
        rows[name] = row
    return rows
