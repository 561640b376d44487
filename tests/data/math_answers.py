"""Independent answer checks for mathgen questions: parse the question text and recompute.

Nothing here imports mathgen: each family's answer is recomputed from the words and numbers of
its question alone (expressions by an AST evaluator over Fractions, gcd by math.gcd, powers by
pow, ages by brute-force search), so a bug in a generator cannot also hide in its check.
"""

import ast
import math
import re
from fractions import Fraction

_OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}


def evaluate(text: str, **names: Fraction | int) -> Fraction:
    """Exact value of an expression of integers, names, + - * / ** and brackets."""

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        if isinstance(node, ast.Name):
            return Fraction(names[node.id])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        assert isinstance(node, ast.BinOp), ast.dump(node)
        return _OPS[type(node.op)](ev(node.left), ev(node.right))

    return ev(ast.parse(text, mode="eval").body)


def _linear(lhs: str, rhs: str, var: str, answer: str) -> None:
    name, root = answer.split(" = ")
    assert name == var
    root = Fraction(root)
    assert root.denominator == 1  # roots are drawn as integers
    assert evaluate(lhs, **{var: root}) == evaluate(rhs, **{var: root})
    # Unique: the two sides are different lines, so they differ one step away.
    assert evaluate(lhs, **{var: root + 1}) != evaluate(rhs, **{var: root + 1})


def _polynomial(product: str, answer: str) -> None:
    var = next(iter(set(re.findall(r"[a-z]", product))))
    for x in range(-4, 5):  # degree <= 4: nine points fix the polynomial
        assert evaluate(product, **{var: x}) == evaluate(answer, **{var: x})
    degrees = [int(d) if d else 1 for d in re.findall(rf"{var}(?:\*\*(\d+))?", answer)]
    assert degrees == sorted(set(degrees), reverse=True), answer  # collected, highest degree first


def _ages(m: re.Match, answer: str) -> None:
    times, older, years, total = int(m[2]), int(m[5] or 0), int(m[6]), int(m[7])
    people = 3 if m[4] else 2
    solutions = [
        b
        for b in range(0, 10_000)
        if times * b + b + (b + older if people == 3 else 0) + people * years == total
    ]
    assert solutions == [int(answer)], (m[0], solutions)


_PATTERNS = [
    ("arithmetic", r"(?:What is|Calculate|Evaluate) ([\d+\-* ()]+)[?.]"),
    ("fraction", r"What is (.+)\? Give the answer in lowest terms\."),
    ("linear", r"Solve (.+) = (.+) for (\w)\."),
    ("linear", r"Find (\w) if (.+) = (.+)\."),
    ("linear_system", r"Solve the system (.+) = (-?\d+) and (.+) = (-?\d+) for (\w) and (\w)\."),
    ("gcd", r"(?:What is the greatest common divisor|Find the highest common factor) of (\d+) and (\d+)[?.]"),
    ("modular", r"What is the remainder when (.+) is divided by (\d+)\?"),
    ("polynomial", r"(?:Expand and simplify|Expand|Multiply out) (.+)\."),
    ("word", r"(.+) per \w+ for .+\. How many (\w+) does it \w+ in total\?"),
    (
        "word",
        r"(\w+) is (\d+) times as old as (\w+)\.(?: (\w+) is (\d+) years older than \3\.)?"
        r" In (\d+) years, the sum of (?:their|all three) ages will be (\d+)\. How old is \3 now\?",
    ),
    ("word", r"(\w+) buys (.+), and pays with (\d+) dollars\. How much change does \1 get\?"),
]


def check(question: str, answer: str) -> str:
    """Asserts that `answer` answers `question`; returns the family the question belongs to."""
    for family, pattern in _PATTERNS:  # noqa: B007 (the matching family is used after the loop)
        if m := re.fullmatch(pattern, question):
            break
    else:
        raise AssertionError(f"unrecognised question {question!r}")
    if family == "arithmetic":
        assert answer == str(evaluate(m[1])) and "/" not in answer
    elif family == "fraction":
        assert answer == str(evaluate(m[1]))  # str(Fraction) is in lowest terms
    elif family == "linear":
        lhs, rhs, var = (m[1], m[2], m[3]) if question.startswith("Solve") else (m[2], m[3], m[1])
        _linear(lhs, rhs, var, answer)
    elif family == "linear_system":
        x, y = m[5], m[6]
        values = dict(part.split(" = ") for part in answer.split(", "))
        assert list(values) == [x, y]
        point = {x: Fraction(values[x]), y: Fraction(values[y])}
        assert evaluate(m[1], **point) == int(m[2]) and evaluate(m[3], **point) == int(m[4])
        a1, b1 = evaluate(m[1], **{x: 1, y: 0}), evaluate(m[1], **{x: 0, y: 1})
        a2, b2 = evaluate(m[3], **{x: 1, y: 0}), evaluate(m[3], **{x: 0, y: 1})
        assert a1 * b2 != a2 * b1  # the solution is unique
    elif family == "gcd":
        assert int(answer) == math.gcd(int(m[1]), int(m[2]))
    elif family == "modular":
        expression, modulus = m[1], int(m[2])
        if "**" in expression:
            base, exponent = map(int, expression.split("**"))
            assert int(answer) == pow(base, exponent, modulus)
        else:
            assert int(answer) == evaluate(expression) % modulus
    elif family == "polynomial":
        _polynomial(m[1], answer)
    elif m.re.pattern.startswith("(.+) per"):
        legs = re.findall(r"(\d+) \w+ per \w+ for (\d+) \w+s", question)
        assert len(legs) >= 2 and int(answer) == sum(int(r) * int(t) for r, t in legs)
    elif "times as old" in question:
        _ages(m, answer)
    else:
        basket = re.findall(r"(\d+) \w+ at (\d+) dollars each", m[2])
        assert len(basket) >= 2 and int(answer) == int(m[3]) - sum(int(q) * int(p) for q, p in basket) > 0
    return family
