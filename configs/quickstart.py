"""Quickstart: a small top-2 MoE trained on the built-in six-domain corpus.

The domains are the study's (arXiv:2605.19762) in miniature: `text` (prose), `code` (pure code),
`code_text` (code with its prose), `math` (answer-only problems), `math_traces` (worked solutions),
`code_math` (programs that solve problems); see `mixlab/data/builtin/corpus.py`.

Command (what `make quickstart` runs):
  python -m experiments.train --config configs/quickstart.py --workdir runs/quickstart
  python -m experiments.eval --workdir runs/quickstart

Runtime: about 2-3 minutes on 2 CPU cores for training (300 steps x 4,096 tokens) and evaluation
(2m17s measured 2026-12-03 on a quiet machine).
Expected result: train loss falls from ~5.7 at step 1 (about ln(vocab) = 5.56: embeddings start at std
1/sqrt(2 d_model), see `layers.embed_std`) to ~1.5; eval loss per domain (measured 2026-12-03,
nats/token): math 0.89 < code_math 1.13 ~ math_traces 1.14 < code 1.71 ~ code_text 1.74 < text 2.31.

Arguments (`--config configs/quickstart.py:size=nano,experts=4,runlocal`):
  size     model size preset from `mixlab.configlib.SIZES` (default micro)
  experts  number of experts; 0 gives the dense baseline (default 8)
  top_k    experts per token (default 2)
  mixture  a mixture file of your own domains (sets data.mixture_file and clears data.weights, whose
           keys are the built-in domains; the file's weights are used); see mixlab/data/mixfile.py
  runlocal a seconds-long smoke run (tests build every config with it)

Your own data, pre-tokenized, with a BPE trained on it (ArrayRecord shards, DIR/mixture.json):
  python -m experiments.prepare --config configs/quickstart.py:mixture=my_mixture.json --out DIR \
      --train_tokenizer bpe --vocab_size 4096
  python -m experiments.train --config configs/quickstart.py:mixture=DIR/mixture.json --workdir runs/mine \
      --config.data.tokenizer=bpe:DIR/tokenizer.json
"""

import ml_collections

from mixlab import configlib


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = configlib.parse_arg(arg, size="micro", experts=8, top_k=2, mixture="")
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.model = configlib.model_size(
        "nano" if arg.runlocal else arg.size,
        vocab_size=0,  # 0: the tokenizer's vocabulary size
        num_experts=arg.experts,
        top_k=arg.top_k,
        capacity_factor=1.25,
        dtype="float32",
    )

    c.data = ml_collections.ConfigDict()
    # Token shares, normalised; domains left out get 0. Domain ids follow `mixlab.data.DOMAINS`.
    c.data.weights = {
        "text": 0.3,
        "code": 0.15,
        "code_text": 0.15,
        "math": 0.1,
        "math_traces": 0.2,
        "code_math": 0.1,
    }
    # "": the built-in corpus. A JSON file of your own domains, sources and weights replaces it (ids
    # follow the file's order; its weights apply when data.weights is {}): mixlab/data/mixfile.py.
    c.data.mixture_file = arg.mixture
    if arg.mixture:
        c.data.weights = {}
    c.data.tokenizer = "bytes"  # or "bpe:PATH", a BPE from `experiments.prepare --train_tokenizer bpe`
    c.data.strict_utf8 = False  # False: invalid UTF-8 documents are skipped and counted; True: an error
    c.data.schedule = None  # or [(start, weights), ...] stages by step or {"tokens": N}; then weights = {}
    c.data.arm = ""  # ablation, e.g. "remove:code", "remove:code:fill:text", "replace:math:math_traces"
    c.data.max_epochs = 1.0  # a domain repeated more often than this is an error ...
    c.data.allow_repeat = False  # ... unless allowed
    c.data.seq_len = 64 if arg.runlocal else 256

    c.mesh = {"data": -1, "fsdp": 1, "expert": 1, "tensor": 1}  # -1 fills the present devices

    c.train = ml_collections.ConfigDict()
    c.train.steps = 10 if arg.runlocal else 300  # or {"tokens": 1_228_800}
    c.train.grad_accum_steps = 1  # > 1: the batch is split into micro-batches, one update per step
    c.train.halt_at_step = 0  # > 0: stop there (checkpointed) without changing the schedule
    c.train.warmup = {"percent": 5}
    c.train.batch_size = 8 if arg.runlocal else 16  # global, in sequences
    c.train.update(configlib.optimizer(lr=3e-3))  # AdamW, cosine, clipping, aux-loss weights
    c.train.log_every = 5 if arg.runlocal else 25

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 5 if arg.runlocal else 100  # steps, or {"tokens": N}
    c.checkpoint.keep = 3  # the last N steps ...
    c.checkpoint.keep_every = 0  # ... plus every K-th step when > 0 (router-saturation series)

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 8 if arg.runlocal else 16
    c.eval.num_batches = 2 if arg.runlocal else 8
    return c
