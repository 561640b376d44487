"""ByteTokenizer: exact byte round trips and the id layout others rely on."""

import numpy as np
import pytest

from mixlab.data import ByteTokenizer

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
