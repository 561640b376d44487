"""Grain pipeline: realised mixture, provenance, common random numbers, exact resume, sharding."""

import itertools
import json

import grain
import ml_collections
import numpy as np
import pytest

from mixlab.data import (
    ByteTokenizer,
    eval_batches,
    load_documents,
    make_train_dataset,
    pipeline,
    resolve_mixture,
)

SEQ_LEN = 64
EOS = ByteTokenizer.eos_id


def _cfg(seq_len=SEQ_LEN, **weights):
    weights = weights or {"text": 0.5, "code": 0.3, "math": 0.2}
    return ml_collections.ConfigDict({"weights": weights, "seq_len": seq_len})


def _id(cfg, domain):
    # A ConfigDict iterates in sorted key order: code 0, math 1, text 2 when all three are listed.
    return resolve_mixture(cfg.weights).names.index(domain)


def _take(cfg, n_batches, batch_size=10, seed=0, **shard):
    shard = shard or {"shard_index": 0, "shard_count": 1}
    ds = make_train_dataset(cfg, batch_size=batch_size, seed=seed, **shard)
    return list(itertools.islice(ds, n_batches))


def _sequences_of(batches, domain_id):
    """Input rows of one domain, in stream order."""
    rows = np.concatenate([b["inputs"] for b in batches])
    ids = np.concatenate([b["domain"][:, 0] for b in batches])
    return rows[ids == domain_id]


def _windows_of(batches, domain_id):
    """Packed windows (inputs plus the last target) of one domain, in stream order."""
    rows = np.concatenate([np.concatenate([b["inputs"], b["targets"][:, -1:]], 1) for b in batches])
    ids = np.concatenate([b["domain"][:, 0] for b in batches])
    return rows[ids == domain_id]


# --- one transform at a time ------------------------------------------------------------------


def test_tokenize_appends_eos():
    np.testing.assert_array_equal(pipeline.tokenize("ab")["tokens"], [ord("a") + 3, ord("b") + 3, 2])


def test_pack_concatenates_without_padding_until_the_input_ends():
    docs = ["x" * n for n in (1, 5, 200, 3, 64, 65, 7)]
    ds = grain.MapDataset.source(docs).to_iter_dataset().map(pipeline.tokenize)
    windows = list(pipeline.pack(ds, seq_len=SEQ_LEN))
    stream = np.concatenate([pipeline.tokenize(d)["tokens"] for d in docs])
    packed = np.concatenate([w["tokens"] for w in windows])
    assert all(len(w["tokens"]) == SEQ_LEN + 1 for w in windows)
    np.testing.assert_array_equal(packed[: len(stream)], stream)  # nothing lost, dropped or reordered
    assert not packed[len(stream) :].any()  # only the last window is padded, with pad_id 0
    assert (windows[-1]["tokens_segment_ids"] > 0).sum() == len(stream) % (SEQ_LEN + 1)


def test_to_example_shifts_and_masks():
    window = {
        "tokens": np.array([5, 6, 7, 2, 0, 0]),
        "tokens_segment_ids": np.array([1, 1, 1, 1, 0, 0]),
    }
    ex = pipeline.to_example(window, domain_id=2)
    np.testing.assert_array_equal(ex["inputs"], [5, 6, 7, 2, 0])
    np.testing.assert_array_equal(ex["targets"], [6, 7, 2, 0, 0])
    np.testing.assert_array_equal(ex["loss_mask"], [1, 1, 1, 0, 0])  # masked where the target is pad
    np.testing.assert_array_equal(ex["domain"], [2] * 5)


def test_domain_seed_depends_on_name_and_seed_only():
    assert pipeline.domain_seed(0, "code") == pipeline.domain_seed(0, "code")
    assert len({pipeline.domain_seed(s, d) for s in range(3) for d in ("text", "code")}) == 6


# --- the training stream ----------------------------------------------------------------------


def test_batch_format_and_shift():
    batch = _take(_cfg(), 1, batch_size=4)[0]
    assert {k: (v.dtype, v.shape) for k, v in batch.items()} == {
        "inputs": (np.int32, (4, SEQ_LEN)),
        "targets": (np.int32, (4, SEQ_LEN)),
        "domain": (np.int32, (4, SEQ_LEN)),
        "loss_mask": (np.float32, (4, SEQ_LEN)),
    }
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    assert (batch["loss_mask"] == 1.0).all()  # concat packing of an endless stream never pads
    assert batch["inputs"].min() >= 0 and batch["inputs"].max() < ByteTokenizer.vocab_size


def test_realised_shares_and_provenance():
    cfg = _cfg(text=0.5, code=0.3, math=0.2)
    batches = _take(cfg, 100)  # 1,000 sequences
    domain = np.concatenate([b["domain"] for b in batches])
    assert (domain == domain[:, :1]).all()  # one domain per sequence
    counts = np.bincount(domain[:, 0], minlength=3)
    for name, weight in cfg.weights.items():
        assert abs(counts[_id(cfg, name)] - 1000 * weight) <= 1, (name, counts)
        # Every byte run between eos tokens must come from one document of the tagged domain.
        corpus = b"\x00".join(d.encode() for d in load_documents(name, "train"))
        for row in _windows_of(batches, _id(cfg, name)):
            for piece in np.split(row, np.flatnonzero(row == EOS)):
                piece = piece[piece != EOS]
                assert (piece - 3).astype(np.uint8).tobytes() in corpus
    math_text = ByteTokenizer().decode(_sequences_of(batches, _id(cfg, "math"))[0])
    assert "Question:" in math_text or "Answer:" in math_text


def test_code_stream_is_the_same_whatever_the_other_weights():
    def code_stream(cfg, n_batches, seed=0):
        return _sequences_of(_take(cfg, n_batches, seed=seed), _id(cfg, "code"))[:50]

    full = code_stream(_cfg(text=0.5, code=0.3, math=0.2), 20)  # 60 code sequences
    assert len(full) == 50
    np.testing.assert_array_equal(full, code_stream(_cfg(text=0.0, code=0.1, math=0.9), 50))
    np.testing.assert_array_equal(full, code_stream(_cfg(code=1.0), 5))  # code alone
    assert not np.array_equal(full, code_stream(_cfg(code=1.0), 5, seed=1))  # the seed matters


def test_zero_weight_domain_is_never_read_but_keeps_its_id():
    cfg = _cfg(text=0.5, code=0.0, math=0.5)
    batches = _take(cfg, 10)
    ids = set(np.unique(np.concatenate([b["domain"] for b in batches])).tolist())
    assert ids == {_id(cfg, "text"), _id(cfg, "math")} and _id(cfg, "code") not in ids


def test_resume_from_state_yields_the_same_batches():
    ds = make_train_dataset(_cfg(), batch_size=4, seed=3, shard_index=0, shard_count=1)
    it = iter(ds)
    for _ in range(7):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # what Orbax stores: plain JSON
    expected = [next(it) for _ in range(3)]
    resumed = iter(ds)
    resumed.set_state(state)
    for want, got in zip(expected, [next(resumed) for _ in range(3)], strict=True):
        for key in want:
            np.testing.assert_array_equal(want[key], got[key])


def test_resume_through_orbax(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    ds = make_train_dataset(_cfg(), batch_size=2, seed=0, shard_index=0, shard_count=1)
    it = iter(ds)
    for _ in range(5):
        next(it)
    with ocp.CheckpointManager(tmp_path) as mngr:
        mngr.save(5, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        mngr.wait_until_finished()
        expected = next(it)
        restored = mngr.restore(5, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(iter(ds))))
    np.testing.assert_array_equal(next(restored["data"])["inputs"], expected["inputs"])


def test_process_shards_are_disjoint_and_cover_the_documents():
    for domain in ("text", "code", "math"):
        sources = [pipeline.domain_source(domain, "train", shard_index=i, shard_count=2) for i in (0, 1)]
        shards = [[src[i] for i in range(len(src))] for src in sources]  # list(src) is 30x slower
        assert all(shards) and not set(shards[0]) & set(shards[1])
        assert sorted(shards[0] + shards[1]) == sorted(load_documents(domain, "train"))
    first = [_take(_cfg(), 1, shard_index=i, shard_count=2)[0]["inputs"] for i in range(2)]
    assert not np.array_equal(first[0], first[1])
    with pytest.raises(ValueError, match="shard_index=2"):
        pipeline.domain_source("code", "train", shard_index=2, shard_count=2)


def test_default_shard_is_the_jax_process():
    default = make_train_dataset(_cfg(), batch_size=2, seed=0)
    np.testing.assert_array_equal(next(iter(default))["inputs"], _take(_cfg(), 1, 2)[0]["inputs"])


# --- eval ---------------------------------------------------------------------------------------


def test_eval_batches_are_deterministic_and_from_the_eval_split():
    cfg = _cfg(text=1.0, code=0.0, math=0.0)  # an eval domain may have weight 0
    a = eval_batches(cfg, "code", batch_size=4, num_batches=3)
    b = eval_batches(cfg, "code", batch_size=4, num_batches=3)
    assert len(a) == 3
    for x, y in zip(a, b, strict=True):
        assert all(np.array_equal(x[k], y[k]) for k in x)
        assert (x["domain"] == _id(cfg, "code")).all() and x["inputs"].shape == (4, SEQ_LEN)
    tokens = _windows_of(a, _id(cfg, "code")).reshape(-1)
    stream = np.concatenate([pipeline.tokenize(d)["tokens"] for d in load_documents("code", "eval")])
    np.testing.assert_array_equal(tokens, stream[: len(tokens)])  # corpus order, no shuffle


def test_eval_returns_what_exists():
    cfg = _cfg(seq_len=256)
    batches = eval_batches(cfg, "math", batch_size=8, num_batches=10**6)
    tokens = sum(len(d.encode()) + 1 for d in load_documents("math", "eval"))
    assert len(batches) == -(-tokens // 257) // 8  # every window, the last one padded, in full batches
    for b in batches:
        assert (b["targets"][b["loss_mask"] == 0] == 0).all()  # only padding is masked


@pytest.mark.parametrize(
    "weights, domain, kwargs, message",
    [
        ({"text": 1.0}, "code", {}, "eval domain 'code' is not in data.weights (have: text)"),
        ({"text": 1.0}, "web", {}, "eval domain 'web' is not in data.weights"),
        ({"math": 1.0}, "math", {"batch_size": 10**6}, "eval split of domain 'math' has fewer"),
        ({"math": 1.0}, "math", {"num_batches": 0}, "num_batches = 0"),
    ],
)
def test_eval_errors(weights, domain, kwargs, message):
    kwargs = {"batch_size": 2, "num_batches": 1} | kwargs
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        eval_batches(_cfg(**weights), domain, **kwargs)


@pytest.mark.parametrize(
    "cfg, message",
    [
        (_cfg(text=1.0, foo=1.0), "unknown domain 'foo'"),
        (_cfg(text=1.0, code=-1.0), "data.weights['code'] = -1.0 is negative"),
        (_cfg(text=0.0), "data.weights sum to 0"),
        (_cfg(seq_len=0), "data.seq_len = 0"),
    ],
)
def test_train_errors(cfg, message):
    with pytest.raises(ValueError) as e:
        make_train_dataset(cfg, batch_size=2, seed=0, shard_index=0, shard_count=1)
    assert message in str(e.value)
