"""Generated arithmetic problems with computed answers: the built-in `math` domain.

Each problem is a pure function of its integer seed, so a split is a seed range and problem 17 is
the same whatever else is generated. Answers are computed with Python ints and `fractions.Fraction`,
never floats, so they are exact. Five families:

  arithmetic  multi-step integer expressions with + - * and brackets   "What is (7 - 3) * 12 + 5?"
  fraction    one operation on two fractions, lowest terms              "What is 3/4 + 5/6? ..."
  linear      a*x + b = c with an integer root                          "Solve 3*k - 7 = 5 for k."
  gcd         greatest common divisor of two multiples of a common factor
  remainder   integer remainder of a division
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np

FAMILIES = ("arithmetic", "fraction", "linear", "gcd", "remainder")

_PRECEDENCE = {"+": 1, "-": 1, "*": 2}


def _int(rng: np.random.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high], both ends included."""
    return int(rng.integers(low, high + 1))


def _arithmetic(rng: np.random.Generator) -> tuple[str, str]:
    # Combine random adjacent operands until one expression is left: every bracketing is reachable.
    # Each item is (text, value, operator at its top level or "" for a number).
    items = [(str(v), v, "") for v in (_int(rng, 1, 30) for _ in range(_int(rng, 3, 5)))]
    while len(items) > 1:
        i = _int(rng, 0, len(items) - 2)
        op = "+-*"[_int(rng, 0, 2)]
        (lt, lv, lop), (rt, rv, rop) = items[i], items[i + 1]
        # Minimal parentheses: a lower-precedence child, or a +/- child on the right of "-".
        if lop and _PRECEDENCE[lop] < _PRECEDENCE[op]:
            lt = f"({lt})"
        if rop and (_PRECEDENCE[rop] < _PRECEDENCE[op] or (op == "-" and _PRECEDENCE[rop] == 1)):
            rt = f"({rt})"
        value = lv + rv if op == "+" else lv - rv if op == "-" else lv * rv
        items[i : i + 2] = [(f"{lt} {op} {rt}", value, op)]
    text, value, _ = items[0]
    template = ("What is {}?", "Calculate {}.", "Evaluate {}.")[_int(rng, 0, 2)]
    return template.format(text), str(value)


def _fraction_text(f: Fraction) -> str:
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def _fraction(rng: np.random.Generator) -> tuple[str, str]:
    b, d = _int(rng, 2, 12), _int(rng, 2, 12)
    a, c = _int(rng, 1, 2 * b), _int(rng, 1, 2 * d)
    x, y = Fraction(a, b), Fraction(c, d)
    op = "+-*/"[_int(rng, 0, 3)]
    # Show the fractions as drawn (6/8, not 3/4): reducing them is part of the problem.
    xs, ys = f"{a}/{b}", f"{c}/{d}"
    if op in "*/":  # 3/4 / 5/6 would read as ((3/4)/5)/6
        xs, ys = f"({xs})", f"({ys})"
    value = x + y if op == "+" else x - y if op == "-" else x * y if op == "*" else x / y
    return f"What is {xs} {op} {ys}? Give the answer in lowest terms.", _fraction_text(value)


def _linear(rng: np.random.Generator) -> tuple[str, str]:
    var = "xyzkmn"[_int(rng, 0, 5)]
    a = _int(rng, 2, 12) * (1 if _int(rng, 0, 1) else -1)
    root, b = _int(rng, -20, 20), _int(rng, 1, 50) * (1 if _int(rng, 0, 1) else -1)
    c = a * root + b
    lhs = f"{a}*{var} {'+' if b > 0 else '-'} {abs(b)}"
    return f"Solve {lhs} = {c} for {var}.", f"{var} = {root}"


def _gcd(rng: np.random.Generator) -> tuple[str, str]:
    g = _int(rng, 2, 25)
    a, b = g * _int(rng, 1, 40), g * _int(rng, 1, 40)
    return f"What is the greatest common divisor of {a} and {b}?", str(math.gcd(a, b))


def _remainder(rng: np.random.Generator) -> tuple[str, str]:
    a, d = _int(rng, 100, 9999), _int(rng, 3, 50)
    return f"What is the remainder when {a} is divided by {d}?", str(a % d)


_GENERATORS: dict[str, Callable[[np.random.Generator], tuple[str, str]]] = {
    "arithmetic": _arithmetic,
    "fraction": _fraction,
    "linear": _linear,
    "gcd": _gcd,
    "remainder": _remainder,
}


def problem(seed: int) -> tuple[str, str, str]:
    """Returns (family, question, answer) of problem `seed`."""
    rng = np.random.default_rng(seed)
    family = FAMILIES[_int(rng, 0, len(FAMILIES) - 1)]
    question, answer = _GENERATORS[family](rng)
    return family, question, answer


def render(question: str, answer: str) -> str:
    """The document text of one problem."""
    return f"Question: {question}\nAnswer: {answer}\n"


def documents(first_seed: int, count: int) -> list[str]:
    """Rendered problems for seeds first_seed .. first_seed + count - 1."""
    return [render(*problem(s)[1:]) for s in range(first_seed, first_seed + count)]
