"""Numeric problem families of `mathgen`: arithmetic, fraction, gcd, modular; shared helpers.

A family is `f(rng, difficulty) -> Solved`: the question, the exact final answer, the worked steps
and a program, all built from the same drawn numbers. Every family checks its own answer a second
way (a direct evaluation beside the step-by-step one, or the library function) and raises
`MathgenError` on a mismatch. Difficulty tables give per level 1..5 the number of operations and the
size of the numbers; levels 4-5 are larger than anything train sees (`mathgen.SPLIT_DIFFICULTIES`).
"""

from __future__ import annotations

import math
import random
from fractions import Fraction
from typing import NamedTuple


class Solved(NamedTuple):
    """One problem in all its renderings: `program` prints exactly `answer`."""

    question: str
    answer: str
    steps: tuple[str, ...]
    program: str


class MathgenError(RuntimeError):
    """A generated answer, step or program failed its check: a bug in mathgen, never bad luck."""


def require(ok: bool, what: str) -> None:
    """Like assert, but kept under `python -O`: a wrong answer must never reach the corpus."""
    if not ok:
        raise MathgenError(what)


def signed(rng: random.Random, low: int, high: int) -> int:
    """Non-zero integer with magnitude in [low, high] and a random sign."""
    return rng.randint(low, high) * rng.choice((1, -1))


def monomial(c: int, power: str) -> str:
    """'3*x', 'x', '-x' or '5' (power ''): Python syntax, so questions can be run as code."""
    if not power:
        return str(c)
    return power if c == 1 else f"-{power}" if c == -1 else f"{c}*{power}"


def join_terms(terms: list[str]) -> str:
    """'3*x - 4 + y' from ['3*x', '-4', 'y']: a leading minus becomes a binary minus."""
    text = terms[0]
    for term in terms[1:]:
        text += f" - {term[1:]}" if term.startswith("-") else f" + {term}"
    return text


def program(*lines: str) -> str:
    """Program source from lines; the exec check in `mathgen` runs exactly this text."""
    return "\n".join(lines) + "\n"


# --- arithmetic: a random expression tree, reduced one operation at a time --------------------

_PRECEDENCE = {"+": 1, "-": 1, "*": 2}
_ARITHMETIC = {1: (3, 10), 2: (4, 20), 3: (5, 30), 4: (6, 100), 5: (7, 200)}  # operands, largest


def _leaf_text(value: int) -> str:
    return str(value) if value >= 0 else f"({value})"  # a reduced negative stays one operand


def _text(node: tuple) -> str:
    """Brackets show the tree: a looser left child, or any operation on the right (so the text read
    left to right reduces in the order the steps do)."""
    if node[0] == "n":
        return _leaf_text(node[1])
    _, op, left, right = node
    lt, rt = _text(left), _text(right)
    if left[0] == "o" and _PRECEDENCE[left[1]] < _PRECEDENCE[op]:
        lt = f"({lt})"
    if right[0] == "o" and _PRECEDENCE[right[1]] <= _PRECEDENCE[op]:
        rt = f"({rt})"
    return f"{lt} {op} {rt}"


def _value(node: tuple) -> int:
    if node[0] == "n":
        return node[1]
    _, op, left, right = node
    a, b = _value(left), _value(right)
    return a + b if op == "+" else a - b if op == "-" else a * b


def _reduce(node: tuple, name: str) -> tuple[tuple, tuple | None]:
    """Replaces the leftmost operation on two numbers by its value; returns (tree, that operation)."""
    if node[0] == "n":
        return node, None
    _, op, left, right = node
    if left[0] == "n" and right[0] == "n":
        return ("n", _value(node), name), node
    new_left, done = _reduce(left, name)
    if done:
        return ("o", op, new_left, right), done
    new_right, done = _reduce(right, name)
    return ("o", op, left, new_right), done


def arithmetic(rng: random.Random, difficulty: int) -> Solved:
    count, largest = _ARITHMETIC[difficulty]
    items = [("n", v, str(v)) for v in (rng.randint(1, largest) for _ in range(count))]
    while len(items) > 1:  # joining random neighbours reaches every bracketing
        i = rng.randint(0, len(items) - 2)
        items[i : i + 2] = [("o", rng.choice("+-*"), items[i], items[i + 1])]
    tree = expression = items[0]
    steps, lines = [], []
    while tree[0] == "o":
        name = f"step{len(steps) + 1}"
        tree, done = _reduce(tree, name)
        _, op, left, right = done
        step = f"{_leaf_text(left[1])} {op} {_leaf_text(right[1])} = {_value(done)}"
        steps.append(step + (f", so the expression becomes {_text(tree)}." if tree[0] == "o" else "."))
        lines.append(f"{name} = {left[2]} {op} {right[2]}")  # leaf names: literals or earlier steps
    answer = _value(tree)
    require(answer == _value(expression), "arithmetic: step-by-step value differs from the direct one")
    template = rng.choice(("What is {}?", "Calculate {}.", "Evaluate {}."))
    code = program(*lines, f"print({name})")
    return Solved(template.format(_text(expression)), str(answer), tuple(steps), code)


# --- fraction: a left-to-right chain of + - * / on fractions, in lowest terms -------------------

_FRACTION = {1: (2, 10), 2: (3, 10), 3: (3, 15), 4: (4, 20), 5: (5, 30)}  # operands, largest denominator


def fraction_text(f: Fraction) -> str:
    """'19/18', '-3/4' or '2': what `print(Fraction)` shows."""
    return str(f)


def _fraction_step(x: Fraction, op: str, a: int, b: int) -> tuple[str, Fraction]:
    xs, ys = fraction_text(x), f"{a}/{b}"
    if op in "+-":
        common = math.lcm(x.denominator, b)
        n1, n2 = x.numerator * (common // x.denominator), a * (common // b)
        num, den = (n1 + n2 if op == "+" else n1 - n2), common
        text = (
            f"{xs} {op} {ys}: over the common denominator {common} this is {n1}/{common} {op} {n2}/{common}"
        )
        text += f" = {num}/{den}"
    elif op == "*":
        num, den = x.numerator * a, x.denominator * b
        text = f"({xs}) * ({ys}) = ({x.numerator}*{a})/({x.denominator}*{b}) = {num}/{den}"
    else:
        num, den = x.numerator * b, x.denominator * a
        text = f"({xs}) / ({ys}) = ({xs}) * ({b}/{a}) = {num}/{den}"
    result, y = Fraction(num, den), Fraction(a, b)
    direct = x + y if op == "+" else x - y if op == "-" else x * y if op == "*" else x / y
    require(result == direct, f"fraction: step {text!r} is wrong")
    if (g := math.gcd(num, den)) > 1:
        text += f", which reduces to {fraction_text(result)} (divide by {g})"
    return text + ".", result


def fraction(rng: random.Random, difficulty: int) -> Solved:
    count, largest = _FRACTION[difficulty]
    b = rng.randint(2, largest)
    a = rng.randint(1, 2 * b)
    expression, value = f"{a}/{b}", Fraction(a, b)
    steps, lines = [], ["from fractions import Fraction", "", f"value = Fraction({a}, {b})"]
    if (g := math.gcd(a, b)) > 1:  # later steps start from the reduced value: say so
        steps.append(f"{a}/{b} reduces to {fraction_text(value)} (divide by {g}).")
    for i in range(1, count):
        op, b = rng.choice("+-*/"), rng.randint(2, largest)
        a = rng.randint(1, 2 * b)  # shown as drawn (6/8, not 3/4): reducing is part of the problem
        left = f"({expression})" if i > 1 or op in "*/" else expression
        expression = f"{left} {op} " + (f"{a}/{b}" if op in "+-" else f"({a}/{b})")
        step, value = _fraction_step(value, op, a, b)
        steps.append(step)
        lines.append(f"value = value {op} Fraction({a}, {b})")
    question = f"What is {expression}? Give the answer in lowest terms."
    return Solved(question, fraction_text(value), tuple(steps), program(*lines, "print(value)"))


# --- gcd: Euclid's algorithm -------------------------------------------------------------------

_GCD = {1: (20, 30), 2: (50, 60), 3: (100, 200), 4: (500, 1000), 5: (2000, 10000)}  # factor, multiplier


def gcd(rng: random.Random, difficulty: int) -> Solved:
    factor, multiplier = _GCD[difficulty]
    g = rng.randint(2, factor)
    a, b = g * rng.randint(2, multiplier), g * rng.randint(2, multiplier)
    while a == b:
        b = g * rng.randint(2, multiplier)
    template = rng.choice(
        ("What is the greatest common divisor of {} and {}?", "Find the highest common factor of {} and {}.")
    )
    x, y = max(a, b), min(a, b)
    steps = []
    while y:
        q, r = divmod(x, y)
        steps.append(f"{x} = {q} * {y} + {r}.")
        x, y = y, r
    steps.append(f"The remainder is now 0, so the greatest common divisor is the last divisor, {x}.")
    require(x == math.gcd(a, b), "gcd: Euclid's steps disagree with math.gcd")
    code = program(f"a, b = {a}, {b}", "while b:", "    a, b = b, a % b", "print(a)")
    return Solved(template.format(a, b), str(x), tuple(steps), code)


# --- modular: remainders, then powers by square-and-multiply ------------------------------------

_POWER = {3: (30, (5, 30), 30), 4: (100, (30, 500), 200), 5: (1000, (500, 100_000), 2000)}
Worked = tuple[str, int, int, list[str], list[str]]  # expression, modulus, answer, steps, program lines


def _remainder(rng: random.Random, difficulty: int) -> Worked:
    if difficulty == 1:
        a, m = rng.randint(100, 9999), rng.randint(3, 50)
        q, r = divmod(a, m)
        steps = [
            f"{m} * {q} = {m * q}, and {a} - {m * q} = {r}.",
            f"Since 0 <= {r} < {m}, the remainder is {r}.",
        ]
        return str(a), m, r, steps, [f"a, m = {a}, {m}", "print(a % m)"]
    a, b, c, m = rng.randint(10, 999), rng.randint(10, 999), rng.randint(1, 999), rng.randint(3, 60)
    ra, rb, rc = a % m, b % m, c % m
    product = ra * rb % m
    answer = (product + rc) % m
    steps = [
        f"Reduce each number modulo {m}: {a} -> {ra}, {b} -> {rb}, {c} -> {rc}.",
        f"{ra} * {rb} = {ra * rb}, which is {product} modulo {m}.",
        f"{product} + {rc} = {product + rc}, which is {answer} modulo {m}.",
    ]
    require(answer == (a * b + c) % m, "modular: reduced remainder disagrees with the direct one")
    lines = [
        f"a, b, c, m = {a}, {b}, {c}, {m}",
        "product = (a % m) * (b % m) % m",
        "print((product + c % m) % m)",
    ]
    return f"{a} * {b} + {c}", m, answer, steps, lines


def _power(rng: random.Random, difficulty: int) -> Worked:
    base_max, (k_min, k_max), m_max = _POWER[difficulty]
    a, k, m = rng.randint(2, base_max), rng.randint(k_min, k_max), rng.randint(3, m_max)
    bits = [i for i in range(k.bit_length()) if k >> i & 1]
    steps = [
        f"{k} = {' + '.join(str(1 << i) for i in reversed(bits))}, so multiply the matching powers of {a}."
    ]
    powers = [a % m]
    steps.append(f"{a}**1 is {powers[0]} modulo {m}.")
    for i in range(1, k.bit_length()):  # repeated squaring: a**(2**i) from a**(2**(i-1))
        square = powers[-1] ** 2
        steps.append(f"{a}**{1 << i} is {powers[-1]}**2 = {square}, which is {square % m} modulo {m}.")
        powers.append(square % m)
    result = 1
    for i in bits:
        product = result * powers[i]
        steps.append(
            f"Multiply in {a}**{1 << i}: {result} * {powers[i]} = {product}, which is {product % m}."
        )
        result = product % m
    require(result == pow(a, k, m), "modular: square-and-multiply disagrees with pow")
    lines = [
        f"base, exponent, modulus = {a}, {k}, {m}",
        "result, power = 1, base % modulus",
        "while exponent:",
        "    if exponent & 1:",
        "        result = result * power % modulus",
        "    power = power * power % modulus",
        "    exponent >>= 1",
        "print(result)",
    ]
    return f"{a}**{k}", m, result, steps, lines


def modular(rng: random.Random, difficulty: int) -> Solved:
    expression, m, answer, steps, lines = (_remainder if difficulty <= 2 else _power)(rng, difficulty)
    question = f"What is the remainder when {expression} is divided by {m}?"
    return Solved(question, str(answer), tuple(steps), program(*lines))
