"""Algebra families of `mathgen`: linear equations, 2x2 linear systems, polynomial expansion.

Questions are written in Python syntax (`3*(x + 2) = 2*x - 4`, `(2*x + 1)*(x - 3)`), so a program
can state the question's own expressions and a test can evaluate them independently.
"""

from __future__ import annotations

import random

from mixlab.data.builtin.math_numeric import Solved, join_terms, monomial, program, require, signed

_VARIABLES = "xyzkmnpqt"

# --- linear: one unknown, brackets on either side ----------------------------------------------

_LINEAR = {1: (10, 10), 2: (12, 15), 3: (12, 20), 4: (30, 50), 5: (60, 200)}  # coefficient, |root|
# Term kinds: ("x", k) is k*x, ("c", k) is k, ("g", k, m) is k*(x + m). The last term of the right
# side is always a constant: it is solved for, so that the root is the integer drawn.
_LINEAR_FORMS = {
    1: (("x", "c"), ("c",)),
    2: (("x", "c"), ("x", "c")),
    3: (("g",), ("x", "c")),
    4: (("g", "c"), ("g", "c")),
    5: (("g", "g"), ("x", "c")),
}


def _draw_term(rng: random.Random, kind: str, largest: int) -> tuple[int, ...]:
    if kind == "x":
        return ("x", signed(rng, 1, largest))
    if kind == "c":
        return ("c", signed(rng, 1, largest))
    return ("g", signed(rng, 2, largest), signed(rng, 1, largest))


def _term_text(term: tuple, v: str) -> str:
    if term[0] == "x":
        return monomial(term[1], v)
    if term[0] == "c":
        return str(term[1])
    inner = join_terms([v, str(term[2])])
    return f"{term[1]}*({inner})"


def _expanded(terms: list[tuple], v: str) -> list[str]:
    """Each bracket multiplied out, nothing collected yet."""
    out = []
    for t in terms:
        out += [monomial(t[1], v), str(t[1] * t[2])] if t[0] == "g" else [_term_text(t, v)]
    return out


def _collect(terms: list[tuple]) -> tuple[int, int]:
    """(coefficient of the unknown, constant) of a side."""
    slope = sum(t[1] for t in terms if t[0] != "c")
    return slope, sum(t[1] for t in terms if t[0] == "c") + sum(t[1] * t[2] for t in terms if t[0] == "g")


def _linear_side(slope: int, constant: int, v: str) -> str:
    """'3*x - 4', '3*x', '-4' or '0': a collected side, zero terms left out."""
    terms = ([monomial(slope, v)] if slope else []) + ([str(constant)] if constant else [])
    return join_terms(terms) if terms else "0"


def _side_value(terms: list[tuple], x: int) -> int:
    return sum(t[1] * x if t[0] == "x" else t[1] if t[0] == "c" else t[1] * (x + t[2]) for t in terms)


def linear(rng: random.Random, difficulty: int) -> Solved:
    largest, root_max = _LINEAR[difficulty]
    v, root = rng.choice(_VARIABLES), rng.randint(-root_max, root_max)
    while True:  # redraw until the unknown survives collection and the solved constant is non-zero
        left = [_draw_term(rng, k, largest) for k in _LINEAR_FORMS[difficulty][0]]
        right = [_draw_term(rng, k, largest) for k in _LINEAR_FORMS[difficulty][1]]
        right[-1] = ("c", _side_value(left, root) - _side_value(right[:-1], root))
        (pl, ql), (pr, qr) = _collect(left), _collect(right)
        if pl != pr and right[-1][1] != 0:
            break
    lhs, rhs = join_terms([_term_text(t, v) for t in left]), join_terms([_term_text(t, v) for t in right])
    steps, shown = [], f"{lhs} = {rhs}"
    if any(t[0] == "g" for t in left + right):
        shown = f"{join_terms(_expanded(left, v))} = {join_terms(_expanded(right, v))}"
        steps.append(f"Expand the brackets: {shown}.")
    collected = f"{_linear_side(pl, ql, v)} = {_linear_side(pr, qr, v)}"
    if collected != shown:
        steps.append(f"Collect like terms: {collected}.")
    slope, constant = pl - pr, qr - ql
    steps.append(
        f"Move the {v} terms to the left and the numbers to the right: {monomial(slope, v)} = {constant}."
    )
    require(
        constant % slope == 0 and constant // slope == root, "linear: the collected equation has another root"
    )
    if slope != 1:
        steps.append(f"Divide both sides by {slope}: {v} = {root}.")
    value = _side_value(left, root)
    require(value == _side_value(right, root), "linear: the root does not satisfy the equation")
    steps.append(f"Check: with {v} = {root} both sides equal {value}.")
    template = rng.choice(("Solve {l} = {r} for {v}.", "Find {v} if {l} = {r}."))
    code = program(
        "from fractions import Fraction",
        "",
        "",
        f"def left({v}):",
        f"    return {lhs}",
        "",
        "",
        f"def right({v}):",
        f"    return {rhs}",
        "",
        "",
        "# Both sides are linear: their difference is slope * unknown + intercept.",
        "intercept = left(0) - right(0)",
        "slope = left(1) - right(1) - intercept",
        f"{v} = Fraction(-intercept, slope)",
        f"assert left({v}) == right({v})",
        f'print(f"{v} = {{{v}}}")',
    )
    return Solved(template.format(l=lhs, r=rhs, v=v), f"{v} = {root}", tuple(steps), code)


# --- linear_system: two equations, two unknowns, elimination --------------------------------------

_SYSTEM = {1: (5, 10), 2: (9, 10), 3: (12, 20), 4: (20, 40), 5: (50, 100)}  # coefficient, |solution|
_PAIRS = (("x", "y"), ("a", "b"), ("m", "n"), ("p", "q"), ("u", "v"), ("s", "t"))


def _equation(a: int, b: int, c: int, x: str, y: str) -> str:
    return f"{join_terms([monomial(a, x), monomial(b, y)])} = {c}"


def linear_system(rng: random.Random, difficulty: int) -> Solved:
    largest, solution_max = _SYSTEM[difficulty]
    x, y = rng.choice(_PAIRS)
    x0, y0 = rng.randint(-solution_max, solution_max), rng.randint(-solution_max, solution_max)
    a1, b1, a2, b2 = (signed(rng, 1, largest) for _ in range(4))
    while a1 * b2 == a2 * b1:  # a unique solution needs a non-zero determinant
        b2 = signed(rng, 1, largest)
    c1, c2 = a1 * x0 + b1 * y0, a2 * x0 + b2 * y0
    steps = []
    if a1 != a2:
        scaled = (
            f"{_equation(a1 * a2, b1 * a2, c1 * a2, x, y)} and {_equation(a1 * a2, a1 * b2, a1 * c2, x, y)}"
        )
        steps.append(f"Multiply the first equation by {a2} and the second by {a1}: {scaled}.")
    slope, constant = a2 * b1 - a1 * b2, a2 * c1 - a1 * c2
    steps.append(
        f"Subtract the second equation from the first to eliminate {x}: {monomial(slope, y)} = {constant}."
    )
    require(constant == slope * y0, "linear_system: elimination gives another value")
    if slope != 1:
        steps.append(f"Divide both sides by {slope}: {y} = {y0}.")
    substituted = join_terms([monomial(a1, x), str(b1 * y0)])
    step = f"Substitute {y} = {y0} into the first equation: {substituted} = {c1}, "
    step += f"so {monomial(a1, x)} = {c1 - b1 * y0}"
    steps.append(step + (f" and {x} = {x0}." if a1 != 1 else "."))
    require(a1 * x0 == c1 - b1 * y0, "linear_system: back-substitution gives another value")
    steps.append(f"Check with the second equation: {join_terms([str(a2 * x0), str(b2 * y0)])} = {c2}.")
    question = (
        f"Solve the system {_equation(a1, b1, c1, x, y)} and {_equation(a2, b2, c2, x, y)} for {x} and {y}."
    )
    code = program(
        "from fractions import Fraction",
        "",
        f"# a1*{x} + b1*{y} = c1 and a2*{x} + b2*{y} = c2, solved by Cramer's rule.",
        f"a1, b1, c1 = {a1}, {b1}, {c1}",
        f"a2, b2, c2 = {a2}, {b2}, {c2}",
        "det = a1 * b2 - a2 * b1",
        f"{x} = Fraction(c1 * b2 - c2 * b1, det)",
        f"{y} = Fraction(a1 * c2 - a2 * c1, det)",
        f"assert a1 * {x} + b1 * {y} == c1 and a2 * {x} + b2 * {y} == c2",
        f'print(f"{x} = {{{x}}}, {y} = {{{y}}}")',
    )
    return Solved(question, f"{x} = {x0}, {y} = {y0}", tuple(steps), code)


# --- polynomial: expand a product of factors ---------------------------------------------------

_POLYNOMIAL = {1: ("ll", 5), 2: ("lq", 6), 3: ("lll", 6), 4: ("qq", 9), 5: ("llll", 9)}  # factors, largest


def poly_text(coeffs: list[int], v: str) -> str:
    """'2*x**2 - 5*x - 12' from [-12, -5, 2] (lowest degree first); '0' if all are zero."""
    terms = [monomial(c, "" if d == 0 else v if d == 1 else f"{v}**{d}") for d, c in enumerate(coeffs) if c]
    return join_terms(terms[::-1]) if terms else "0"


def _multiply(p: list[int], q: list[int]) -> list[int]:
    out = [0] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return out


_POLY_PROGRAM = '''def multiply(p, q):
    """Product of two polynomials given as coefficients, lowest degree first."""
    out = [0] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return out


def show(coeffs, var):
    terms = []
    for degree in range(len(coeffs) - 1, -1, -1):
        c = coeffs[degree]
        if c == 0:
            continue
        power = "" if degree == 0 else var if degree == 1 else f"{var}**{degree}"
        if not power:
            term = str(c)
        else:
            term = power if c == 1 else "-" + power if c == -1 else f"{c}*{power}"
        if not terms:
            terms.append(term)
        else:
            terms.append("- " + term[1:] if term.startswith("-") else "+ " + term)
    return " ".join(terms) if terms else "0"

'''


def polynomial(rng: random.Random, difficulty: int) -> Solved:
    kinds, largest = _POLYNOMIAL[difficulty]
    v = rng.choice(_VARIABLES)
    factors = [[signed(rng, 1, largest) for _ in range(2 if k == "l" else 3)] for k in kinds]
    steps, product = [], factors[0]
    for factor in factors[1:]:
        pairs = [
            (i + j, a * b)
            for i, a in reversed(list(enumerate(product)))
            if a
            for j, b in reversed(list(enumerate(factor)))
        ]
        distributed = join_terms([poly_text([0] * d + [c], v) for d, c in pairs])
        new = _multiply(product, factor)
        shown = f"({poly_text(product, v)}) by ({poly_text(factor, v)})"
        steps.append(f"Multiply {shown}: {distributed} = {poly_text(new, v)}.")
        product = new
    for x in range(-3, 4):  # the expansion must agree with the product at more points than its degree
        direct = 1
        for f in factors:
            direct *= sum(c * x**d for d, c in enumerate(f))
        require(direct == sum(c * x**d for d, c in enumerate(product)), "polynomial: expansion is wrong")
    text = "*".join(f"({poly_text(f, v)})" for f in factors)
    template = rng.choice(("Expand {}.", "Expand and simplify {}.", "Multiply out {}."))
    code = _POLY_PROGRAM + program(
        "",
        f"factors = {factors!r}  # coefficients of each factor, lowest degree first",
        "product = [1]",
        "for factor in factors:",
        "    product = multiply(product, factor)",
        f'print(show(product, "{v}"))',
    )
    return Solved(template.format(text), poly_text(product, v), tuple(steps), code)
