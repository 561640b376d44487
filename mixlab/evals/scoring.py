"""Scoring tasks with a text generator: exact match, execution in the sandbox, pass@k.

The generator is any callable with the signature of `GenerateFn`: for each prompt it returns
`num_samples` completions (the text after the prompt). It should stop at any of `stop`; whatever it
returns is cut at the first stop string here as well, so a generator that overshoots scores the same.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Protocol

from mixlab.evals import math_tasks, sandbox
from mixlab.evals.tasks import Task, program


class GenerateFn(Protocol):
    def __call__(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int,
        stop: list[str],
        temperature: float,
        num_samples: int,
        seed: int,
    ) -> list[list[str]]: ...


@dataclasses.dataclass(frozen=True)
class ItemResult:
    """One task's outcome; `score` is pass@1 = correct / samples."""

    id: str
    suite: str
    family: str
    difficulty: int | None
    dimension: str
    metric: str
    kind: str
    samples: int
    correct: int
    score: float
    pass_at: dict[int, float]
    completions: list[str]  # the first few, for reading
    exit_reasons: list[str]  # exec tasks: the sandbox's verdict per sample


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed (Chen et al. 2021): 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1..n} (1 - k/i), which never forms the huge binomials.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0  # every k-subset holds a passing sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the first occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]


def is_correct(task: Task, completion: str) -> bool:
    """Exact-match verdict for an `exact` task (exec tasks need the sandbox: see `score`)."""
    if task.match == "text":
        return completion.split("\n", 1)[0].strip() == (task.answer or "").strip()
    if task.match == "math_final":
        return math_tasks.final_answer_matches(completion, task.answer or "")
    return math_tasks.answers_match(completion, task.answer or "")


def _generate(
    tasks: Sequence[Task],
    generate_fn: GenerateFn,
    num_samples: int,
    temperature: float,
    seed: int,
    batch_size: int,
) -> list[list[str]]:
    """Completions per task, in task order; one call per batch of tasks sharing stop and length."""
    out: list[list[str]] = [[] for _ in tasks]
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(tasks):
        groups.setdefault((t.stop, t.max_new_tokens), []).append(i)
    call = 0
    for (stop, max_new_tokens), indices in groups.items():
        for start in range(0, len(indices), batch_size):
            batch = indices[start : start + batch_size]
            got = generate_fn(
                [tasks[i].prompt for i in batch],
                max_new_tokens=max_new_tokens,
                stop=list(stop),
                temperature=temperature,
                num_samples=num_samples,
                seed=seed + call,  # a different stream per call, the same on every rerun
            )
            call += 1
            if len(got) != len(batch) or any(len(c) != num_samples for c in got):
                raise ValueError(
                    f"generate_fn returned {[len(c) for c in got]} completions for {len(batch)} prompts "
                    f"x {num_samples} samples"
                )
            for i, completions in zip(batch, got, strict=True):
                out[i] = [cut_at_stop(c, stop) for c in completions]
    return out


def score(
    tasks: Sequence[Task],
    generate_fn: GenerateFn,
    *,
    num_samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    ks: Sequence[int] = (1,),
    limits: sandbox.Limits = sandbox.DEFAULT_LIMITS,
    workers: int = 2,
    batch_size: int = 64,
    keep_completions: int = 3,
) -> list[ItemResult]:
    """Generates `num_samples` completions per task and scores them; pass@k for each k <= num_samples."""
    completions = _generate(tasks, generate_fn, num_samples, temperature, seed, batch_size)
    # Every exec program of every task goes through the sandbox pool at once.
    runs = [(i, program(t, c)) for i, t in enumerate(tasks) if t.kind == "exec" for c in completions[i]]
    verdicts = sandbox.run_many([p for _, p in runs], limits, workers)
    reasons: dict[int, list[str]] = {}
    passes: dict[int, int] = {}
    for (i, _), r in zip(runs, verdicts, strict=True):
        reasons.setdefault(i, []).append(r.exit_reason)
        # `passed` is exit status 0 *and* the sandbox's per-run token, written only once the program's
        # last statement (`check(entry_point)`) returned: an early SystemExit(0) or os._exit(0) fails.
        passes[i] = passes.get(i, 0) + r.passed
    results = []
    for i, t in enumerate(tasks):
        exact = t.kind != "exec"
        correct = sum(is_correct(t, c) for c in completions[i]) if exact else passes.get(i, 0)
        results.append(
            ItemResult(
                id=t.id,
                suite=t.suite,
                family=t.family,
                difficulty=t.difficulty,
                dimension=t.dimension,
                metric=t.metric,
                kind=t.kind,
                samples=num_samples,
                correct=correct,
                score=correct / num_samples,
                pass_at={k: pass_at_k(num_samples, correct, k) for k in ks if k <= num_samples},
                completions=[c[:2000] for c in completions[i][:keep_completions]],
                exit_reasons=reasons.get(i, []),
            )
        )
    return results


def verify(
    tasks: Sequence[Task], limits: sandbox.Limits = sandbox.DEFAULT_LIMITS, workers: int = 2
) -> list[dict]:
    """Runs each exec task's reference `solution` against its tests: one `{id, status, ...}` per task.

    status: "pass", "fail" (with the sandbox's exit reason and stderr tail), or "unchecked" (an exact
    task, or an exec task without a solution).
    """
    checked = [t for t in tasks if t.kind == "exec" and t.solution is not None]
    runs = dict(
        zip(
            [t.id for t in checked],
            sandbox.run_many([program(t, t.solution) for t in checked], limits, workers),
            strict=True,
        )
    )
    report = []
    for t in tasks:
        r = runs.get(t.id)
        if r is None:
            report.append({"id": t.id, "status": "unchecked"})
        else:
            entry = {"id": t.id, "status": "pass" if r.passed else "fail", "exit_reason": r.exit_reason}
            if not r.passed:
                entry["stderr_tail"] = r.stderr_tail[-1000:]
            report.append(entry)
    return report
