"""Which capability dimension each metric counts towards, and which way is better: the one table.

A metric is named `<suite>/<family>` (or `<suite>` when it has no families): `math/linear`,
`output_pred/string`, `humaneval`, `bpb/code`. The first matching pattern wins.

| pattern | dimension | better | why |
|---|---|---|---|
| `bpb/*` | held-out bpb | lower | held-out bits per byte per eval domain (`evals.loss`) |
| `loss/*` | held-out loss | lower | the same in nats per token (tokenizer-dependent) |
| `answer_bpb/*`, `solution_bpb/*` | answer bpb | lower | gold answer (solution) bpb given the question |
| `choice_prob/*` | answer choice | higher | probability of the gold answer among 4 choices (chance 0.25) |
| `math/word`, `math_free/word` | reasoning | higher | word problems: the story must become arithmetic first |
| `math/*`, `math_free/*` | math | higher | held-out problems at the training difficulties (1-3) |
| `math_extrap/*`, `math_free_extrap/*` | extrapolation | higher | difficulties 4-5, never seen in training |
| `output_pred/*` | reasoning | higher | predict what a generated program prints (CRUXEval-O style) |
| `code_gen/*`, `humaneval` | programming | higher | function bodies checked by running unit tests (pass@1) |
| `file:*` | the task's own `dimension`, else programming (tests) / other (answers) | higher | |
"""

from __future__ import annotations

import fnmatch

# (metric pattern, dimension, higher is better); see the module docstring for the reasons.
DIMENSION_MAP: tuple[tuple[str, str, bool], ...] = (
    ("bpb/*", "held-out bpb", False),
    ("loss/*", "held-out loss", False),
    ("answer_bpb/*", "answer bpb", False),
    ("solution_bpb/*", "answer bpb", False),
    ("choice_prob/*", "answer choice", True),
    ("math/word", "reasoning", True),
    ("math/*", "math", True),
    ("math_free/word", "reasoning", True),
    ("math_free/*", "math", True),
    ("math_extrap/*", "extrapolation", True),
    ("math_free_extrap/*", "extrapolation", True),
    ("output_pred/*", "reasoning", True),
    ("code_gen/*", "programming", True),
    ("humaneval", "programming", True),
)
DIMENSIONS = (
    "held-out bpb",
    "held-out loss",
    "answer bpb",
    "answer choice",
    "programming",
    "math",
    "reasoning",
    "extrapolation",
)


def metric_name(suite: str, family: str = "") -> str:
    """The metric an item counts towards: `suite/family`, or `suite` without a family."""
    return f"{suite}/{family}" if family else suite


def dimension_of(metric: str, default: str = "other") -> str:
    """The dimension of `metric` from DIMENSION_MAP, `default` when no pattern matches."""
    for pattern, dimension, _ in DIMENSION_MAP:
        if fnmatch.fnmatchcase(metric, pattern):
            return dimension
    return default


def higher_is_better(metric: str) -> bool:
    """False for losses and bits per byte; True for every accuracy-like score."""
    for pattern, _, higher in DIMENSION_MAP:
        if fnmatch.fnmatchcase(metric, pattern):
            return higher
    return True
