"""Generated code tasks: output prediction (CRUXEval-O style) and function completion checked by tests.

A program is a function `f(x)` that applies 1-5 small operations (the difficulty) to a string, a list of
integers or an integer (the family), each drawn with its constants from `random.Random` seeded by
(kind, family, seed, difficulty), so every process builds the same tasks. Answers are not computed here:
every program is run once in the sandbox (all of a suite in one sandboxed process) and what it prints
is the answer, so a generator bug cannot disagree with Python.

  output_pred  prompt: the program, ending `print(repr(f(<input>)))`, then `# Output:`; the answer is the
               printed repr (quoted for strings, so never empty); exact match after stripping.
  code_gen     prompt: `def transform(x: ...) -> ...:` and a docstring saying the operations in words,
               with one worked example; five hidden input/output asserts in `check(candidate)`.
"""

from __future__ import annotations

import functools
import json
import random
import textwrap

from mixlab.evals import dimensions, sandbox
from mixlab.evals.tasks import CODE_STOPS, Task

FAMILIES = ("string", "list", "integer")
EVAL_SEED0 = 1_000_000_000  # seeds of generated eval tasks: disjoint from anything a trainer would draw
_LETTERS = "abcdefghij"  # few letters, so replace/remove operations usually change something
_TYPES = {"string": "str", "list": "list[int]", "integer": "int"}

# (code with {params}, the same in words); code lines are the body of f and may span lines.
_OPS = {
    "string": (
        ("x = x[::-1]", "reverse it"),
        ("x = x.upper()", "make it upper case"),
        ("x = x.replace({a!r}, {b!r})", "replace every {a!r} with {b!r}"),
        ("x = x[{i}:] + x[:{i}]", "rotate it left by {i} characters"),
        ("x = x + {s!r}", "append {s!r}"),
        ("x = ''.join(c for c in x if c not in {s!r})", "remove every character that is in {s!r}"),
        ("x = x[::2]", "keep every second character, starting with the first"),
        ("x = ''.join(sorted(x))", "sort its characters"),
    ),
    "list": (
        ("x = [v + {k} for v in x]", "add {k} to every element"),
        ("x = [v * {k} for v in x]", "multiply every element by {k}"),
        ("x = [v for v in x if v % {m} != 0]", "drop the elements divisible by {m}"),
        ("x = sorted(x)", "sort it in increasing order"),
        ("x = sorted(x, reverse=True)", "sort it in decreasing order"),
        ("x = x[{i}:]", "drop the first {i} elements"),
        ("x = [sum(x[:i + 1]) for i in range(len(x))]", "replace it by its running sums"),
        ("x = [v for v in x if v > {t}]", "keep the elements greater than {t}"),
    ),
    "integer": (
        ("x = x * {k} + {c}", "multiply it by {k} and add {c}"),
        ("x = sum(int(d) for d in str(abs(x)))", "replace it by the sum of its decimal digits"),
        ("x = x % {m}", "take the remainder modulo {m}"),
        ("x = x // {k}", "divide it by {k}, rounding down"),
        ("for i in range({n}):\n    x = x + i * {k}", "add i * {k} for each i from 0 to {n} - 1"),
        ("x = abs(x - {c})", "replace it by its distance from {c}"),
    ),
}


def _params(rng: random.Random) -> dict:
    a, b = rng.sample(_LETTERS, 2)
    return {
        "a": a,
        "b": b,
        "s": "".join(rng.sample(_LETTERS, 2)),
        "i": rng.randint(1, 3),
        "k": rng.randint(2, 9),
        "m": rng.randint(2, 5),
        "t": rng.randint(0, 15),
        "c": rng.randint(1, 30),
        "n": rng.randint(2, 5),
    }


def _input(family: str, rng: random.Random, difficulty: int) -> object:
    if family == "string":
        return "".join(rng.choice(_LETTERS) for _ in range(4 + 2 * difficulty))
    if family == "list":
        return [rng.randint(0, 20) for _ in range(3 + difficulty)]
    return rng.randint(2, 10 ** (1 + difficulty // 2))


def _draw(kind: str, family: str, seed: int, difficulty: int) -> tuple[list[str], list[str], random.Random]:
    """Code lines and descriptions of `difficulty` operations, and the rng to draw inputs with."""
    if family not in _OPS:
        raise ValueError(f"unknown program family {family!r} (known: {', '.join(FAMILIES)})")
    rng = random.Random(f"{kind}/{family}/{seed}/{difficulty}")
    code, words = [], []
    for op_code, op_words in rng.choices(_OPS[family], k=difficulty):
        p = _params(rng)
        code.append(op_code.format(**p))
        words.append(op_words.format(**p))
    return code, words, rng


def _function(name: str, family: str, code: list[str], doc: str = "") -> tuple[str, str]:
    """(signature and docstring, body) of the function applying `code` to x."""
    head = f"def {name}(x: {_TYPES[family]}) -> {_TYPES[family]}:\n" + (
        f'    """{doc}\n    """\n' if doc else ""
    )
    body = "".join("".join(f"    {line}\n" for line in step.split("\n")) for step in code) + "    return x\n"
    return head, body


@functools.cache
def _printed(programs: tuple[str, ...]) -> tuple[str, ...]:
    """What each program prints, all run in one sandboxed process (each in a fresh namespace)."""
    runner = (
        "import contextlib, io, json\nouts = []\n"
        f"for src in json.loads({json.dumps(programs)!r}):\n"
        "    buf = io.StringIO()\n"
        "    with contextlib.redirect_stdout(buf):\n"
        "        exec(compile(src, '<task>', 'exec'), {'__name__': '__main__'})\n"
        "    outs.append(buf.getvalue())\n"
        "print(json.dumps(outs))\n"
    )
    result = sandbox.run(runner, sandbox.Limits(timeout_s=60, cpu_s=60))
    if not result.passed:
        raise RuntimeError(f"generated programs failed ({result.exit_reason}): {result.stderr_tail}")
    return tuple(json.loads(result.stdout))


def _grid(families, difficulties, per_cell: int) -> list[tuple[str, int, int]]:
    families = tuple(families or FAMILIES)
    return [(f, EVAL_SEED0 + i, d) for f in families for d in difficulties for i in range(per_cell)]


def output_prediction(
    *, families: tuple[str, ...] | None = None, difficulties=(1, 2, 3, 4, 5), per_cell: int = 10
) -> list[Task]:
    """Predict the printed output of a generated program (suite `output_pred`)."""
    programs, cells = [], _grid(families, difficulties, per_cell)
    for family, seed, difficulty in cells:
        code, _, rng = _draw("output_pred", family, seed, difficulty)
        head, body = _function("f", family, code)
        programs.append(f"{head}{body}\n\nprint(repr(f({_input(family, rng, difficulty)!r})))\n")
    outputs = _printed(tuple(programs))
    metric = dimensions.metric_name
    return [
        Task(
            id=f"output_pred/{family}/{seed}/{difficulty}",
            prompt=f"{program}# Output:",
            kind="exact",
            suite="output_pred",
            answer=out.strip(),
            family=family,
            difficulty=difficulty,
            dimension=dimensions.dimension_of(metric("output_pred", family)),
            stop=("\n",),
            max_new_tokens=128,
            match="text",
        )
        for (family, seed, difficulty), program, out in zip(cells, programs, outputs, strict=True)
    ]


def code_generation(
    *, families: tuple[str, ...] | None = None, difficulties=(1, 2, 3), per_cell: int = 2
) -> list[Task]:
    """Write the body of a function described in its docstring (suite `code_gen`), 5 hidden tests each."""
    drawn, programs = [], []
    for family, seed, difficulty in _grid(families, difficulties, per_cell):
        code, words, rng = _draw("code_gen", family, seed, difficulty)
        inputs = [_input(family, rng, difficulty) for _ in range(6)]
        _, body = _function("transform", family, code)
        calls = "".join(f"print(repr(transform({x!r})))\n" for x in inputs)
        programs.append(f"def transform(x):\n{body}\n{calls}")
        drawn.append((family, seed, difficulty, code, words, inputs))
    outputs = _printed(tuple(programs))
    tasks = []
    for (family, seed, difficulty, code, words, inputs), out in zip(drawn, outputs, strict=True):
        results = out.splitlines()
        doc = textwrap.fill(f"Start from x, {', then '.join(words)}, and return the result.", 96)
        doc = doc.replace("\n", "\n    ") + "\n\n"
        doc += f"    >>> transform({inputs[0]!r})\n    {results[0]}"
        head, body = _function("transform", family, code, doc)
        pairs = zip(inputs[1:], results[1:], strict=True)
        asserts = "".join(f"    assert candidate({x!r}) == {r}\n" for x, r in pairs)
        tasks.append(
            Task(
                id=f"code_gen/{family}/{seed}/{difficulty}",
                prompt=head,
                kind="exec",
                suite="code_gen",
                tests=f"def check(candidate):\n{asserts}",
                entry_point="transform",
                solution=body,
                family=family,
                difficulty=difficulty,
                dimension=dimensions.dimension_of(dimensions.metric_name("code_gen", family)),
                stop=CODE_STOPS,
                max_new_tokens=256,
            )
        )
    return tasks
