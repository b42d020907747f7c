"""The rules a would-be next version of rra-bert-m is judged by in the benches that train or
export candidates, in one place.

Rule 1, for ``benches/layers.sh`` and ``benches/rows.sh``, fixed before the first of those runs
(commit 22a0781):

(a) its cost per pair is at most 2x rra-bert-mini 0.5.0's on both the dev-set and the held-out
    pairs (``benches/students.py``, interleaved rounds, one run; medians over the rounds);
(b) its dev-set MRR, through the service, is not below rra-bert-m 0.6.2's in either language;
(c) its held-out NDCG@10 minus 0.6.2's has a paired 95% interval not wholly below 0.

Rule 2, for ``benches/window.sh``, fixed before its run (this text's commit). (b) judged 50
cases by their sum, so it rewarded whichever int8 error happened to move one of them:
``rows.sh`` found that 0.6.2's standing over its own fp32 model is such moves. Rule 2 judges the
dev sets as (c) judges the held-out queries, and the cost on more rounds:

(a) as rule 1's, the medians over at least 5 interleaved rounds;
(b) per language, the paired 95% bootstrap interval of its reciprocal rank minus 0.6.2's over
    the dev set's cases is not wholly below 0;
(c) as rule 1's.

The issue's goal itself (dev-set MRR at least the teacher's in both languages, and the cost)
is reported beside each verdict, not part of either rule.

It reads a run folder's ``eval/eval.json`` (``evaluate``, the candidates listed before 0.6.2 so
each is compared with it), ``ood.json`` (``ood``) and ``cost.json`` (``students.py``)."""

from __future__ import annotations

import json

import numpy as np

CURRENT, MINI, TEACHER = "rra-bert-m", "rra-bert-mini-0.5.0", "teacher:e5"
RULE = ("cost per pair at most 2x rra-bert-mini 0.5.0 on both pair sets; dev-set MRR not below "
        "rra-bert-m 0.6.2's in either language; held-out NDCG@10 minus 0.6.2's: paired 95% interval "
        "not wholly below 0")
RULE_2 = ("cost per pair at most 2x rra-bert-mini 0.5.0 on both pair sets (medians of at least 5 interleaved "
          "rounds); per language, dev-set reciprocal rank minus 0.6.2's: paired 95% bootstrap interval not "
          "wholly below 0; held-out NDCG@10 minus 0.6.2's: paired 95% interval not wholly below 0")
RESAMPLES, SEED = 10_000, 0


def paired_interval(a: list[float], b: list[float]) -> dict:
    """Mean of a - b over paired cases, and its 95% percentile bootstrap interval (seeded)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    means = d[np.random.default_rng(SEED).integers(0, len(d), (RESAMPLES, len(d)))].mean(axis=1)
    return {"mean_difference": round(float(d.mean()), 4),
            "ci95": [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)],
            "cases": len(d), "better": int((d > 0).sum()), "worse": int((d < 0).sum())}


def judge(run_dir: str, names: list[str], rule: int = 1) -> dict[str, dict]:
    """Each candidate's figures and checks by ``rule`` (1 or 2), and 0.6.2's figures (no
    checks), by name."""
    ev, ood, cost = (json.load(open(f"{run_dir}/{p}")) for p in ("eval/eval.json", "ood.json", "cost.json"))
    if rule == 2 and min(cost[p]["rounds"] for p in ("ood", "heldout")) < 5:
        raise SystemExit(f"{run_dir}/cost.json: rule 2 reads at least 5 rounds")

    def mrr(name, lang):
        return ood["sets"][lang]["rankers"][name]["MRR"]

    def reciprocal(name, lang):
        return [1.0 / r for r in ood["sets"][lang]["rankers"][name]["ranks"]]

    rows = {}
    for name in names + [CURRENT]:
        c = {p: cost[p]["ms_per_pair"] for p in ("ood", "heldout")}
        row = {"heldout_ndcg10": {g: ev["methods"][name][f"ground_truth/{g}"]["NDCG@10"] for g in ("all", "en", "ko")},
               "ood_mrr": {lang: mrr(name, lang) for lang in ("en", "ko")},
               "cost_vs_mini": {p: round(c[p][name] / c[p][MINI], 3) for p in c}}
        if name != CURRENT:
            comp = next(x for x in ev["comparisons"] if x["a"] == name and x["b"] == CURRENT and x["group"] == "all")
            checks = {"cost": all(r <= 2.0 for r in row["cost_vs_mini"].values())}
            if rule == 1:
                checks.update({f"ood_{lang}": row["ood_mrr"][lang] >= mrr(CURRENT, lang) for lang in ("en", "ko")})
            else:
                row["ood_minus_current"] = {lang: paired_interval(reciprocal(name, lang), reciprocal(CURRENT, lang))
                                            for lang in ("en", "ko")}
                checks.update({f"ood_{lang}": row["ood_minus_current"][lang]["ci95"][1] >= 0 for lang in ("en", "ko")})
                row["goal_not_in_the_rule"] = {
                    **{f"ood_{lang}_at_least_the_teacher": row["ood_mrr"][lang] >= mrr(TEACHER, lang) for lang in ("en", "ko")},
                    "cost": checks["cost"]}
            checks["in_domain"] = comp["ci95"][1] >= 0
            row.update(heldout_minus_current={k: comp[k] for k in ("mean_difference", "ci95")},
                       checks=checks, passes=all(checks.values()))
        rows[name] = row
    return rows
