"""Losses, Token Selection and the Term Control Layer: gradients and export."""

import math

import numpy as np
import pytest
import torch

from rradistill_toolkit.export import encode_feed
from rradistill_toolkit.losses import listwise_softmax_ce, ranknet, teacher_gains
from rradistill_toolkit.students.encoder import RRABert, encode_pairs, fit_query, load_tokenizer, rra_loss, select_positions


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, num_labels=1)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertForSequenceClassification(cfg).save_pretrained(path)
    return path


def test_listwise_hand_computed():
    scores = torch.tensor([[0.0, math.log(3.0)]])
    loss = listwise_softmax_ce(scores, torch.tensor([[0.0, 1.0]]))
    assert float(loss) == pytest.approx(-math.log(0.75), rel=1e-6)
    # graded target: p = [2/3, 1/3]; equal scores -> loss = log 2
    loss = listwise_softmax_ce(torch.zeros(1, 2), torch.tensor([[1.0, 0.5]]))
    assert float(loss) == pytest.approx(math.log(2.0), rel=1e-6)


def test_listwise_mask_and_empty_targets():
    scores = torch.tensor([[0.0, 0.0, 5.0], [1.0, 2.0, 3.0]])
    gains = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    # third candidate of query 1 is padding; query 2 has no preference and is left out
    assert float(listwise_softmax_ce(scores, gains, mask)) == pytest.approx(math.log(2.0), rel=1e-6)
    assert float(listwise_softmax_ce(scores, torch.zeros(2, 3))) == 0.0


def test_ranknet_hand_computed():
    loss = ranknet(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]))
    assert float(loss) == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-6)


def test_teacher_gains():
    lab = {"docs": [{"doc_id": "a", "bucket": "ranked", "rank": 1}, {"doc_id": "b", "bucket": "ranked", "rank": 3},
                    {"doc_id": "c", "bucket": "missing_hard", "rank": None}]}
    assert teacher_gains(lab) == {"a": 1.0, "b": 0.25, "c": 0.0}


def test_token_selection(minilm):
    tok = load_tokenizer(minilm / "tokenizer.json", 64)
    enc = tok.encode("How do I install packages offline?", "To install a package offline, copy the offline .deb file.")
    picked = [enc.tokens[p] for p in select_positions(enc)]
    # every word-piece of a matching word is selected; "package" != "packages"; stop words
    # ("to") and punctuation never
    assert picked == ["install", "off", "##line", "off", "##line"]
    assert all(enc.type_ids[p] == 1 for p in select_positions(enc))


def test_an_overlong_training_query_is_cut_not_fatal(minilm):
    tok = load_tokenizer(minilm / "tokenizer.json", 64)
    query = " ".join(f"word{i}" for i in range(200))
    batch = encode_pairs(tok, query, ["install offline now " * 20, "the weather"])
    ids = batch["input_ids"]
    assert ids.shape == (2, 64)
    sep = tok.token_to_id("[SEP]")
    first_sep = [list(row).index(sep) for row in ids.tolist()]
    assert first_sep == [1 + 64 - 3 - 32] * 2  # [CLS] + the query's first 29 tokens
    assert (batch["attention_mask"][1].sum() < 64)  # the short document is not padded out by the cut
    short = "install packages offline"
    assert fit_query(tok, short) == short
    # the evaluate and export stages feed pairs through the same cut, one query per pair
    feed, lengths = encode_feed(tok, [(query, "install offline now " * 20), (short, "the weather")])
    assert lengths == [64, len(tok.encode(short, "the weather").ids)]
    assert list(feed["input_ids"][0]).index(sep) == 1 + 64 - 3 - 32


def test_tcl_gradients_reach_the_encoder(tiny_bert, minilm):
    tok = load_tokenizer(minilm / "tokenizer.json", 64)
    model = RRABert(tiny_bert, use_tcl=True, tcl_hidden=16)
    batch = encode_pairs(tok, "install packages offline", ["install offline now", "the weather", "offline install"])
    assert batch["select"].sum() > 0
    # the term branch alone must move the shared encoder
    _, s_term = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch["select"])
    listwise_softmax_ce(s_term.view(1, -1), torch.tensor([[1.0, 0.0, 0.5]])).backward()
    enc_grad = model.encoder.bert.encoder.layer[0].attention.self.query.weight.grad
    assert enc_grad is not None and float(enc_grad.abs().sum()) > 0
    assert float(model.tcl[0].weight.grad.abs().sum()) > 0
    # the full loss has both parts; without TCL only the rank part
    model.zero_grad()
    loss, parts = rra_loss(model, batch, torch.tensor([1.0, 0.0, 0.5]), 1)
    assert set(parts) == {"rank", "term"}
    plain = RRABert(tiny_bert, use_tcl=False)
    assert plain.tcl is None
    _, parts = rra_loss(plain, batch, torch.tensor([1.0, 0.0, 0.5]), 1)
    assert set(parts) == {"rank"}


def test_exported_graph_has_no_tcl(tiny_bert, minilm, tmp_path):
    import onnx
    import onnxruntime as ort

    from rradistill_toolkit.export import export_onnx

    model = RRABert(tiny_bert, use_tcl=True, tcl_hidden=37).eval()  # 37: a width nothing else has
    path = tmp_path / "m.onnx"
    export_onnx(model.encoder, str(path))
    graph = onnx.load(str(path)).graph
    dims = {d for init in graph.initializer for d in init.dims}
    names = [i.name for i in graph.initializer] + [n.name for n in graph.node]
    assert 37 not in dims
    assert not any("tcl" in n.lower() for n in names)
    n_params_onnx = sum(int(np.prod(i.dims)) for i in graph.initializer)
    n_params_enc = sum(p.numel() for p in model.encoder.parameters())
    n_params_tcl = sum(p.numel() for p in model.tcl.parameters())
    assert n_params_onnx < n_params_enc + n_params_tcl
    # the graph scores exactly like the [CLS] branch of the training model
    tok = load_tokenizer(minilm / "tokenizer.json", 64)
    batch = encode_pairs(tok, "install packages offline", ["install offline now", "the weather"])
    with torch.no_grad():
        s_cls, _ = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch["select"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(["logits"], {k: batch[k].numpy() for k in ("input_ids", "attention_mask", "token_type_ids")})[0]
    assert out.shape == (2, 1)
    assert np.max(np.abs(out[:, 0] - s_cls.numpy())) < 1e-5
