"""Word problems of `mathgen`: rates, ages and shopping sums, each several steps long.

The difficulty sets the number of phases, people or items and the size of the numbers. Answers are
whole numbers, computed exactly and checked a second way.
"""

from __future__ import annotations

import random
from fractions import Fraction

from mixlab.data.builtin.math_numeric import Solved, program, require

_NAMES = (
    "Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo", "Kofi", "Lena",
    "Mina", "Noor", "Omar", "Priya", "Ravi", "Sara", "Tom", "Uma", "Vera", "Wei", "Yusuf", "Zoe",
)  # fmt: skip
_MACHINES = (  # subject, verb (3rd person), verb (base), unit, time unit
    ("A pump", "moves", "move", "litres", "minute"),
    ("A printer", "prints", "print", "pages", "minute"),
    ("A drone", "flies", "fly", "kilometres", "hour"),
    ("A factory line", "makes", "make", "parts", "hour"),
    ("A bakery oven", "bakes", "bake", "loaves", "hour"),
)
_ITEMS = ("notebooks", "pens", "apples", "tickets", "candles", "mugs", "books", "plants", "stamps", "cups")
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth")

# Per difficulty. Rate: phases, largest rate, largest time. Ages: people, largest multiple, largest
# age, largest number of years. Shopping: kinds of item, largest price, largest quantity, note size.
_RATE = {1: (2, 20, 10), 2: (3, 20, 10), 3: (3, 50, 20), 4: (5, 100, 40), 5: (6, 500, 90)}
_AGES = {1: (2, 3, 12, 10), 2: (2, 4, 20, 15), 3: (3, 4, 20, 20), 4: (3, 6, 40, 30), 5: (3, 9, 60, 50)}
_SHOP = {1: (2, 5, 5, 10), 2: (2, 10, 9, 20), 3: (3, 20, 12, 50), 4: (4, 50, 20, 100), 5: (5, 100, 50, 500)}


def _rate(rng: random.Random, difficulty: int) -> Solved:
    phases, rate_max, time_max = _RATE[difficulty]
    subject, verb, base, unit, per = rng.choice(_MACHINES)
    legs = [(rng.randint(2, rate_max), rng.randint(2, time_max)) for _ in range(phases)]
    parts = [f"{r} {unit} per {per} for {t} {per}s" for r, t in legs]
    question = f"{subject} {verb} {', then '.join(parts)}. How many {unit} does it {base} in total?"
    steps = [
        f"In the {_ORDINALS[i]} part it {verb} {r} * {t} = {r * t} {unit}." for i, (r, t) in enumerate(legs)
    ]
    total = sum(r * t for r, t in legs)
    steps.append(f"In total: {' + '.join(str(r * t) for r, t in legs)} = {total} {unit}.")
    code = program(
        f"legs = {legs!r}  # ({unit} per {per}, {per}s)",
        "total = 0",
        "for rate, time in legs:",
        "    total += rate * time",
        "print(total)",
    )
    return Solved(question, str(total), tuple(steps), code)


def _ages(rng: random.Random, difficulty: int) -> Solved:
    people, times_max, age_max, years_max = _AGES[difficulty]
    a, b, c = rng.sample(_NAMES, 3)
    times, age, years = rng.randint(2, times_max), rng.randint(2, age_max), rng.randint(1, years_max)
    older = rng.randint(1, age_max) if people == 3 else 0
    ages = [times * age, age] + ([age + older] if people == 3 else [])
    total = sum(x + years for x in ages)
    question = f"{a} is {times} times as old as {b}."
    question += f" {c} is {older} years older than {b}." if people == 3 else ""
    whose = "all three" if people == 3 else "their"
    question += f" In {years} years, the sum of {whose} ages will be {total}. How old is {b} now?"
    # b's age is the unknown: the sum in `years` years is (times + 1 [+ 1]) * b + people * years [+ older].
    slope, constant = times + 1 + (people == 3), people * years + older
    terms = [f"{times}*b + {years}", f"b + {years}"] + ([f"b + {older} + {years}"] if people == 3 else [])
    steps = [
        f"Let {b}'s age be b. Then {a} is {times}*b" + (f" and {c} is b + {older}." if people == 3 else "."),
        f"In {years} years the sum is {' + '.join(f'({t})' for t in terms)} = {slope}*b + {constant}.",
        f"So {slope}*b + {constant} = {total}, which gives {slope}*b = {total - constant} and b = {age}.",
        f"Check: {' + '.join(str(x + years) for x in ages)} = {total}.",
    ]
    require(Fraction(total - constant, slope) == age, "word/ages: the equation has another solution")
    code = program(
        "from fractions import Fraction",
        "",
        f"times, years, total, older = {times}, {years}, {total}, {older}",
        f"people = {people}",
        "# The unknown age b: (times*b + years) + (b + years) [+ (b + older + years)] = total.",
        "slope = times + 1 + (people == 3)",
        "b = Fraction(total - people * years - older, slope)",
        "print(b)",
    )
    return Solved(question, str(age), tuple(steps), code)


def _shopping(rng: random.Random, difficulty: int) -> Solved:
    kinds, price_max, quantity_max, note = _SHOP[difficulty]
    name, items = rng.choice(_NAMES), rng.sample(_ITEMS, kinds)
    basket = [(rng.randint(2, quantity_max), item, rng.randint(2, price_max)) for item in items]
    cost = sum(q * p for q, _, p in basket)
    paid = (cost // note + rng.randint(1, 3)) * note  # a round amount above the cost
    bought = " and ".join(f"{q} {item} at {p} dollars each" for q, item, p in basket)
    question = f"{name} buys {bought}, and pays with {paid} dollars. How much change does {name} get?"
    steps = [f"The {item} cost {q} * {p} = {q * p} dollars." for q, item, p in basket]
    steps.append(f"Together: {' + '.join(str(q * p) for q, _, p in basket)} = {cost} dollars.")
    steps.append(f"The change is {paid} - {cost} = {paid - cost} dollars.")
    require(paid > cost, "word/shopping: the payment does not cover the cost")
    code = program(
        f"basket = {[(q, p) for q, _, p in basket]!r}  # (quantity, price in dollars)",
        f"paid = {paid}",
        "cost = sum(quantity * price for quantity, price in basket)",
        "print(paid - cost)",
    )
    return Solved(question, str(paid - cost), tuple(steps), code)


def word(rng: random.Random, difficulty: int) -> Solved:
    return rng.choice((_rate, _ages, _shopping))(rng, difficulty)
