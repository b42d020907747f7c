"""The model card: ``README.md`` in a model folder, rendered from that folder's own files.

What it owns: turning the pipeline's outputs into a card whose every number can be traced.
It works in two steps so the card can be checked on any clone:

1. ``collect`` (at the end of a pipeline run) reads the work folder's stage outputs (data
   counts, label statistics, the training configuration, held-out evaluation, the
   out-of-domain dev sets through the service, leave-one-source-out, cost side by side, the
   ship decision) and writes them, unchanged, into ``card.json`` in the model folder;
2. ``render`` fills a template (``templates/<template>.md.j2``, jinja2) from ``card.json``,
   ``manifest.json`` and ``export_report.json`` only. No figure is typed in: the template
   formats numbers it is given, and the regeneration test (``tests/test_card.py``) renders
   every committed card again and compares it byte for byte.

The paired-comparison words every card uses (``direction``, ``versus``, ...) live here too.

Usage (in ``models/``):
  python -m rradistill_toolkit.card --work work --model rra-bert-m --ablation rra-bert-m-no-tcl \\
      --teacher scorer:e5 --previous "rra-bert-mini 0.5.0"
  python -m rradistill_toolkit.card --render-only rra-bert-m     # README.md from the folder alone
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib

from .common import WORK_DIR, read_jsonl, write_json

REPRODUCE = "python -m rradistill_toolkit.pipeline"  # run in models/ with the project's .venv
TEMPLATES = pathlib.Path(__file__).parent / "templates"


def _f(x, nd=3):
    return "n/a" if x is None else f"{x:.{nd}f}"


def direction(r: dict) -> int:
    """The one rule every verdict uses: +1 when a paired comparison's 95% interval lies above
    zero, -1 when below, 0 when it includes zero."""
    lo, hi = r["ci95"]
    return 1 if lo > 0 else -1 if hi < 0 else 0


def interval(r: dict) -> str:
    lo, hi = r["ci95"]
    return f"[{lo:+.3f}, {hi:+.3f}]"


def comparison(ev: dict, a: str, b: str, group: str = "all") -> dict | None:
    """The evaluate stage's paired comparison of ``a`` minus ``b`` (NDCG@10, ground truth)."""
    for r in ev.get("comparisons", []):
        if r["a"] == a and r["b"] == b and r["group"] == group:
            return r
    return None


def ablation_verdict(ev: dict, full: str, ablated: str, part: str) -> str:
    """An ablation's paired comparison (``full`` minus ``ablated``): ``part`` helped or hurt only
    when the 95% interval excludes zero."""
    r = comparison(ev, full, ablated)
    if r is None:
        return "not compared"
    verdict = {1: f"{part} helped", -1: f"{part} hurt", 0: "no clear difference"}[direction(r)]
    return f"{verdict} on this data, difference {r['mean_difference']:+.3f}, 95% interval {interval(r)}, p = {r['p_value']:.2g}"


def versus(r: dict | None, a: str, b: str) -> str:
    """One paired comparison in words: "clearly above/below" only when the interval excludes zero."""
    if r is None:
        return f"{a} and {b} were not compared"
    verdict = {1: f"clearly above {b}: the interval excludes zero", -1: f"clearly below {b}",
               0: f"not clearly different from {b}: the interval includes zero"}[direction(r)]
    return (f"{a} minus {b}, per query: {r['mean_difference']:+.3f} (95% bootstrap interval {interval(r)}, "
            f"permutation p = {r['p_value']:.2g}; better on {r['better']} queries, worse on {r['worse']}, tied on "
            f"{r['tied']}): **{verdict}**")


def ship_decision(ood_now: dict, ood_prev: dict, comparison: dict | None, now: str, prev: str) -> dict:
    """The rule, fixed before the run: ship ``now`` only if its out-of-domain MRR beats
    ``prev``'s in BOTH languages and its held-out NDCG@10 is not lower (the paired 95% interval
    of now minus prev does not lie wholly below zero)."""
    checks = {}
    for lang in ("en", "ko"):
        a = ood_now["sets"][lang]["rankers"][now]["MRR"]
        b = ood_prev["sets"][lang]["rankers"][prev]["MRR"]
        checks[f"ood_{lang}"] = {"now": a, "previous": b, "ok": a > b}
    if comparison is None:
        checks["in_domain"] = {"ok": False, "why": f"{now} and {prev} were not compared in-domain"}
    else:
        checks["in_domain"] = {"mean_difference": comparison["mean_difference"], "ci95": comparison["ci95"],
                               "ok": comparison["ci95"][1] >= 0}
    return {"rule": "beats the previous version out-of-domain (MRR, both languages) without losing in-domain "
                    "(held-out NDCG@10: the paired 95% interval of new minus previous is not wholly below 0)",
            "checks": checks, "ship": all(c["ok"] for c in checks.values())}


def _json(path: str):
    return json.load(open(path)) if os.path.exists(path) else None


def data_summary(work: str) -> dict:
    queries = read_jsonl(f"{work}/data/queries.jsonl")
    docs = collections.Counter(d["source"] for d in read_jsonl(f"{work}/data/corpus.jsonl"))
    by_source: dict = {}
    for q in queries:
        s = by_source.setdefault(q["source"], {"lang": q["lang"], "train": 0, "test": 0, "documents": docs[q["source"]]})
        s[q["split"]] += 1
    langs = collections.Counter((q["lang"], q["split"]) for q in queries)
    return {"documents": sum(docs.values()), "queries": len(queries),
            "by_language": {f"{lang}/{split}": n for (lang, split), n in sorted(langs.items())},
            "by_source": dict(sorted(by_source.items()))}


def heldout_subset(ev: dict, names: list[str]) -> dict:
    """The held-out evaluation's rows the card shows (ground truth per language and source)."""
    keep = {}
    for name, e in ev["methods"].items():
        if name in names or e["kind"] in ("first stage", "teacher"):
            keep[name] = {k: v for k, v in e.items() if k in ("kind", "ms_per_pair") or k.startswith("ground_truth/")}
    comps = [r for r in ev.get("comparisons", []) if r["a"] in names and r["group"] in ("all", "en", "ko")]
    return {"split": ev["split"], "queries": ev["queries"], "reference_teacher": ev["reference_teacher"],
            "methods": keep, "comparisons": comps}


# What a version made without training (``pipeline --regraph``) takes from its trained
# predecessor's card: the run that made its weights.
CARRIED = ("training", "labels", "loso", "ood_teachers")


def collect(work: str, model: str, ablation: str | None, teacher: str, previous: str, reproduce: str = REPRODUCE,
            results: str | None = None, carry_from: str | None = None) -> dict:
    """``card.json`` from a run's outputs: the data under ``work``, the measurements under
    ``results`` (default: ``work``), and with ``carry_from`` (a trained version's folder whose
    weights this one has) that version's ``CARRIED`` sections instead of a training run's."""
    results = results or work
    name = json.load(open(f"{model}/manifest.json"))["name"]
    ab_name = json.load(open(f"{ablation}/manifest.json"))["name"] if ablation else None
    prev_name = previous.replace(" ", "-")
    ev = json.load(open(f"{results}/eval/eval.json"))
    ood = json.load(open(f"{results}/ood.json"))
    variants = [n for n in ev["methods"] if n.startswith(name + "-")]
    if carry_from:
        carried = json.load(open(f"{carry_from}/card.json"))
        stats = cfg = None
        loso = carried["loso"]
    else:
        slug = teacher.split(":", 1)[1] if teacher.startswith("scorer:") else teacher
        stats = _json(f"{work}/labels/{slug}.all.stats.json")
        cfg = json.load(open(f"{work}/students/{name}/train_config.json"))
        loso = _json(f"{work}/loso/loso.json")  # runs of the TCL student: only its card shows them
    card = {
        "template": "late",
        "teacher": teacher,
        "previous": previous,
        "previous_name": prev_name,
        "ablation": ab_name,
        "reproduce": reproduce,
        "data": data_summary(work),
        "labels": {"queries": stats["queries"], "ranked": stats["buckets"].get("ranked", 0), "issues": stats["issues"],
                   "teacher": stats["teacher"]} if stats else None,
        "training": cfg,
        "heldout": heldout_subset(ev, [name, *([ab_name] if ab_name else []), prev_name, *variants]),
        "ood": ood,
        "ood_teachers": _json(f"{work}/ood-teachers.json"),
        "loso": loso if loso and cfg and loso.get("settings", {}).get("tcl") == bool(cfg.get("tcl")) else None,
        # The pair sets only: the bench's "models" entry maps names to this machine's paths.
        "cost": {k: v for k, v in (_json(f"{results}/cost.json") or {}).items() if k != "models"} or None,
    }
    if carry_from:
        card.update({k: carried[k] for k in CARRIED})
        card["carried"] = {"from": previous, "sections": list(CARRIED)}
    card["ship"] = ship_decision(ood, ood, comparison(ev, name, prev_name), name, prev_name)
    return card


def render(model_dir: str) -> str:
    """README.md from the folder's ``card.json``, ``manifest.json`` and ``export_report.json``."""
    import jinja2

    folder = pathlib.Path(model_dir)
    card = json.loads((folder / "card.json").read_text())
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["f"] = _f
    env.filters["signed"] = lambda x, nd=3: "n/a" if x is None else f"{x:+.{nd}f}"
    env.filters["pct"] = lambda x, nd=0: "n/a" if x is None else f"{100 * x:.{nd}f}%"
    env.globals.update(versus=versus, direction=direction, interval=interval,
                       comparison=lambda a, b, group="all": comparison(card["heldout"], a, b, group))
    return env.get_template(f"{card['template']}.md.j2").render(
        card=card, manifest=json.loads((folder / "manifest.json").read_text()),
        report=json.loads((folder / "export_report.json").read_text()),
        size_mb=round(os.path.getsize(folder / "model.onnx") / 2**20, 1))


def write(model_dir: str) -> str:
    text = render(model_dir)
    (pathlib.Path(model_dir) / "README.md").write_text(text)
    return text


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Write a model card (README.md) from the folder's own artefacts.")
    ap.add_argument("--render-only", metavar="MODEL", help="render MODEL/README.md from MODEL/card.json alone")
    ap.add_argument("--work", default=str(WORK_DIR))
    ap.add_argument("--model", help="the model folder the card describes")
    ap.add_argument("--ablation", default=None, help="its ablation's folder (the variant trained without TCL)")
    ap.add_argument("--teacher", default="scorer:e5")
    ap.add_argument("--previous", default="rra-bert-mini 0.5.0")
    ap.add_argument("--reproduce", default=REPRODUCE, help="the command that made the model (the pipeline's own)")
    ap.add_argument("--results", default=None, help="where the run's eval/, ood.json and cost.json are (default: --work)")
    ap.add_argument("--carry-from", default=None, metavar="FOLDER",
                    help="a trained version whose weights MODEL has: its card's training, labels, LOSO and teacher "
                         "choice are carried")
    a = ap.parse_args(argv)
    if a.render_only:
        write(a.render_only)
        return
    if not a.model:
        ap.error("--model is required unless --render-only")
    write_json(os.path.join(a.model, "card.json"), collect(a.work, a.model, a.ablation, a.teacher, a.previous,
                                                            a.reproduce, a.results, a.carry_from))
    write(a.model)
    print(f"card: wrote {a.model}/README.md and card.json")


if __name__ == "__main__":
    main()
