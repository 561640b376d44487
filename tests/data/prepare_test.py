"""experiments.prepare: ArrayRecord shards train to exactly the token stream of tokenizing on the fly."""

import itertools
import json
import os
import shutil

import numpy as np
import pytest

from configs import quickstart
from mixlab.data import eval_batches, make_train_dataset, prepare, shards, sources
from tests.data import user_corpus


def _take(data_cfg, n_batches, batch_size=8, seed=3):
    ds = make_train_dataset(data_cfg, batch_size=batch_size, seed=seed, shard_index=0, shard_count=1)
    return list(itertools.islice(ds, n_batches))


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def _same_stream(on_the_fly, prepared, n_batches=150):
    _assert_same_batches(_take(on_the_fly.data, n_batches), _take(prepared.data, n_batches))
    for name in sources.catalog(on_the_fly.data).names:
        a = eval_batches(on_the_fly.data, name, batch_size=4, num_batches=50)
        _assert_same_batches(a, eval_batches(prepared.data, name, batch_size=4, num_batches=50))


@pytest.mark.parametrize("parquet", [False, pytest.param(True, marks=pytest.mark.skipif(
    not user_corpus.has_pyarrow(), reason="pyarrow not installed: no parquet"))])  # fmt: skip
def test_round_trip_gives_the_same_token_stream(tmp_path, parquet):
    path = user_corpus.write(tmp_path / "corpus", parquet=parquet)
    config = quickstart.get_config(f"runlocal,mixture={path}")
    out = str(tmp_path / "prepared")
    index = prepare.prepare(config, out, shard_tokens=8000)  # several shards per split
    catalog = sources.catalog(config.data)
    for name in catalog.names:
        entry = index["domains"][name]["splits"]["train"]
        assert entry["tokens"] == catalog.available_tokens(name)
        assert entry["documents"] == len(catalog.stream(name, "train").documents)
        n = len(entry["shards"])
        assert entry["shards"][0] == f"{name}/train-00000-of-{n:05d}.arrayrecord"
    assert len(index["domains"]["prose"]["splits"]["train"]["shards"]) > 2
    assert index["tokenizer"] == {"name": "bytes", "vocab_size": 259, "sha256": "bytes"}
    prepared = quickstart.get_config(f"runlocal,mixture={out}/mixture.json")
    assert sources.catalog(prepared.data).names == catalog.names  # the same ids
    _same_stream(config, prepared)


def test_builtin_corpus_round_trip(tmp_path):
    config = quickstart.get_config("runlocal")
    config.data.weights = {"code": 0.5, "math": 0.5}
    out = str(tmp_path / "prepared")
    index = prepare.prepare(config, out)
    assert list(index["domains"]) == list(sources.catalog(config.data).names)  # every domain, weighted or not
    prepared = quickstart.get_config(f"runlocal,mixture={out}/mixture.json")
    with open(f"{out}/mixture.json") as f:
        assert {n: d["weight"] for n, d in json.load(f)["domains"].items() if d["weight"]} == {
            "code": 0.5,
            "math": 0.5,
        }
    _assert_same_batches(_take(config.data, 60), _take(prepared.data, 60))


def test_bpe_round_trip_and_shards_of_another_tokenizer(tmp_path):
    path = user_corpus.write(tmp_path / "corpus", parquet=False)
    config = quickstart.get_config(f"runlocal,mixture={path}")
    out = str(tmp_path / "bpe")
    index = prepare.prepare(config, out, train_tokenizer="bpe", vocab_size=400)
    assert index["tokenizer"]["name"] == "bpe" and index["dtype"] == "uint16"
    assert set(index["trained_tokenizer"]["sample_bytes_per_domain"]) == {"prose", "code"}
    on_the_fly = quickstart.get_config(f"runlocal,mixture={path}")
    on_the_fly.data.tokenizer = f"bpe:{out}/tokenizer.json"
    prepared = quickstart.get_config(f"runlocal,mixture={out}/mixture.json")
    prepared.data.tokenizer = f"bpe:{out}/tokenizer.json"
    _same_stream(on_the_fly, prepared, n_batches=60)
    assert _take(prepared.data, 1)[0]["inputs"].max() >= 259  # merges are used
    bytes_cfg = quickstart.get_config(f"runlocal,mixture={out}/mixture.json")  # data.tokenizer = "bytes"
    with pytest.raises(ValueError) as e:
        sources.catalog(bytes_cfg.data)
    message = str(e.value)
    assert message.startswith("tokenizer mismatch: mixture file") and f"index {out}/index.json" in message
    assert f"made with bpe (vocab {index['tokenizer']['vocab_size']}, sha256" in message
    assert message.endswith("but data.tokenizer asks bytes")


def test_refuses_a_used_out_dir_and_stale_shards(tmp_path):
    path = user_corpus.write(tmp_path / "corpus", parquet=False)
    config = quickstart.get_config(f"runlocal,mixture={path}")
    out = tmp_path / "prepared"
    prepare.prepare(config, str(out))
    with pytest.raises(ValueError, match=f"--out {out} is not empty"):
        prepare.prepare(config, str(out))
    stale = str(out / "code" / "train-00001-of-00002.arrayrecord")
    shutil.copy(out / "code" / "train-00000-of-00001.arrayrecord", stale)
    shutil.copy(out / "code" / "train-00000-of-00001.lengths.npy", shards.lengths_path(stale))
    with pytest.raises(ValueError, match=f"shard {stale} is not listed in {out}/index.json"):
        sources.catalog(quickstart.get_config(f"runlocal,mixture={out}/mixture.json").data)
    os.remove(stale)
    os.remove(out / "index.json")  # what a prepare cut short leaves
    with pytest.raises(ValueError, match=r"no index\.json beside"):
        sources.catalog(quickstart.get_config(f"runlocal,mixture={out}/mixture.json").data)
