"""Built-in corpus: six domains, disjoint clean splits, faithful views of one module, a true manifest."""

import ast
import collections
import io
import json
import re
import tokenize

import pytest

from mixlab.data import DOMAINS, load_documents
from mixlab.data.builtin import corpus, mathgen
from mixlab.data.builtin import stdlib as stdlib_sources
from tests.data import math_answers


def _keys(domain, split):
    return [d.key for d in corpus.documents(domain, split)]


def test_the_six_domains():
    assert DOMAINS == ("text", "code", "code_text", "math", "math_traces", "code_math")
    assert corpus.SPLITS == ("train", "eval")


@pytest.mark.parametrize("domain", DOMAINS)
def test_splits_are_disjoint_deduplicated_and_non_empty(domain):
    train, eval_ = load_documents(domain, "train"), load_documents(domain, "eval")
    assert 0 < len(eval_) < len(train) / 3
    assert not set(train) & set(eval_)
    assert len(set(train)) == len(train) and len(set(eval_)) == len(eval_)
    assert all(doc.strip() for doc in train + eval_)
    if domain not in corpus.MATH_DOMAINS:  # a module (or topic) is in one split only
        assert not set(_keys(domain, "train")) & set(_keys(domain, "eval"))


def test_load_documents_is_deterministic_and_returns_a_copy():
    docs = load_documents("code", "eval")
    docs.clear()
    assert load_documents("code", "eval") == [d.text for d in corpus.documents("code", "eval")] != []


def test_code_and_code_text_hold_out_the_same_modules():
    removed = corpus.manifest()["domains"]["code"]["contamination"]  # from train only, never eval
    for split in corpus.SPLITS:
        code, code_text = _keys("code", split), _keys("code_text", split)
        assert all(stdlib_sources.is_eval(k) == (split == "eval") for k in code + code_text)
        if split == "eval" or removed == {"exact": 0, "near": 0}:
            assert code == code_text
    assert _keys("code", "eval") == [m.path for m in stdlib_sources.modules("eval")]
    # Every docstring of a held-out module is held out in `text` too.
    eval_text = set(load_documents("text", "eval"))
    for m in stdlib_sources.modules("eval"):
        assert set(m.docstrings) <= eval_text


def test_code_is_stripped_and_parses():
    for i, doc in enumerate(load_documents("code", "eval") + load_documents("code", "train")):
        tree = ast.parse(doc)  # every document parses
        if i % 3 == 0:  # walking every node is slow: a third of them is enough to catch a docstring
            for node in ast.walk(tree):
                if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                    assert ast.get_docstring(node) is None
    for doc in load_documents("code", "eval"):  # tokenize is slow: the eval split is enough
        kinds = {t.type for t in tokenize.generate_tokens(io.StringIO(doc).readline)}
        assert tokenize.COMMENT not in kinds


def test_code_text_is_the_documented_source_of_its_code_twin():
    code = {d.key: d.text for split in corpus.SPLITS for d in corpus.documents("code", split)}
    for split in corpus.SPLITS:
        for doc in corpus.documents("code_text", split)[:: 3 if split == "train" else 1]:  # parsing is slow
            tree = ast.parse(doc.text)
            docstrings = [
                ast.get_docstring(n) for n in ast.walk(tree) if isinstance(n, ast.Module | ast.ClassDef)
            ]
            assert any(docstrings) or "#" in doc.text  # prose that `code` lacks
            assert doc.text != code[doc.key] and len(doc.text) > len(code[doc.key])
            if split == "eval":  # same module: stripping the source gives its code twin exactly
                kinds = {t.type for t in tokenize.generate_tokens(io.StringIO(doc.text).readline)}
                assert tokenize.COMMENT in kinds or any(docstrings)
                stripped = ast.parse(code[doc.key])
                assert ast.dump(stripped) == ast.dump(_without_docstrings(tree))


def _without_docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(getattr(first.value, "value", None), str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def _parses(text):
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    return True


def test_text_is_prose_not_code():
    docs = load_documents("text", "train") + load_documents("text", "eval")
    assert sum(len(d) >= stdlib_sources.MIN_DOCSTRING_CHARS for d in docs) > 0.9 * len(docs)
    words = sum(sum(c.isalpha() or c.isspace() for c in d) for d in docs)
    assert words > 0.85 * sum(len(d) for d in docs)
    assert sum(map(_parses, docs)) < 0.02 * len(docs)  # English sentences are not Python


def test_math_domains_hold_the_same_problems_in_the_same_order():
    for split in corpus.SPLITS:
        keys = [_keys(d, split) for d in corpus.MATH_DOMAINS]
        assert keys[0] == keys[1] == keys[2]
        for answer, trace, program in zip(
            *(load_documents(d, split) for d in corpus.MATH_DOMAINS), strict=True
        ):
            question = re.match(r"Question: (.+)\n", answer)[1]
            assert trace.startswith(f"Question: {question}\nSolution:\n1. ")
            assert program.startswith(f"# Question: {question}\n")
            assert trace.endswith(answer.splitlines()[-1] + "\n")  # same final answer line


def test_math_answers_are_correct_and_hardest_levels_are_eval_only():
    for split in corpus.SPLITS:
        families, levels = collections.Counter(), set()
        first, count = mathgen.SPLIT_SEEDS[split]
        docs = corpus.documents("math", split)
        for doc in docs[:: 5 if split == "train" else 1]:  # every eval problem, a fifth of train
            family, seed, difficulty = doc.key.split("/")
            m = re.fullmatch(r"Question: (.+)\nAnswer: (.+)\n", doc.text)
            assert math_answers.check(m[1], m[2]) == family  # recomputed from the question text
            assert first <= int(seed) < first + count
            families[family] += 1
            levels.add(int(difficulty))
        assert set(families) == set(mathgen.FAMILIES)
        assert levels == ({1, 2, 3} if split == "train" else {1, 2, 3, 4, 5})


def test_manifest_matches_the_documents():
    manifest = corpus.manifest()
    assert json.loads(json.dumps(manifest)) == manifest
    assert list(manifest["domains"]) == list(DOMAINS)
    for domain, entry in manifest["domains"].items():
        for split in corpus.SPLITS:
            docs = load_documents(domain, split)
            size = sum(len(d.encode("utf-8")) for d in docs)
            assert entry["splits"][split] == {
                "documents": len(docs),
                "bytes": size,
                "tokens": size + len(docs),
            }
            per_source = [s["splits"][split] for s in entry["sources"].values()]
            assert sum(s["documents"] for s in per_source) == len(docs)
        for key in ("exact", "near"):
            assert entry["contamination"][key] == sum(
                s["contamination"][key] for s in entry["sources"].values()
            )
        for name, source in entry["sources"].items():
            assert source["provenance"] and source["path"] and source["licence"]
            if source["status"] == "used":
                assert source["licence"] in ("PSF-2.0", "mixlab-generated, Apache-2.0")
            else:  # an optional source that is not installed, or not asked for, adds nothing
                assert source["status"] in ("absent", "present, not enabled"), name
                assert source["splits"]["train"]["documents"] == 0
    assert manifest["domains"]["math"]["contamination"]["exact"] == mathgen.contamination()["exact"]


def test_write_manifest(tmp_path):
    path = tmp_path / "manifest.json"
    written = corpus.write_manifest(str(path))
    assert json.loads(path.read_text()) == written == corpus.manifest()


@pytest.mark.parametrize(
    "domain, split, kwargs, message",
    [
        ("web", "train", {}, "unknown domain 'web' (known: text, code, code_text, math, math_traces, code_"),
        ("code", "test", {}, "unknown split 'test' (known: train, eval)"),
        ("text", "train", {"extras": "poetry"}, "unknown corpus extra 'poetry' (known: all, python_docs_rst"),
    ],
)
def test_bad_names(domain, split, kwargs, message):
    with pytest.raises(ValueError) as e:
        load_documents(domain, split, **kwargs)
    assert message in str(e.value)
