"""Built-in corpus: disjoint splits, valid stripped code, correct math answers."""

import ast
import io
import math
import re
import tokenize
from fractions import Fraction

import pytest

from mixlab.data import DOMAINS, corpus, load_documents, mathgen


@pytest.mark.parametrize("domain", DOMAINS)
def test_splits_are_disjoint_deduplicated_and_non_empty(domain):
    train, eval_ = load_documents(domain, "train"), load_documents(domain, "eval")
    assert 0 < len(eval_) < len(train) / 3
    assert not set(train) & set(eval_)
    assert len(set(train)) == len(train) and len(set(eval_)) == len(eval_)
    assert all(doc.strip() for doc in train + eval_)


def test_load_documents_is_deterministic_and_returns_a_copy():
    docs = load_documents("math", "eval")
    docs.clear()
    generated = mathgen.documents(*corpus.MATH_SEEDS["eval"])
    assert load_documents("math", "eval") == list(dict.fromkeys(generated))  # deduplicated


def test_stdlib_splits_follow_modules():
    modules = corpus._stdlib_modules()
    eval_modules = [m for m in modules if corpus._is_eval(m.path)]
    assert 0 < len(eval_modules) < len(modules) / 3
    eval_code, eval_text = set(load_documents("code", "eval")), set(load_documents("text", "eval"))
    for m in modules:
        # Eval modules bring all their docstrings to eval; a train module's copy of an eval
        # docstring is dropped from train.
        assert (m.code in eval_code) == (m in eval_modules)
        if m in eval_modules:
            assert set(m.docstrings) <= eval_text


def test_stripped_code_parses_and_has_no_docstrings_or_comments():
    docs = load_documents("code", "train") + load_documents("code", "eval")
    for doc in docs:
        tree = ast.parse(doc)
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                assert ast.get_docstring(node) is None
    for doc in load_documents("code", "eval"):  # tokenize is slow: the eval split is enough
        kinds = {t.type for t in tokenize.generate_tokens(io.StringIO(doc).readline)}
        assert tokenize.COMMENT not in kinds


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    return True


def test_text_is_prose_not_code():
    docs = load_documents("text", "train") + load_documents("text", "eval")
    assert sum(len(d) >= corpus.MIN_DOCSTRING_CHARS for d in docs) > 0.9 * len(docs)
    words = sum(sum(c.isalpha() or c.isspace() for c in d) for d in docs)
    assert words > 0.85 * sum(len(d) for d in docs)
    assert sum(map(_parses, docs)) < 0.02 * len(docs)  # English sentences are not Python


def _eval_expression(text: str) -> Fraction:
    """Exact value of an expression of integers, + - * / and parentheses, independent of mathgen."""

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        assert isinstance(node, ast.BinOp), ast.dump(node)
        ops = {ast.Add: Fraction.__add__, ast.Sub: Fraction.__sub__}
        ops |= {ast.Mult: Fraction.__mul__, ast.Div: Fraction.__truediv__}
        return ops[type(node.op)](ev(node.left), ev(node.right))

    return ev(ast.parse(text, mode="eval").body)


def _check_answer(question: str, answer: str) -> str:
    """Recomputes the answer from the question text; returns the family it matched."""
    if m := re.fullmatch(r"(?:What is|Calculate|Evaluate) ([\d+\-* ()]+)[?.]", question):
        assert int(answer) == _eval_expression(m[1])
        return "arithmetic"
    if m := re.fullmatch(r"What is (.+)\? Give the answer in lowest terms\.", question):
        value = _eval_expression(m[1])
        assert Fraction(answer) == value and answer == str(value)  # str(Fraction) is lowest terms
        return "fraction"
    if m := re.fullmatch(r"Solve (-?\d+)\*(\w) ([+-]) (\d+) = (-?\d+) for \2\.", question):
        a, var, sign, b, c = int(m[1]), m[2], m[3], int(m[4]), int(m[5])
        name, root = answer.split(" = ")
        assert name == var and a * int(root) + (b if sign == "+" else -b) == c
        return "linear"
    if m := re.fullmatch(r"What is the greatest common divisor of (\d+) and (\d+)\?", question):
        assert int(answer) == math.gcd(int(m[1]), int(m[2]))
        return "gcd"
    if m := re.fullmatch(r"What is the remainder when (\d+) is divided by (\d+)\?", question):
        assert int(answer) == int(m[1]) % int(m[2])
        return "remainder"
    raise AssertionError(f"unrecognised question {question!r}")


def test_math_answers_are_correct():
    families = []
    for doc in load_documents("math", "train") + load_documents("math", "eval"):
        m = re.fullmatch(r"Question: (.+)\nAnswer: (.+)\n", doc)
        assert m, doc
        families.append(_check_answer(m[1], m[2]))
    counts = {f: families.count(f) for f in mathgen.FAMILIES}
    assert min(counts.values()) > 0.15 * len(families), counts  # ~uniform over the 5 families


def test_math_problems_are_pure_functions_of_their_seed():
    assert [mathgen.problem(s) for s in range(50)] == [mathgen.problem(s) for s in range(50)]
    first, count = corpus.MATH_SEEDS["train"]
    eval_first, eval_count = corpus.MATH_SEEDS["eval"]
    assert first + count <= eval_first or eval_first + eval_count <= first


@pytest.mark.parametrize(
    "domain, split, message",
    [
        ("web", "train", "unknown domain 'web' (known: text, code, math)"),
        ("code", "test", "unknown split 'test' (known: train, eval)"),
    ],
)
def test_bad_names(domain, split, message):
    with pytest.raises(ValueError) as e:
        load_documents(domain, split)
    assert message in str(e.value)
