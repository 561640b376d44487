"""Tokenizers: exact round trips, the id layout others rely on, bytes for bits-per-byte, save/load."""

import json

import numpy as np
import pytest

from mixlab.data import ByteTokenizer, tokenizer, tokenizer_train

TEXTS = ["", "hello world", "héllo wörld — naïve 日本語 🙂\n\ttabs", "\x00\x7f control"]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_and_byte_count(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids.dtype == np.int32
    assert len(ids) == len(text.encode("utf-8"))  # one id per byte, no specials
    assert ids.size == 0 or (ids.min() >= 3 and ids.max() < tok.vocab_size)
    assert tok.decode(ids) == text
    assert tok.num_bytes(ids) == len(text.encode("utf-8"))


def test_id_layout():
    tok = ByteTokenizer()
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.vocab_size, tok.name) == (0, 1, 2, 259, "bytes")
    np.testing.assert_array_equal(tok.encode("A\xff"), [ord("A") + 3, 0xC3 + 3, 0xBF + 3])


def test_specials_are_dropped_and_not_counted():
    tok = ByteTokenizer()
    ids = np.concatenate([[tok.bos_id], tok.encode("ab"), [tok.eos_id], tok.encode("ç"), [0, 0]])
    assert tok.decode(ids) == "abç"
    assert tok.num_bytes(ids) == 4  # a, b and the two bytes of ç
    assert tok.num_bytes(ids.reshape(2, 4)) == 4  # any shape, e.g. a batch


def test_broken_utf8_is_replaced():
    tok = ByteTokenizer()
    assert tok.decode(tok.encode("日")[:2]) == "\ufffd"


def test_dict_round_trip():
    tok = ByteTokenizer()
    assert ByteTokenizer.from_dict(tok.to_dict()) == tok
    with pytest.raises(ValueError, match="'sentencepiece'"):
        ByteTokenizer.from_dict({"name": "sentencepiece"})


# --- byte-level BPE ---------------------------------------------------------------------------


def _training_texts():
    words = ["the", "river", "runs", "over", "stone", "and", "light;", "def", "f(x):", "return", "x * 2"]
    words += ["+", "1", "#", "ünïcödé", "✓"]
    prose = [" ".join(words[(i * 7 + j) % len(words)] for j in range(40)) for i in range(200)]
    code = [f"def f{i}(x):\n    return x * {i} + {i * i}\n" * 5 for i in range(100)]
    return {"prose": prose, "code": code}


@pytest.fixture(scope="module")
def bpe():
    return tokenizer_train.train_bpe(_training_texts(), vocab_size=400)[0]


BPE_TEXTS = [*TEXTS, "the river runs <|eos|> over <|pad|> stone", "def f7(x):\n    return x * 7 + 49\n" * 3]


@pytest.mark.parametrize("text", BPE_TEXTS)
def test_bpe_round_trip_and_byte_count(bpe, text):
    ids = bpe.encode(text)
    assert ids.dtype == np.int32 and (ids.size == 0 or (ids.min() >= 3 and ids.max() < bpe.vocab_size))
    assert bpe.decode(ids) == text  # "<|eos|>" in a document is text, never the eos id
    assert bpe.num_bytes(ids) == len(text.encode("utf-8"))
    with_specials = np.concatenate([[bpe.bos_id], ids, [bpe.eos_id, bpe.pad_id, bpe.pad_id]])
    assert bpe.decode(with_specials) == text and bpe.num_bytes(with_specials) == len(text.encode("utf-8"))


def test_bpe_layout_and_compression(bpe):
    assert (bpe.pad_id, bpe.bos_id, bpe.eos_id, bpe.name) == (0, 1, 2, "bpe")
    assert 259 < bpe.vocab_size <= 400
    text = _training_texts()["code"][3]
    assert len(bpe.encode(text)) < len(text.encode()) / 2  # merges are learnt and used
    np.testing.assert_array_equal(bpe.encode_batch([text, "ab"])[0], bpe.encode(text))


def test_bpe_save_load_gives_identical_ids(bpe, tmp_path):
    d = json.loads(json.dumps(bpe.to_dict()))  # what WORKDIR/tokenizer.json holds
    again = tokenizer.from_dict(d)
    assert again == bpe and again.fingerprint == bpe.fingerprint
    for text in BPE_TEXTS:
        np.testing.assert_array_equal(again.encode(text), bpe.encode(text))
    (tmp_path / "mixlab.json").write_text(json.dumps(d))
    (tmp_path / "hf.json").write_text(json.dumps(d["hf"]))  # a plain HF tokenizers file works too
    for name in ("mixlab.json", "hf.json"):
        assert tokenizer.from_spec(f"bpe:{tmp_path / name}") == bpe
    d["sha256"] = "0" * 16
    with pytest.raises(ValueError, match="sha256 0000000000000000 does not match its content"):
        tokenizer.from_dict(d)
    assert tokenizer_train.train_bpe(_training_texts(), vocab_size=400)[0] == bpe  # deterministic


def test_mismatch_names_both_and_bad_specs(bpe, tmp_path):
    with pytest.raises(ValueError) as e:
        tokenizer.check_same(bpe, ByteTokenizer(), saved_what="workdir W", wanted_what="the config")
    assert f"workdir W uses bpe (vocab {bpe.vocab_size}, sha256 {bpe.fingerprint})" in str(e.value)
    assert "but the config asks bytes" in str(e.value)
    hf = bpe.to_dict()["hf"]
    hf["added_tokens"][0]["content"] = "<pad>"
    hf["model"]["vocab"]["<pad>"] = hf["model"]["vocab"].pop("<|pad|>")
    (tmp_path / "other.json").write_text(json.dumps(hf))
    with pytest.raises(ValueError, match=r"other.json: special '<\|pad\|>' must have id 0"):
        tokenizer.load_file(str(tmp_path / "other.json"))
    with pytest.raises(ValueError, match=r"--vocab_size = 100 must be an integer in \[260, 65536\]"):
        tokenizer_train.train_bpe(_training_texts(), vocab_size=100)


def test_balanced_sample_gives_every_domain_the_same_budget():
    texts = {"big": ["x" * 100] * 1000, "small": ["yy"] * 10, "huge_doc": ["z" * 10**5]}
    sample = tokenizer_train.balanced_sample(texts, 3000)
    assert {n: sum(len(d) for d in docs) for n, docs in sample.items()} == {
        "big": 1000,
        "small": 20,
        "huge_doc": 1000,
    }
