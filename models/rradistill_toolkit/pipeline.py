"""The whole chain, as run for the reference models: one command reproduces each.

``python -m rradistill_toolkit.pipeline`` (in ``models/``) makes ``models/rra-bert-m`` and its
TCL-free twin ``models/rra-bert-m-no-tcl``; ``--student gpt`` makes ``models/rra-gpt-mini``.
Each stage is its own command, run in order under ``nice``; a stage whose output exists is
skipped (the export only when its folder holds this run's export, since it writes over the
committed version), and the label and train stages resume inside, so an interrupted run
continues when the same command is run again. The defaults are the committed run's settings:
run unchanged, the pipeline makes rra-bert-m 0.7.0 again, judged as it was (``VERSION``,
``JUDGED_AGAINST``); ``--version`` names a new one, judged against the committed default
(``COMMITTED``).

RRA-BERT-m (the default):

  data        every source (``data``'s defaults: 11.6k queries, 31% Korean), 10% held out
  firststage  BM25 with Kiwi's Korean morphemes (``--compare`` records the token choice)
  prerank     the first stage's own order (language-neutral; the production case: the
              existing ranking), top 10 + bottom 10
  teachers    the candidate teachers on the held-out queries (e5 on all; mpnet, MiniLM and
              committees on the English ones the evaluate stage ranks, so every teacher's row
              covers the same queries) and on the out-of-domain dev sets (``ood``, with the
              per-language teacher too), so the choice is made on both
  labels      the chosen teacher (``--teacher``, default ``scorer:e5``) on every query
  train       RRA-BERT-m with the TCL and the ablation without it, same settings: towers from
              multilingual-e5-small with the embeddings and all 12 layers kept as they were
              (``--freeze-layers``; only the interaction layer and the head learn),
              one query a step on 8 of its candidates, ``--train-queries`` queries, window 256
              (documents) / 160 (queries), bf16 autocast where the CPU has it
  export      calibrated (Platt), vocabulary trimmed to the served scripts, int8 as integer
              GEMMs on per-row int8 (``--quantization rows``; ``weights``: weight-only int8; the
              fp32 and dynamic-int8 variants kept in the work folder for comparison), documents
              served cut at 224 tokens (``--document-window``; calibrated and checked there;
              0: the training window, 256)
  evaluate    held-out queries (a seeded sample of ``--eval-queries``) per language and per source, against ground truth and the
              teacher, beside BM25, the teacher, the ablation, the int8 variants, the
              committed version it would replace (``judged_against``: for 0.7.0, 0.6.2) and
              rra-bert-mini 0.5.0 (the cost yardstick), both taken from the git history
  ood         the dev sets through the running service (the release binary, on loopback)
  loso        leave-one-source-out: each family held out of a reduced training run
  cost        ``benches/students.py``: ms per pair side by side with rra-bert-mini 0.5.0 and
              the committed version
  ship        the rule fixed before the run (``ship_decision``): the new version ships only
              if it beats the one it would replace out-of-domain in both languages
              without losing in-domain (held-out NDCG@10 not lower, paired interval)
  card        ``card``: README.md from the folder's own artefacts, for both folders

A new graph for trained weights (``--regraph [NAME]``, how rra-bert-m 0.6.1 and 0.6.2 and its
TCL-free twin's 0.6.1 were made from 0.6.0; the next would be 0.7.1): the folder's last trained
version (``TRAINED[NAME]``, from the
git history) exported again as the export now writes graphs (``export --regraph``: int8
compute, simplified attention, an interaction layer computing only what its head reads, checks
rerun), then held-out queries (the teacher labels them only), the dev sets through the service
and cost, both beside the folder's last committed graph (``GRAPHED[NAME]``) and the previous
versions, the ship rule against the trained version, and a card that carries the trained
version's training, labels, LOSO and teacher choice. The twin is measured beside its TCL
counterpart, as its trained card was. No training: most of its time is the held-out
evaluation.

RRA-GPT (``--student gpt``): labels from ``--teacher``, extractive rationales, RRA-GPT and its
alpha = beta = 0 ablation (``train --student decoder``), exports, evaluation beside the
default student, card.

Usage: python -m rradistill_toolkit.pipeline [--student late|gpt] [--regraph [NAME]] [--work models/work]
       [--version V] [--teacher scorer:e5] [--train-queries 600] [--freeze-layers 12]
       [--quantization rows|weights] [--document-window 224] [--skip-loso]
Set RRADISTILL_TEACHER_BASE_URL/_MODEL/_API_KEY and pass ``--teacher openai`` to label with a
strong LLM behind an endpoint instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from .common import MODELS_DIR, REPO_ROOT, WORK_DIR
from .export import exported_from, graphs_dir

PREVIOUS = ("6d44dba", "models/rra-bert-mini", "rra-bert-mini 0.5.0")  # the cost yardstick (issue 14)
# The version the defaults make (the committed default student) and what its ship rule judged
# it against: rerunning the defaults, its card's "reproduce", makes it again beside the same
# versions, so the same card comes out.
VERSION = "0.7.0"
JUDGED_AGAINST = {VERSION: ("dcb4bb7", "models/rra-bert-m", "rra-bert-m 0.6.2")}
# The committed default student: a run that makes any other version (``--version``) ships only
# if it beats this one.
COMMITTED = ("327a04c", "models/rra-bert-m", "rra-bert-m 0.7.0")
# The last trained version of each RRA-BERT-m folder: ``--regraph NAME`` makes the next one
# from it; and the folder the twin is compared with (its card's TCL ablation).
TRAINED = {
    "rra-bert-m": ("327a04c", "models/rra-bert-m", "rra-bert-m 0.7.0"),
    "rra-bert-m-no-tcl": ("327a04c", "models/rra-bert-m-no-tcl", "rra-bert-m-no-tcl 0.7.0"),
}
COUNTERPART = {"rra-bert-m-no-tcl": "rra-bert-m"}
# The last committed graph of a folder whose trained weights were regraphed before (none since
# 0.7.0 was trained): the next regraph is measured beside it too (the dev sets and cost), so its
# card shows what the new graph changed.
GRAPHED: dict[str, tuple[str, str, str]] = {}
TEACHER_CANDIDATES_EN = ["scorer:mpnet", "scorer:minilm", "scorer:committee:e5+mpnet",
                         "scorer:committee:e5+mpnet+minilm", "scorer:committee:e5+bm25"]


def slug(teacher: str) -> str:
    return teacher.split(":", 1)[1].replace(":", "_").replace("+", "-").replace(",", "_").replace("=", "-") \
        if teacher.startswith("scorer:") else \
        {"local-llm": "smollm2", "openai": "openai"}.get(teacher, teacher)


def start(args: list[str], module: bool = True) -> subprocess.Popen:
    """One stage as its own process under ``nice``, in ``models/``, offline."""
    cmd = ["nice", "-n", "10", sys.executable, *(["-m", f"rradistill_toolkit.{args[0]}"] if module else [args[0]]),
           *args[1:]]
    print("pipeline: " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.Popen(cmd, cwd=MODELS_DIR, env=dict(os.environ, HF_HUB_OFFLINE="1"))


def listed(args: list[str], path: str) -> str:
    """A stage's ``--list-queries`` output (the qids it would read) kept in ``path``."""
    if not os.path.exists(path):
        with open(path + ".tmp", "w") as out:
            cmd = [sys.executable, "-m", f"rradistill_toolkit.{args[0]}", *args[1:], "--list-queries"]
            print("pipeline: " + " ".join(cmd) + f" > {path}", file=sys.stderr, flush=True)
            subprocess.run(cmd, cwd=MODELS_DIR, stdout=out, check=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        os.replace(path + ".tmp", path)
    return path


def run(args: list[str], skip_if: str | None = None, module: bool = True) -> None:
    if skip_if and os.path.exists(skip_if):
        print(f"pipeline: {skip_if} exists, skipping {args[0]}", file=sys.stderr)
        return
    run_parallel([args], module)


def run_parallel(commands: list[list[str]], module: bool = True) -> None:
    procs = [start(args, module) for args in commands]
    failed = [p.args for p in procs if p.wait() != 0]
    if failed:
        raise SystemExit(f"pipeline: failed: {failed}")


def previous_version(work: str, version: tuple[str, str, str] = PREVIOUS) -> str:
    """A committed version (default: the previous default student), unpacked from the git
    history into the work folder."""
    commit, path, name = version
    dest = os.path.join(work, "previous", name.replace(" ", "-"))
    if not os.path.exists(os.path.join(dest, "model.onnx")):
        os.makedirs(dest, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", commit, path], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "--strip-components", str(path.count("/") + 1), "-C", dest],
                       input=archive, check=True)
    return dest


def judged_against(version: str) -> tuple[str, str, str]:
    """The committed version a trained run making ``version`` must beat: the one it was judged
    against when it was made (``JUDGED_AGAINST``), else the committed default (``COMMITTED``)."""
    return JUDGED_AGAINST.get(version, COMMITTED)


def next_patch(version: tuple[str, str, str]) -> str:
    """The version after a committed one's, in its last place: ``rra-bert-m 0.7.0`` -> ``0.7.1``."""
    major, minor, patch = version[2].rsplit(" ", 1)[1].split(".")
    return f"{major}.{minor}.{int(patch) + 1}"


def first_stages(w: str, *assets: str) -> tuple[str, str, str]:
    """Assets (the text, and ``assets``' flags), data, first stage and pre-rank under the work
    folder ``w``, each skipped when done; returns the data folder, the pre-rank file and the
    labels folder."""
    data, cands, pre = f"{w}/data", f"{w}/candidates.jsonl", f"{w}/prerank.jsonl"
    run(["assets", "--text", *assets])
    run(["data", "--out", data], skip_if=f"{data}/queries.jsonl")
    run(["firststage", "--data", data, "--out", cands, "--compare"], skip_if=cands)
    run(["prerank", "--data", data, "--candidates", cands, "--out", pre, "--scorer", "bm25"], skip_if=pre)
    return data, pre, f"{w}/labels"


def late(a) -> None:
    w = a.work
    data, pre, lab = first_stages(w, "--minilm", "--mpnet")
    common = ["--data", data, "--prerank", pre, "--cache-dir", f"{w}/cache"]
    teacher_labels = f"{lab}/{slug(a.teacher)}.all.jsonl"
    stats = lambda path: path.rsplit(".jsonl", 1)[0] + ".stats.json"  # written when a label run completes
    run(["labels", *common, "--teacher", a.teacher, "--split", "all", "--out", teacher_labels],
        skip_if=stats(teacher_labels))
    test_labels = {slug(a.teacher): teacher_labels}
    # The other candidates label the English queries the evaluate stage ranks, so every
    # teacher's row covers the same queries.
    eval_qids = listed(["evaluate", "--data", data, "--prerank", pre, "--labels", f"{slug(a.teacher)}={teacher_labels}",
                        "--max-queries", str(a.eval_queries)], f"{w}/eval_qids.txt")
    for t in TEACHER_CANDIDATES_EN if not a.skip_teacher_comparison else []:
        test_labels[slug(t)] = f"{lab}/{slug(t)}.eval-en.jsonl"
        run(["labels", *common, "--teacher", t, "--split", "test", "--lang", "en", "--qids", eval_qids,
             "--out", test_labels[slug(t)]], skip_if=stats(test_labels[slug(t)]))
    run(["ood", "--student", "--teacher", "e5", "mpnet", "minilm", "lang:ko=e5,en=mpnet", "--out",
         f"{w}/ood-teachers.json"],
        skip_if=f"{w}/ood-teachers.json")

    # The student and its TCL-free twin train at once, one thread each (on 2 cores that is
    # faster than one after the other with 2 threads each).
    students, todo = {}, []
    for name, extra in (("rra-bert-m", []), ("rra-bert-m-no-tcl", ["--no-tcl"])):
        out = f"{w}/students/{name}"
        students[name] = out
        if not os.path.exists(f"{out}/train_config.json"):
            todo.append(["train", "--student", "late", "--data", data, "--labels", teacher_labels, "--out", out,
                         "--max-queries", str(a.train_queries), "--freeze-layers", str(a.freeze_layers),
                         "--tower-layers", str(a.tower_layers),
                         "--lr", str(a.lr), "--head-lr", str(a.head_lr), "--threads", "1", *extra])
    run_parallel(todo)
    outs = {"rra-bert-m": a.out, "rra-bert-m-no-tcl": a.out + "-no-tcl"}
    for name, student in students.items():
        # The folder the export writes is usually the committed version it would replace, so
        # it counts as done only when it holds this run's export (not merely a report).
        if exported_from(outs[name], student):
            print(f"pipeline: {outs[name]} holds this run's export, skipping export", file=sys.stderr)
            continue
        run(["export", "--student", student, "--out", outs[name], "--data", data, "--prerank", pre,
             "--labels", teacher_labels, "--name", name, "--version", a.version, "--quantization", a.quantization,
             *(["--max-length", str(a.document_window)] if a.document_window else []),
             *(["--variants"] if name == "rra-bert-m" else [])])
    current = judged_against(a.version)
    prev, cur = previous_version(w), previous_version(w, current)
    prev_name, cur_name = (v[2].replace(" ", "-") for v in (PREVIOUS, current))
    variants = f"{graphs_dir(students['rra-bert-m'], a.document_window)}/variants"
    run(["evaluate", "--data", data, "--prerank", pre, "--labels", *[f"{k}={v}" for k, v in test_labels.items()],
         "--reference", slug(a.teacher), "--student", f"rra-bert-m={outs['rra-bert-m']}",
         f"rra-bert-m-no-tcl={outs['rra-bert-m-no-tcl']}", f"rra-bert-m-fp32={variants}/fp32",
         f"rra-bert-m-int8-dynamic={variants}/dynamic", f"{cur_name}={cur}", f"{prev_name}={prev}",
         "--max-queries", str(a.eval_queries), "--out", f"{w}/eval"], skip_if=f"{w}/eval/eval.json")
    run(["ood", "--service-binary", str(REPO_ROOT / "target/release/rradistill"),
         "--serve", f"rra-bert-m={outs['rra-bert-m']}", f"rra-bert-m-no-tcl={outs['rra-bert-m-no-tcl']}",
         f"{cur_name}={cur}", f"{prev_name}={prev}", "--teacher", "e5", "--out", f"{w}/ood.json"],
        skip_if=f"{w}/ood.json")
    if not a.skip_loso:
        run(["loso", "--data", data, "--labels", teacher_labels, "--prerank", pre, "--out", f"{w}/loso",
             "--max-queries", str(a.loso_queries), "--eval-queries", str(a.loso_eval_queries), "--freeze-layers", str(a.freeze_layers),
             "--tower-layers", str(a.tower_layers), "--lr", str(a.lr),
             "--head-lr", str(a.head_lr)])
    run([str(REPO_ROOT / "benches" / "students.py"), "--model", f"{prev_name}={prev}", "--model", f"{cur_name}={cur}",
         "--model", f"rra-bert-m={outs['rra-bert-m']}", "--pairs", "ood", "heldout", "--heldout-queries", "20", "--rounds", "3", "--json", f"{w}/cost.json"],
        skip_if=f"{w}/cost.json", module=False)
    # Each committed folder gets its card; the twin's names the TCL student as its counterpart.
    # The student's ship rule is against the committed version; the twin's card, as before,
    # against rra-bert-mini 0.5.0 (it replaces no version: it is the TCL ablation).
    run(["card", "--work", w, "--model", outs["rra-bert-m"], "--ablation", outs["rra-bert-m-no-tcl"],
         "--teacher", a.teacher, "--previous", current[2], "--reproduce", a.reproduce])
    run(["card", "--work", w, "--model", outs["rra-bert-m-no-tcl"], "--ablation", outs["rra-bert-m"],
         "--teacher", a.teacher, "--previous", PREVIOUS[2], "--reproduce", a.reproduce])


def regraph(a) -> None:
    """The next version of RRA-BERT-m from the last trained one's weights (``TRAINED``, from the
    git history) with the graph the export now writes (``export --regraph``: int8 compute,
    simplified attention), measured as its own version: held-out queries (the teacher's labels
    on them only), the dev sets through the service, cost beside the previous versions, the
    ship rule against the trained version, the card. Training, its labels, leave-one-source-out
    and the teacher choice are that run's: the card carries them from its card."""
    name = a.regraph
    trained_version = TRAINED[name]
    w, r = a.work, f"{a.work}/regraph-{name}-{a.version}"
    data, pre, lab = first_stages(w)
    test_labels = f"{lab}/{slug(a.teacher)}.test.jsonl"
    run(["labels", "--data", data, "--prerank", pre, "--cache-dir", f"{w}/cache", "--teacher", a.teacher,
         "--split", "test", "--out", test_labels], skip_if=test_labels.rsplit(".jsonl", 1)[0] + ".stats.json")
    trained, mini = previous_version(w, trained_version), previous_version(w)
    trained_name, mini_name = trained_version[2].replace(" ", "-"), PREVIOUS[2].replace(" ", "-")
    out = a.out
    counterpart = COUNTERPART.get(name)
    beside = [f"{counterpart}={MODELS_DIR / counterpart}"] if counterpart else []
    graphed = GRAPHED.get(name)
    if graphed and graphed[2].rsplit(" ", 1)[1] != a.version:
        graphed_dir, graphed_name = previous_version(w, graphed), graphed[2].replace(" ", "-")
        beside_graph, bench_graph = [f"{graphed_name}={graphed_dir}"], ["--model", f"{graphed_name}={graphed_dir}"]
    else:
        beside_graph, bench_graph = [], []
    run(["export", "--regraph", trained, "--previous", trained_version[2], "--out", out, "--version", a.version,
         "--data", data, "--prerank", pre])  # cheap and deterministic: always made again
    run(["evaluate", "--data", data, "--prerank", pre, "--labels", f"{slug(a.teacher)}={test_labels}",
         "--reference", slug(a.teacher), "--student", f"{name}={out}", f"{trained_name}={trained}", *beside,
         "--max-queries", str(a.eval_queries), "--out", f"{r}/eval"], skip_if=f"{r}/eval/eval.json")
    run(["ood", "--service-binary", str(REPO_ROOT / "target/release/rradistill"), "--serve", f"{name}={out}",
         f"{trained_name}={trained}", *beside_graph, f"{mini_name}={mini}", *beside, "--teacher", "e5",
         "--out", f"{r}/ood.json"],
        skip_if=f"{r}/ood.json")
    run([str(REPO_ROOT / "benches" / "students.py"), "--model", f"{mini_name}={mini}",
         "--model", f"{trained_name}={trained}", *bench_graph, "--model", f"{name}={out}", "--pairs", "ood", "heldout",
         "--heldout-queries", "20", "--rounds", "3", "--json", f"{r}/cost.json"], skip_if=f"{r}/cost.json", module=False)
    run(["card", "--work", w, "--results", r, "--model", out, "--teacher", a.teacher, "--previous",
         trained_version[2], "--carry-from", trained, "--reproduce", a.reproduce,
         *(["--ablation", str(MODELS_DIR / counterpart)] if counterpart else [])])


def gpt(a) -> None:
    w = a.work
    data, pre = f"{w}/data", f"{w}/prerank.jsonl"
    teacher_labels = f"{w}/labels/{slug(a.teacher)}.all.jsonl"
    run(["rationales", "--data", data, "--labels", teacher_labels, "--teacher", a.explainer, "--negatives", "1"])
    students = {"rra-gpt": ["--alpha", str(a.alpha), "--beta", str(a.beta)],
                "rra-gpt-rank-only": ["--alpha", "0", "--beta", "0"]}
    for name, extra in students.items():
        out = f"{w}/students/{name}"
        run(["train", "--student", "decoder", "--data", data, "--labels", teacher_labels, "--out", out,
             "--layers", str(a.layers), "--max-length", "160", "--candidates", "8", "--epochs", str(a.epochs),
             "--lr", "3e-4", "--head-lr", "1e-3", "--threads", "2", *extra], skip_if=f"{out}/train_config.json")
    ablation = f"{w}/export/rra-gpt-rank-only"
    out = str(MODELS_DIR / "rra-gpt-mini")
    run(["export_gpt", "--student", f"{w}/students/rra-gpt", "--out", out, "--data", data, "--prerank", pre,
         "--version", a.gpt_version])
    run(["export_gpt", "--student", f"{w}/students/rra-gpt-rank-only", "--out", ablation, "--data", data,
         "--prerank", pre, "--name", "rra-gpt-mini-rank-only", "--version", a.gpt_version])
    run(["evaluate", "--data", data, "--prerank", pre, "--labels", f"{slug(a.teacher)}={teacher_labels}",
         "--reference", slug(a.teacher), "--student", f"rra-bert-m={a.out}", f"RRA-GPT={out}",
         f"RRA-GPT-rank-only={ablation}", "--out", f"{w}/eval-gpt"])
    run(["card_gpt", "--model", out, "--student", f"{w}/students/rra-gpt", "--eval", f"{w}/eval-gpt",
         "--ablation-student", f"{w}/students/rra-gpt-rank-only",
         "--reproduce", "python -m rradistill_toolkit.pipeline --student gpt"])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Run the whole distillation pipeline.")
    ap.add_argument("--student", default="late", choices=["late", "gpt"])
    ap.add_argument("--work", default=str(WORK_DIR))
    ap.add_argument("--out", default=None,
                    help="the RRA-BERT-m folder to write (default: models/rra-bert-m, or the --regraph folder)")
    ap.add_argument("--teacher", default="scorer:e5", help="the teacher that labels every query")
    ap.add_argument("--skip-teacher-comparison", action="store_true")
    ap.add_argument("--train-queries", type=int, default=600, help="training queries per student (0: all)")
    ap.add_argument("--freeze-layers", type=int, default=12,
                    help="late: tower layers kept as e5 left them (12: all; only the interaction layer and head learn)")
    ap.add_argument("--tower-layers", type=int, default=0, help="late: the base's first N tower layers (0: all 12)")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--head-lr", type=float, default=5e-4)
    ap.add_argument("--loso-queries", type=int, default=150, help="training queries of each leave-one-out run")
    ap.add_argument("--loso-eval-queries", type=int, default=100, help="queries of the left-out family each run ranks")
    ap.add_argument("--skip-loso", action="store_true")
    ap.add_argument("--quantization", default="rows", choices=["weights", "rows"],
                    help="how the export makes the served graph int8 (rows: integer GEMMs; benches/rows.sh)")
    ap.add_argument("--document-window", type=int, default=224,
                    help="late: the document window the export serves (0: the training window, 256; "
                         "a shorter one costs less per pair: benches/window.sh)")
    ap.add_argument("--eval-queries", type=int, default=300,
                    help="held-out queries the evaluate stage ranks (a seeded sample across sources; 0: all)")
    ap.add_argument("--version", default=None,
                    help=f"the version to make (default: {VERSION}, the committed one, trained; with --regraph, "
                         "the trained version's next patch)")
    ap.add_argument("--regraph", nargs="?", const="rra-bert-m", default=None, choices=sorted(TRAINED),
                    help="no training: the next version of this folder (default rra-bert-m) from its last trained "
                         "one's weights, as the export now writes graphs, measured and carded as its own version")
    ap.add_argument("--layers", type=int, default=6, help="gpt: decoder blocks kept")
    ap.add_argument("--alpha", type=float, default=0.5, help="gpt: weight of L_cls")
    ap.add_argument("--beta", type=float, default=0.25, help="gpt: weight of L_reason")
    ap.add_argument("--epochs", type=int, default=1, help="gpt: passes over the training queries")
    ap.add_argument("--explainer", default="extractive", help="gpt: the rationale stage's --teacher")
    ap.add_argument("--gpt-version", default="0.2.0")
    a = ap.parse_args(argv)
    a.reproduce = " ".join(["python -m rradistill_toolkit.pipeline", *(sys.argv[1:] if argv is None else argv)])
    a.version = a.version or (next_patch(TRAINED[a.regraph]) if a.regraph else VERSION)
    a.out = a.out or str(MODELS_DIR / (a.regraph or "rra-bert-m"))
    (gpt if a.student == "gpt" else regraph if a.regraph else late)(a)


if __name__ == "__main__":
    main()
