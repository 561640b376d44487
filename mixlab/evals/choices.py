"""Distractors for the multiple-choice likelihood metric (`choice_prob`): deterministic and fixed in number.

Every item gets `NUM_CHOICES` = 4 choices, the gold first, so chance is 1/4 for every problem. The three
distractors are drawn with `random.Random("choices/<item id>")` (string seeds hash with SHA-512: the same
in every process and run) from three pools, in this order of preference:

  1. near misses of the gold (`near_math`, `near_output`): 2 of them, e.g. gold ± 1, gold ± 10%, the sign
     flipped, one digit changed; for fractions the numerator or denominator ± 1 (in lowest terms); for
     assignments one value perturbed or two values swapped; for polynomials one coefficient ± 1 or one
     term's sign flipped; for lists one element ± 1, the last dropped, reversed or sorted; for strings
     reversed, one character dropped, changed or swapped with its neighbour;
  2. the gold answers of the other problems of the same family and difficulty: 1 of them (math: in the
     gold's variable names, `like_gold`);
  3. any other answer of the same suite, when the first two pools run short.

A pool that runs short is filled from the next one. A candidate is kept only when its `key` (math:
`math_tasks.normalise_answer`; output prediction: the text stripped, its exact-match rule) differs from the
gold's and from every choice already kept, so a distractor is never a correct answer in disguise.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Callable, Sequence
from fractions import Fraction

NUM_CHOICES = 4
NEAR, OTHER = 2, 1  # distractors taken from pools 1 and 2 (NEAR + OTHER = NUM_CHOICES - 1)
_LETTERS = "abcdefghij"  # the letters of code_tasks' string inputs

_NUMBER = re.compile(r"-?\d+(?:/\d+)?")
_ASSIGNMENT = re.compile(r"([A-Za-z]\w*) = (-?\d+(?:/\d+)?)")
_COEFFICIENT = re.compile(r"(?<![\d*])\d+")  # a number that is not an exponent (`x**2`)
_SIGN = re.compile(r"(?<= )[+-](?= )|^-")


def pick(
    seed: str,
    gold: str,
    near: Sequence[str],
    others: Sequence[str],
    fallback: Sequence[str],
    key: Callable[[str], str],
) -> tuple[str, ...]:
    """(gold, 3 distractors): NEAR from `near`, OTHER from `others`, a short pool filled from the next.

    Raises:
      ValueError: fewer than NUM_CHOICES - 1 candidates differ from the gold and from each other.
    """
    rng = random.Random(f"choices/{seed}")
    pools = [list(near), list(others), list(fallback)]
    for pool in pools:
        rng.shuffle(pool)
    chosen, seen = [gold], {key(gold)}
    for want, pool in zip((NEAR, NEAR + OTHER, NUM_CHOICES - 1), pools, strict=True):  # shortfalls pass on
        for candidate in pool:
            if len(chosen) - 1 >= want:
                break
            k = key(candidate)
            if k not in seen:
                seen.add(k)
                chosen.append(candidate)
    if len(chosen) != NUM_CHOICES:
        raise ValueError(f"{seed}: only {len(chosen) - 1} distinct distractors for {gold!r}")
    return tuple(chosen)


def _near_number(v: Fraction, rng: random.Random) -> list[Fraction]:
    tenth = max(2, round(abs(v) / 10))  # 10%, at least 2 so that it differs from +-1
    out = [v + 1, v - 1, v + tenth, v - tenth, -v]
    if v.denominator > 1:
        n, d = v.numerator, v.denominator
        out += [Fraction(n + 1, d), Fraction(n - 1, d), Fraction(n, d + 1)] + (
            [Fraction(n, d - 1)] if d > 2 else []
        )
    digits = str(abs(v.numerator))
    at = rng.randrange(len(digits))
    new = rng.choice([c for c in "0123456789" if c != digits[at] and (at or c != "0" or len(digits) == 1)])
    changed = int(digits[:at] + new + digits[at + 1 :]) * (-1 if v < 0 else 1)
    out.append(Fraction(changed, v.denominator))
    return out


def near_math(answer: str, seed: str) -> list[str]:
    """Near misses of a `mathgen` answer in its own format: a number ("-3/2"), assignments ("x = 3",
    "a = 1, b = -2") or a polynomial ("-4*x**2 + 3*x - 1"); others get none."""
    rng = random.Random(f"near/{seed}")
    if _NUMBER.fullmatch(answer):
        return [str(w) for w in _near_number(Fraction(answer), rng)]
    parts = answer.split(", ")
    matched = [_ASSIGNMENT.fullmatch(p) for p in parts]
    if all(matched):
        names, values = [m[1] for m in matched], [m[2] for m in matched]
        out = []
        for i, v in enumerate(values):
            for w in _near_number(Fraction(v), rng):
                new = [str(w) if j == i else x for j, x in enumerate(values)]
                out.append(", ".join(f"{n} = {x}" for n, x in zip(names, new, strict=True)))
        if len(values) == 2 and values[0] != values[1]:
            out.append(f"{names[0]} = {values[1]}, {names[1]} = {values[0]}")
        return out
    out = []
    for m in _COEFFICIENT.finditer(answer):  # one coefficient or constant +- 1 (never down to 0)
        for w in (int(m[0]) + 1, int(m[0]) - 1):
            if w > 0:
                out.append(answer[: m.start()] + str(w) + answer[m.end() :])
    for m in _SIGN.finditer(answer):  # one term's sign flipped
        if m[0] == "-" and m.start() == 0:
            out.append(answer[1:])
        else:
            out.append(answer[: m.start()] + ("-" if m[0] == "+" else "+") + answer[m.end() :])
    if out and not answer.startswith("-"):
        out.append("-" + answer)
    return out


def like_gold(gold: str, other: str) -> str:
    """Another problem's answer in the gold's variable names, so that a name alone does not give it away:
    ("z = 3", "n = 13") -> "z = 13"; ("-2*x**2 + 1", "5*k - 3") -> "5*x - 3"; anything else unchanged."""
    gold_parts, parts = gold.split(", "), other.split(", ")
    names = [m[1] if (m := _ASSIGNMENT.fullmatch(p)) else None for p in gold_parts]
    values = [m[2] if (m := _ASSIGNMENT.fullmatch(p)) else None for p in parts]
    if len(names) == len(values) and None not in names and None not in values:
        return ", ".join(f"{n} = {v}" for n, v in zip(names, values, strict=True))
    gold_vars, other_vars = set(re.findall(r"[A-Za-z]", gold)), set(re.findall(r"[A-Za-z]", other))
    if len(gold_vars) == 1 and len(other_vars) == 1 and not _ASSIGNMENT.search(gold + other):
        return other.replace(other_vars.pop(), gold_vars.pop())
    return other


def near_output(answer: str, seed: str) -> list[str]:
    """Near misses of a printed repr (an int, a list of ints or a string), as reprs."""
    rng = random.Random(f"near/{seed}")
    try:
        v = ast.literal_eval(answer)
    except (ValueError, SyntaxError):
        return []
    if isinstance(v, bool):
        return [repr(not v)]
    if isinstance(v, int):
        return [repr(int(w)) for w in _near_number(Fraction(v), rng)]
    if isinstance(v, list) and all(isinstance(x, int) for x in v):
        if not v:
            return ["[0]", "[1]", "[]"]
        i = rng.randrange(len(v))
        out = [v[:i] + [v[i] + d] + v[i + 1 :] for d in (1, -1)]
        out += [v[:-1], v[::-1], sorted(v), v + [v[-1]]]
        return [repr(w) for w in out]
    if isinstance(v, str):
        if not v:
            return [repr(c) for c in _LETTERS]
        i = rng.randrange(len(v))
        letter = rng.choice([c for c in _LETTERS if c != v[i].lower()])
        letter = letter.upper() if v[i].isupper() else letter
        out = [v[::-1], v[:i] + v[i + 1 :], v[:i] + letter + v[i + 1 :], v + v[-1], v.swapcase()]
        if len(v) > 1:
            j = min(i, len(v) - 2)
            out.append(v[:j] + v[j + 1] + v[j] + v[j + 2 :])
        return [repr(w) for w in out]
    return []
