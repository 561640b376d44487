"""dedup: exact and near duplicates of eval documents are found; templates and strangers are not."""

import random

import numpy as np

from mixlab.data import dedup


def _prose(seed: int, words: int = 120) -> str:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(5000)]
    return " ".join(rng.choice(vocab) for _ in range(words))


def _edit(text: str, every: int) -> str:
    """Replaces one word in `every`: a near copy."""
    words = text.split()
    return " ".join("CHANGED" if i % every == 0 else w for i, w in enumerate(words))


def test_shingles_are_stable_and_per_document():
    docs = ["a b c d e f g h i", "a b c d e f g h i", "short doc", ""]
    h, owner = dedup.shingle_table(docs)
    assert h.dtype == np.uint64 and list(np.bincount(owner, minlength=4)) == [2, 2, 1, 0]
    assert set(h[owner == 0]) == set(h[owner == 1])  # same words, same hashes
    again, _ = dedup.shingle_table(["a b c d e f g h i"])
    assert set(again) == set(h[owner == 0])
    # Whitespace does not matter; word order does.
    assert set(dedup.shingle_table(["a  b c\nd e f g h\ti"])[0]) == set(again)
    assert not set(dedup.shingle_table(["b a c d e f g h i"])[0]) & set(again[:1])


def test_exact_near_and_clean_verdicts():
    evals = [_prose(i) for i in range(5)]
    index = dedup.EvalIndex(evals)
    train = [
        evals[0].replace(" ", "\n", 10),  # the same words, other whitespace
        _edit(evals[1], every=60),  # 2 of 120 words changed: ~87% of shingles kept
        _prose(100) + " " + evals[2] + " " + _prose(101),  # an eval document inside a longer one
        evals[3].split(" ", 30)[-1],  # a fragment: the last ~90 words
        _edit(evals[4], every=10),  # 1 word in 10 changed: most shingles broken
        _prose(102),  # unrelated
    ]
    assert index.contaminated(train) == ["exact", "near", "near", "near", None, None]


def test_shared_templates_alone_are_not_near_duplicates():
    # 30 eval documents share a 40-word template and differ in a few numbers: the template's
    # shingles are in more than MAX_EVAL_DOCS_PER_SHINGLE documents and do not count.
    template = _prose(7, words=40)
    evals = [f"{template} answer {i} {i * 7} {i * 13}" for i in range(30)]
    index = dedup.EvalIndex(evals)
    assert len(index.common) > 0
    assert index.contaminated([f"{template} answer 1000 7000 13000", evals[3]]) == [None, "exact"]


def test_short_documents_match_only_themselves():
    index = dedup.EvalIndex(["What is 2 + 2?", _prose(1)])
    assert index.contaminated(["What is 2 + 2?", "What is 2 + 3?", "2 + 2?"]) == ["exact", None, None]


def test_empty_inputs():
    assert dedup.EvalIndex([]).contaminated(["anything at all here"]) == [None]
    assert dedup.EvalIndex(["x y z"]).contaminated([]) == []
