"""End to end on your own data: train.train of quickstart:runlocal from a mixture file, evaluation, and
the tokenizer a workdir was trained with (saved, reused by evaluation, a mismatch refused naming both)."""

import json
import os
import shutil

import numpy as np
import pytest

from configs import quickstart
from mixlab import configlib, train
from mixlab.data import prepare, tokenizer, tokenizer_train
from mixlab.evals import run as eval_run
from tests.data import user_corpus


def _config(mixture_file, tokenizer_spec="bytes", steps=2):
    c = quickstart.get_config(f"runlocal,mixture={mixture_file}")
    c.data.tokenizer = tokenizer_spec
    c.train.steps, c.train.log_every, c.checkpoint.every = steps, 1, steps
    c.mesh = {"data": 1, "fsdp": 1, "expert": 1, "tensor": 1}
    c.eval.batch_size = 2  # the small eval splits of user_corpus hold a few batches
    return c


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_train_on_a_mixture_file_and_refuse_another_tokenizer(tmp_path):
    path = user_corpus.write(tmp_path / "corpus", parquet=user_corpus.has_pyarrow())
    with open(path) as f:
        spec = json.load(f)
    spec["domains"]["code"]["eval_fraction"] = 0  # trained on, never held out
    with open(path, "w") as f:
        json.dump(spec, f)
    workdir = str(tmp_path / "run")
    train.train(_config(path), workdir)
    names = ["prose", "code", "tables"] if user_corpus.has_pyarrow() else ["prose", "code"]
    last = _metrics(workdir)[-1]
    assert last["step"] == 2 and all(f"train/{n}/loss" in last for n in names)
    with open(os.path.join(workdir, "routing_train_counts.json")) as f:
        assert json.load(f)["domains"] == names  # ids = the file's order
    with open(os.path.join(workdir, "data_audit.json")) as f:
        audit = json.load(f)
    assert list(audit["domains"]) == names and audit["sources"]["mixture_file"] == path
    assert tokenizer.load_workdir(workdir) == tokenizer.ByteTokenizer()
    _, results = eval_run.evaluate_checkpoint(workdir, num_devices=1)
    assert list(results) == [n for n in names if n != "code"]  # no eval split: skipped, with a warning
    texts = {"prose": user_corpus.WORDS * 20}
    (tmp_path / "bpe.json").write_text(
        json.dumps(tokenizer_train.train_bpe(texts, vocab_size=300)[0].to_dict())
    )
    with pytest.raises(configlib.ConfigError) as e:  # resuming with another tokenizer
        train.train(_config(path, f"bpe:{tmp_path}/bpe.json", steps=3), workdir)
    assert (
        f"workdir {workdir} (tokenizer.json) uses bytes, but the config (data.tokenizer) asks bpe (vocab"
        in (str(e.value))
    )
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2"]  # nothing trained


@pytest.mark.slow
def test_bpe_from_prepared_shards_end_to_end(tmp_path):
    path = user_corpus.write(tmp_path / "corpus", parquet=False)
    out = str(tmp_path / "prepared")
    prepare.prepare(_config(path), out, train_tokenizer="bpe", vocab_size=400)
    workdir = str(tmp_path / "run")
    config = _config(f"{out}/mixture.json", f"bpe:{out}/tokenizer.json")
    train.train(config, workdir)
    saved = tokenizer.load_workdir(workdir)
    assert saved == tokenizer.from_spec(f"bpe:{out}/tokenizer.json") and saved.name == "bpe"
    assert train.resolve(config).model.vocab_size == saved.vocab_size
    shutil.move(f"{out}/tokenizer.json", f"{out}/moved.json")  # evaluation needs only the workdir's copy
    _, results = eval_run.evaluate_checkpoint(workdir, num_devices=1)
    assert list(results) == ["prose", "code"]
    for r in results.values():
        assert r["bytes"] > r["tokens"] > 0  # BPE: more bytes than tokens; bpb divides by bytes
        assert r["bpb"] == pytest.approx(r["loss"] * r["tokens"] / (np.log(2) * r["bytes"]))
    other, _ = tokenizer_train.train_bpe({"x": user_corpus.WORDS * 20}, vocab_size=300)
    with open(f"{out}/tokenizer.json", "w") as f:  # the config's file retrained in place
        json.dump(other.to_dict(), f)
    with pytest.raises(configlib.ConfigError) as e:
        eval_run.evaluate_checkpoint(workdir, num_devices=1)
    assert f"tokenizer mismatch: workdir {workdir} (tokenizer.json) uses {saved.describe()}" in str(e.value)
    assert f"but its config (data.tokenizer = 'bpe:{out}/tokenizer.json') asks bpe (vocab" in str(e.value)
