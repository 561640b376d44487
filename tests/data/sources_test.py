"""Your own domains from a mixture file: registry ids, realised shares, provenance, splits, arms, audit."""

import itertools
import json
import os

import numpy as np
import pytest

from mixlab.data import (
    ByteTokenizer,
    audit,
    eval_batches,
    make_train_dataset,
    resolve_plan,
    sources,
    tokenizer_train,
)
from tests.data import user_corpus

PARQUET = [
    False,
    pytest.param(
        True,
        marks=pytest.mark.skipif(not user_corpus.has_pyarrow(), reason="pyarrow not installed: no parquet"),
    ),
]


def _take(cfg, n_batches, batch_size=8, seed=0):
    ds = make_train_dataset(cfg, batch_size=batch_size, seed=seed, shard_index=0, shard_count=1)
    return list(itertools.islice(ds, n_batches))


@pytest.mark.parametrize("parquet", PARQUET)
def test_mixture_file_ids_shares_and_provenance(tmp_path, parquet):
    path = user_corpus.write(tmp_path, parquet=parquet)
    cfg = user_corpus.data_cfg(path)
    names = ("prose", "code", "tables") if parquet else ("prose", "code")
    weights = np.array([0.5, 0.3, 0.2] if parquet else [0.5, 0.3])
    weights = weights / weights.sum()
    plan = resolve_plan(cfg, global_batch_size=8)
    assert plan.names == names and plan.mixture.weights == pytest.approx(tuple(weights))
    batches = _take(cfg, 250)  # 2,000 sequences
    domain = np.concatenate([b["domain"] for b in batches])
    assert (domain == domain[:, :1]).all()
    onehot = np.eye(len(names))[domain[:, 0]]
    cum = np.concatenate([np.zeros((1, len(names))), np.cumsum(onehot - weights, axis=0)])
    assert np.abs(cum[1000:] - cum[:-1000]).max() < 5  # < 0.5 pp in every window of 1,000
    catalog = sources.catalog(cfg)
    inputs = np.concatenate([b["inputs"] for b in batches])
    for i, name in enumerate(names):  # each row's text comes from its domain's documents
        text = "\n".join(catalog.texts(name, "train"))
        for row in inputs[domain[:, 0] == i][:5]:
            piece = max(np.split(row, np.flatnonzero(row <= 2)), key=len)[1:13]  # within one document
            assert ByteTokenizer().decode(piece).strip("\ufffd") in text


def test_ids_follow_the_file_order_and_arms_keep_them(tmp_path):
    path = user_corpus.write(tmp_path, parquet=False)
    with open(path) as f:
        spec = json.load(f)
    spec["domains"] = dict(reversed(list(spec["domains"].items())))  # code first now
    path2 = os.path.join(tmp_path, "reversed.json")
    with open(path2, "w") as f:
        json.dump(spec, f)
    assert resolve_plan(user_corpus.data_cfg(path2), global_batch_size=8).names == ("code", "prose")
    cfg = user_corpus.data_cfg(path, arm="remove:code")
    plan = resolve_plan(cfg, global_batch_size=8)
    assert plan.names == ("prose", "code") and plan.mixture.as_dict() == {"prose": 1.0, "code": 0.0}
    ids = np.concatenate([b["domain"][:, 0] for b in _take(cfg, 10)])
    assert set(ids.tolist()) == {0}  # prose keeps id 0, code is not read
    report = audit.audit(cfg, steps=20, batch_size=8, seed=0, sequences=80)
    assert report["domains"]["code"]["tokens_run_delta"] < 0 and report["arm"] == "remove:code:proportional"
    with pytest.raises(
        ValueError, match=r"data\.arm 'remove:web': unknown domain 'web' .*known: prose, code"
    ):
        resolve_plan(user_corpus.data_cfg(path, arm="remove:web"), global_batch_size=8)


def test_splits_by_source_and_by_hash(tmp_path):
    path = user_corpus.write(tmp_path, parquet=False, eval_fraction=0.2)
    catalog = sources.catalog(user_corpus.data_cfg(path))
    train, held_out = catalog.texts("prose", "train"), catalog.texts("prose", "eval")
    assert len(train) + len(held_out) == 500 and 50 < len(held_out) < 150
    assert all(sources.is_eval(t, 0.2) for t in held_out) and not any(sources.is_eval(t, 0.2) for t in train)
    # A held-out source ("split": "eval") and no hash split: the copy of a held-out file leaves train.
    with open(os.path.join(tmp_path, "code", "m00.py")) as f:
        copied = f.read()
    os.makedirs(tmp_path / "held")
    (tmp_path / "held" / "x.py").write_text(copied)
    spec = {
        "domains": {
            "code": {
                "weight": 1,
                "sources": [
                    {"kind": "text", "path": "code/*.py"},
                    {"kind": "text", "path": "held/*.py", "split": "eval"},
                ],
            }
        }
    }
    (tmp_path / "split.json").write_text(json.dumps(spec))
    catalog = sources.catalog(user_corpus.data_cfg(str(tmp_path / "split.json")))
    assert catalog.mixture.domain("code").eval_fraction == 0.0  # an eval source turns the hash split off
    assert catalog.texts("code", "eval") == [copied]
    assert copied not in catalog.texts("code", "train") and len(catalog.texts("code", "train")) == 59
    manifest = catalog.manifest()["domains"]["code"]
    assert manifest["removed_eval_duplicates"] == 1
    assert manifest["splits"]["train"]["tokens"] == sum(
        len(t.encode()) + 1 for t in catalog.texts("code", "train")
    )
    batches = eval_batches(
        user_corpus.data_cfg(str(tmp_path / "split.json")), "code", batch_size=2, num_batches=1
    )
    assert ByteTokenizer().decode(batches[0]["inputs"][0]) == copied[:32]


def test_invalid_utf8_is_skipped_counted_and_audited_or_strict(tmp_path):
    path = user_corpus.write(tmp_path, parquet=False)
    with open(tmp_path / "prose" / "part1.jsonl", "ab") as f:
        f.write(b'{"text": "bad \xff byte"}\n{"text": ""}\n{"text": "lone \\ud800 surrogate"}\n')
    report = audit.audit(user_corpus.data_cfg(path), steps=10, batch_size=8, seed=0, sequences=40)
    (stats,) = report["sources"]["domains"]["prose"]["sources"]
    assert (stats["skipped_invalid_utf8"], stats["skipped_empty"], stats["files"]) == (2, 1, 2)
    assert stats["skipped_examples"][0].endswith("part1.jsonl:251 (invalid_utf8)")
    assert sum(stats["documents"].values()) == 500  # everything else was kept
    assert "prose: skipped 2 invalid UTF-8 and 1 empty documents" in audit.format_table(report)
    with pytest.raises(ValueError, match=r"part1\.jsonl:251: invalid UTF-8 at byte 14 \(data.strict_utf8"):
        sources.catalog(user_corpus.data_cfg(path, strict_utf8=True)).stream("prose", "train")


def test_eval_bytes_are_the_documents_bytes_whatever_the_tokenizer(tmp_path):
    """Bits per byte's denominator: the UTF-8 bytes of the held-out text, not a count of tokens."""
    path = user_corpus.write(tmp_path, parquet=False)
    texts = {"prose": sources.catalog(user_corpus.data_cfg(path)).texts("prose")}
    bpe, _ = tokenizer_train.train_bpe(texts, vocab_size=300)
    (tmp_path / "bpe.json").write_text(json.dumps(bpe.to_dict()))
    for spec, tok in (("bytes", ByteTokenizer()), (f"bpe:{tmp_path}/bpe.json", bpe)):
        cfg = user_corpus.data_cfg(path, tokenizer=spec)
        for name in ("prose", "code"):
            batches = eval_batches(cfg, name, batch_size=1, num_batches=10**6)  # every window
            targets = np.concatenate([b["targets"][b["loss_mask"] > 0] for b in batches])
            first = np.concatenate([b["inputs"][:, 0] for b in batches])  # each window's first token
            documents = sources.catalog(cfg).texts(name, "eval")
            assert tok.num_bytes(targets) + tok.num_bytes(first) == sum(len(d.encode()) for d in documents)
            if spec != "bytes":
                assert len(targets) < tok.num_bytes(targets)  # fewer tokens than bytes: merges at work
