"""Corpus hygiene end to end, optional sources and the on-disk cache, on small constructed files."""

import dataclasses
import json
import os
import platform

import pytest

from mixlab.data.builtin import cache as corpus_cache
from mixlab.data.builtin import corpus
from mixlab.data.builtin import extras as extra_sources
from mixlab.data.builtin import stdlib as stdlib_sources

WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "wizards")


def _prose(seed: int, n: int = 150) -> str:
    return " ".join(WORDS[(seed * 7 + i * i * 13 + i) % len(WORDS)] + str(i % (seed + 3)) for i in range(n))


def _name(split: str, start: int = 0) -> str:
    """A reST file name whose split key falls in `split`."""
    i = start
    while stdlib_sources.is_eval(f"library/doc{i}.rst.txt") != (split == "eval"):
        i += 1
    return f"doc{i}.rst.txt"


@pytest.fixture
def fresh_corpus(monkeypatch, tmp_path):
    """Builds see only this test's files: caches cleared around it, a private disk cache, and no
    stdlib train modules (parsing them takes seconds and is not what these tests are about)."""
    caches = (corpus._build, corpus._raw, corpus._eval_docs, corpus._eval_index, corpus._math_verdicts)
    for c in caches:
        c.cache_clear()
    real = stdlib_sources.modules
    monkeypatch.setattr(stdlib_sources, "modules", lambda split: real(split) if split == "eval" else ())
    monkeypatch.setenv(corpus_cache.CACHE_ENV, str(tmp_path / "cache"))
    yield tmp_path
    for c in caches:
        c.cache_clear()


def _install_docs(monkeypatch, root, docs):
    """Fake python3-doc reST sources under root; `docs` maps file name -> text."""
    for name, text in docs.items():
        path = root / "_sources" / "library" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    extra = dataclasses.replace(
        extra_sources.EXTRAS["python_docs_rst"], patterns=(f"{root}/_sources/**/*.rst.txt",)
    )
    monkeypatch.setitem(extra_sources.EXTRAS, "python_docs_rst", extra)


def test_a_near_copy_of_an_eval_document_is_removed_and_counted(monkeypatch, fresh_corpus):
    held_out, near_copy, stranger = (
        _name("eval"),
        _name("train"),
        _name("train", 1 + int(_name("train")[3:-8])),
    )
    original = _prose(1)
    words = original.split()
    words[40] = words[100] = "EDITED"  # 2 of 150 words: ~89% of the shingles survive
    _install_docs(
        monkeypatch, fresh_corpus, {held_out: original, near_copy: " ".join(words), stranger: _prose(2)}
    )
    default_train = corpus.load_documents("text", "train", extras=())
    train = corpus.documents("text", "train", extras="python_docs_rst")
    eval_ = corpus.documents("text", "eval", extras="python_docs_rst")
    assert [d.key for d in train if d.source == "python_docs_rst"] == [f"library/{stranger}"]
    assert [d.key for d in eval_ if d.source == "python_docs_rst"] == [f"library/{held_out}"]
    assert [d.text for d in train if d.source != "python_docs_rst"] == default_train  # nothing else moves
    entry = corpus._build("text", ("python_docs_rst",)).removed["python_docs_rst"]
    assert entry == {"exact": 0, "near": 1}
    cached = [f for f in os.listdir(next((fresh_corpus / "cache").iterdir())) if "python_docs_rst" in f]
    assert len(cached) == 1  # keyed by the extra's files as well as the builder


def test_optional_sources_are_off_by_default_and_reported(monkeypatch, tmp_path):
    monkeypatch.delenv("MIXLAB_CORPUS_EXTRAS", raising=False)
    assert extra_sources.parse(None) == ()
    monkeypatch.setenv("MIXLAB_CORPUS_EXTRAS", " coq_stdlib, python_docs_rst ")
    assert extra_sources.parse(None) == ("coq_stdlib", "python_docs_rst")
    assert extra_sources.parse("all") == tuple(sorted(extra_sources.EXTRAS))
    monkeypatch.delenv("MIXLAB_CORPUS_EXTRAS")
    _install_docs(monkeypatch, tmp_path, {"a.rst.txt": _prose(3)})
    absent = dataclasses.replace(extra_sources.EXTRAS["coq_stdlib"], patterns=(f"{tmp_path}/none/*.v",))
    monkeypatch.setitem(extra_sources.EXTRAS, "coq_stdlib", absent)
    sources = {name: s for d in corpus.manifest()["domains"].values() for name, s in d["sources"].items()}
    assert sources["python_docs_rst"]["status"] == "present, not enabled"
    assert sources["coq_stdlib"]["status"] == "absent"
    assert sources["coq_stdlib"]["splits"]["train"] == {"documents": 0, "bytes": 0, "tokens": 0}


def test_setmm_is_cut_into_capped_documents(monkeypatch, tmp_path):
    paragraphs = [f"$( Theorem {i}: {_prose(i, 60)} $)\n th{i} $p |- ph $= ( wph ) AB $." for i in range(200)]
    (tmp_path / "set.mm").write_text("\n\n".join(paragraphs))
    extra = dataclasses.replace(extra_sources.EXTRAS["metamath_setmm"], patterns=(f"{tmp_path}/set.mm",))
    monkeypatch.setattr(extra_sources, "MAX_SOURCE_BYTES", 30_000)
    docs = extra_sources.documents(extra)
    assert docs and all(k.startswith("set.mm#") for k, _ in docs)
    assert sum(len(t.encode()) for _, t in docs) <= 30_000
    assert all(len(t) >= extra_sources.SETMM_CHUNK_BYTES for _, t in docs)


def test_an_asked_for_but_absent_source_changes_nothing(monkeypatch, fresh_corpus):
    absent = dataclasses.replace(
        extra_sources.EXTRAS["python_docs_rst"], patterns=(f"{fresh_corpus}/no/*.txt",)
    )
    monkeypatch.setitem(extra_sources.EXTRAS, "python_docs_rst", absent)
    for split in corpus.SPLITS:
        with_extra = corpus.load_documents("text", split, extras="python_docs_rst")
        assert with_extra == corpus.load_documents("text", split, extras=()) != []


def test_disk_cache_round_trip(monkeypatch, tmp_path):
    monkeypatch.setenv(corpus_cache.CACHE_ENV, str(tmp_path))
    builds = []

    def build_now(domain, extras):  # a tiny corpus: this tests the cache, not the builders
        builds.append(domain)
        docs = (
            corpus.Document("stdlib_code", "a.py", "x = 1\n"),
            corpus.Document("stdlib_code", "é.py", "é = 2\n"),
        )
        return corpus._Built({"train": docs, "eval": docs[:1]}, {"stdlib_code": {"exact": 0, "near": 3}})

    monkeypatch.setattr(corpus, "_build_now", build_now)
    for i in range(corpus_cache.KEEP + 1):  # older builders' directories: all but the newest go
        (tmp_path / f"corpus-old{i}").mkdir()
        os.utime(tmp_path / f"corpus-old{i}", (1000 + i, 1000 + i))
    built = corpus._build.__wrapped__("code", ())  # bypasses the in-process cache
    (directory,) = set(tmp_path.iterdir()) - {
        tmp_path / f"corpus-old{i}" for i in range(corpus_cache.KEEP + 1)
    }
    kept = sorted(d.name for d in tmp_path.iterdir() if d != directory)
    assert kept == [f"corpus-old{corpus_cache.KEEP - i}" for i in range(corpus_cache.KEEP - 1)][::-1]
    assert (
        directory.name.startswith(f"corpus-{platform.python_version()}-")
        and (directory / "code.json").exists()
    )
    assert corpus._build.__wrapped__("code", ()) == built and builds == ["code"]  # read back, not rebuilt
    (directory / "code.json").write_text("{not json")  # a torn file is rebuilt, not trusted
    assert corpus._build.__wrapped__("code", ()) == built and builds == ["code", "code"]
    assert json.loads((directory / "code.json").read_text())["removed"] == built.removed
    monkeypatch.setenv(corpus_cache.CACHE_ENV, "off")
    assert corpus_cache.directory(corpus.code_version(), "/x") is None
    assert corpus._build.__wrapped__("code", ()) == built and builds == ["code"] * 3
