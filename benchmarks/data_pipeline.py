"""Input-pipeline throughput against what the quickstart training step consumes, in one process.

  python benchmarks/data_pipeline.py                  # quickstart mixture and model, batch 16 x seq 256

(a) raw text -> tokenize -> pack -> mix -> batch: tokens/s of `make_train_dataset` on the quickstart
    mixture, and on every registry domain at equal weight (more streams to interleave). Corpus
    building (a corpus concern, once per process) is reported apart as `setup_s`.
(b) pre-tokenized ArrayRecord -> pack -> mix -> batch: the quickstart mixture prepared once into a
    temporary directory by `experiments.prepare`'s code (bytes tokenizer; `prepare_s` reported apart),
    then trained from its mixture.json: no tokenizing, records read one document at a time.

The training side times the real jitted train step of the quickstart model (`train_step.bench`), so
the ratio compares the two on the same machine in the same period. Goal: (a) >= 50x the training
consumption; (b) >= 1M tokens/s per host. `--smoke` (batch 2, 0.1 s per repeat, the nano model for one
step) only checks that it runs. The last line printed is one JSON object (keys: benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
import time

import jax
import ml_collections
import train_step  # benchmarks/train_step.py: this script's directory is on sys.path

from configs import quickstart
from mixlab import data
from mixlab.data import prepare
from mixlab.models import ModelConfig

GOAL = 50.0
GOAL_B = 1e6  # tokens/s per host from prepared shards


def pipeline_tokens_per_s(data_cfg, batch: int, seconds: float, repeats: int) -> dict:
    t0 = time.perf_counter()
    it = iter(data.make_train_dataset(data_cfg, batch_size=batch, seed=0, shard_index=0, shard_count=1))
    next(it)
    setup_s = time.perf_counter() - t0
    rates = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for b in itertools.islice(it, 50):
                n += b["inputs"].size
        rates.append(n / (time.perf_counter() - t0))
    return {
        "tokens_per_s": statistics.median(rates),
        "sequences_per_s": statistics.median(rates) / data_cfg.seq_len,
        "repeats_tokens_per_s": rates,
        "setup_s": setup_s,
        "weights": data.resolve_plan(data_cfg, global_batch_size=batch).mixture.as_dict(),
    }


def pretokenized_tokens_per_s(config, batch: int, seconds: float, repeats: int) -> dict:
    """(b): the quickstart mixture prepared into ArrayRecord shards, then read by the same pipeline."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "prepared")
        t0 = time.perf_counter()
        index = prepare.prepare(config, out)
        prepare_s = time.perf_counter() - t0
        cfg = ml_collections.ConfigDict(
            {"weights": {}, "seq_len": config.data.seq_len, "mixture_file": os.path.join(out, "mixture.json")}
        )
        result = pipeline_tokens_per_s(cfg, batch, seconds, repeats)
    tokens = sum(s["tokens"] for d in index["domains"].values() for s in d["splits"].values())
    return {**result, "prepare_s": prepare_s, "prepared_tokens": tokens, "goal_tokens_per_s": GOAL_B}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq_len", type=int, default=256)
    p.add_argument("--seconds", type=float, default=2.0, help="per timed repeat of the pipeline")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train_steps", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help="batch 2, 0.1 s, the nano model: seconds")
    args = p.parse_args()
    if args.smoke:
        args.batch, args.seq_len, args.seconds, args.repeats, args.train_steps = 2, 64, 0.1, 1, 1
    loadavg_start = os.getloadavg()
    config = quickstart.get_config("runlocal" if args.smoke else None)  # runlocal: the nano model
    cfg = ml_collections.ConfigDict({"weights": dict(config.data.weights), "seq_len": args.seq_len})
    every = ml_collections.ConfigDict({"weights": dict.fromkeys(data.DOMAINS, 1.0), "seq_len": args.seq_len})
    quick = pipeline_tokens_per_s(cfg, args.batch, args.seconds, args.repeats)
    all_domains = pipeline_tokens_per_s(every, args.batch, args.seconds, args.repeats)
    config.data.seq_len = args.seq_len
    pretokenized = pretokenized_tokens_per_s(config, args.batch, args.seconds, args.repeats)

    model = ModelConfig.from_dict({**dict(config.model), "vocab_size": data.ByteTokenizer.vocab_size})
    peak = train_step.make_peak(model.dtype, 256 if args.smoke else 0)
    trained = train_step.bench(model, args.seq_len, args.batch, args.train_steps, peak)
    ratio = quick["tokens_per_s"] / trained["tokens_per_s"]
    results = {
        "device": jax.devices()[0].device_kind,
        "a_text_tokenize_pack_mix": quick,
        "a_all_domains_equal": all_domains,
        "b_pretokenized_arrayrecord": pretokenized,
        "b_meets_goal": pretokenized["tokens_per_s"] >= GOAL_B,
        "train_step_quickstart": trained,
        "ratio_a_over_train": ratio,
        "ratio_a_all_domains_over_train": all_domains["tokens_per_s"] / trained["tokens_per_s"],
        "goal_ratio": GOAL,
        "meets_goal": ratio >= GOAL,
        "loadavg_start": list(loadavg_start),
        "loadavg_end": list(os.getloadavg()),
        "config": vars(args),
    }
    setup = f"(setup {quick['setup_s']:.1f} s)"
    print(f"(a) pipeline, quickstart mixture: {quick['tokens_per_s']:12,.0f} tok/s {setup}")
    print(f"(a) pipeline, {len(data.DOMAINS)} domains equal:   {all_domains['tokens_per_s']:12,.0f} tok/s")
    prep = f"(prepare {pretokenized['prepare_s']:.1f} s, setup {pretokenized['setup_s']:.1f} s)"
    print(f"(b) prepared ArrayRecord shards:  {pretokenized['tokens_per_s']:12,.0f} tok/s {prep}")
    print(f"quickstart train step:            {trained['tokens_per_s']:12,.0f} tok/s")
    print(f"ratio (a) / train: {ratio:,.0f}x (goal >= {GOAL:.0f}x)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
