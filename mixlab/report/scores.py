"""What each run scores, as `{metric: {item_id: score}}`, for the capability table and the claims.

- `bpb/<domain>`: held-out bits per byte. Items are the eval sequences (nats / (ln 2 · bytes) of each,
  from the `seq_*` lists of `eval/step_<N>.json`, as `capability.metrics_from` reads them) when every
  run has them for the domain, so confidence intervals carry item variance; otherwise one item per
  domain, the file's aggregate bpb. The score of a run is then the mean over sequences, which weights
  sequences equally (the aggregate bpb weights them by bytes): the two differ slightly, and results.csv
  gives both.
- task metrics `<suite>/<family>`: the per-item scores of `eval/tasks_step_<final>.json` (pass@1 or exact
  match), as `capability.metrics_from` reads them.
- `answer_bpb/<suite>`, `solution_bpb/<suite>`, `choice_prob/<suite>`: the answer-level likelihood
  metrics of `eval/step_<final>.json`'s "answers" section (mixlab/evals/likelihood.py), per problem.
- `tasks:<suite>` (claims only): every item of a suite pooled, e.g. `tasks:math` = exact match over all
  generated math problems, whatever their family.
"""

from __future__ import annotations

from mixlab.evals import capability, dimensions, likelihood
from mixlab.report.load import RunData, Sweep


def seq_bpb(result: dict, domain: str = "") -> dict[str, float] | None:
    """Per-sequence bits per byte of one domain's eval result, as `capability.metrics_from` defines them
    (`{"<domain>/<i>": nats / (ln 2 · bytes)}`), or None when the result has no per-sequence lists."""
    if not result.get("seq_nats"):
        return None
    return capability.metrics_from({domain: result})[f"bpb/{domain}"]


def per_sequence_domains(sweep: Sweep) -> set[str]:
    """Domains whose per-sequence lists every run's final eval has (bpb items are then sequences)."""
    out = None
    for run in sweep.runs:
        have = {d for d, v in run.final.items() if seq_bpb(v)}
        out = have if out is None else out & have
    return out or set()


def bpb_items(run: RunData, domain: str, seq_domains: set[str]) -> dict[str, float] | None:
    result = run.final.get(domain)
    if result is None:
        return None
    if domain in seq_domains:
        return seq_bpb(result, domain)
    return {domain: float(result["bpb"])}


def bpb_scores(run: RunData, seq_domains: set[str]) -> dict[str, dict[str, float]]:
    return {f"bpb/{d}": bpb_items(run, d, seq_domains) for d in sorted(run.final)}


def task_scores(run: RunData) -> dict[str, dict[str, float]]:
    return capability.metrics_from(None, run.tasks) if run.tasks is not None else {}


def suite_items(run: RunData, suite: str) -> dict[str, float] | None:
    if run.tasks is None:
        return None
    items = {str(it["id"]): float(it["score"]) for it in run.tasks["items"] if it.get("suite") == suite}
    return items or None


def claim_items(run: RunData, metric: str, seq_domains: set[str]) -> dict[str, float] | None:
    """Items of a claim metric (`bpb/<domain>` or `tasks:<suite>`) for one run, None when it lacks them."""
    if metric.startswith("tasks:"):
        return suite_items(run, metric.removeprefix("tasks:"))
    if metric.startswith("bpb/"):
        return bpb_items(run, metric.removeprefix("bpb/"), seq_domains)
    if metric.startswith(ANSWER_PREFIXES):
        return likelihood.items_from({"answers": run.final_answers}).get(metric)
    raise ValueError(f"unknown claim metric {metric!r}")


ANSWER_PREFIXES = ("answer_bpb/", "solution_bpb/", "choice_prob/")


def answer_scores(run: RunData) -> dict[str, dict[str, float]]:
    """Every answer-level metric of the run's final eval, `{metric: {item_id: score}}`."""
    return likelihood.items_from({"answers": run.final_answers}) if run.final_answers else {}


def higher_is_better(metric: str) -> bool:
    if metric.startswith(ANSWER_PREFIXES):
        return likelihood.higher_is_better(metric)
    return False if metric.startswith("bpb/") else dimensions.higher_is_better(metric)


def describe(metric: str) -> str:
    """A claim metric in words, with ↓ when lower is better."""
    if metric.startswith("tasks:"):
        suite = metric.removeprefix("tasks:")
        what = "exact match" if suite.startswith(("math", "output_pred")) else "pass@1"
        return f"{suite} {what}"
    return metric if higher_is_better(metric) else f"{metric} ↓"
