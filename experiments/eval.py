"""Evaluates checkpoints of a run: held-out loss and bits-per-byte per domain, and generation tasks.

python -m experiments.eval --workdir runs/quickstart [--step N | --all_steps]
python -m experiments.eval --workdir runs/quickstart --tasks math,math_extrap,output_pred,code_gen,humaneval
python -m experiments.eval --workdir runs/quickstart --task_file my_tasks.jsonl
python -m experiments.eval --verify_tasks my_tasks.jsonl      # reference solutions vs tests, no model
"""

import sys

from absl import flags

from mixlab import cli, configlib
from mixlab.evals import likelihood, run, suite
from mixlab.metric_writer import logger

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir holding config.json and checkpoints/.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_ALL_STEPS = flags.DEFINE_bool("all_steps", False, "Evaluate every checkpoint kept.")
_TASKS = flags.DEFINE_list("tasks", [], f"Generation suites: {', '.join(suite.SUITES)} or all.")
_TASK_FILE = flags.DEFINE_string("task_file", None, "JSON-lines task file (exact-match or execution tasks).")
_VERIFY = flags.DEFINE_string("verify_tasks", None, "Check a task file's reference solutions and exit.")
_SAMPLES = flags.DEFINE_integer("num_samples", 1, "Completions per task (pass@k needs k of them).")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "0 is greedy.")
_PER_CELL = flags.DEFINE_integer("math_per_cell", None, "Math suites: at most N per (family, difficulty).")
cli.directory_flags("workdir", must_exist=True)


def main() -> None:
    if _VERIFY.value:
        report = suite.verify_tasks(_VERIFY.value)
        print(suite.format_report(report))
        sys.exit(1 if report["counts"]["fail"] or report["counts"]["malformed"] else 0)
    if not _WORKDIR.value:
        raise configlib.ConfigError("--workdir is required (except with --verify_tasks)")
    tasks, problems = ([], [])
    if _TASKS.value or _TASK_FILE.value:
        tasks, problems = suite.load(_TASKS.value, _TASK_FILE.value, math_per_cell=_PER_CELL.value)
    for problem in problems:
        logger.warning("skipped %s", problem)
    steps = run.checkpoint_steps(_WORKDIR.value) if _ALL_STEPS.value else [_STEP.value]
    for step in steps:
        restored = run.restore(_WORKDIR.value, step)
        path, results = run.evaluate_loss(restored)
        for domain, r in results.items():
            print(f"{domain:>12}: loss {r['loss']:.4f}  bpb {r['bpb']:.4f}  ({r['tokens']} tokens)")
        for line in likelihood.summary(path):  # answer likelihoods (config eval.answers), if any
            print(line)
        print(f"eval: {path}")
        if tasks:
            path, results = run.evaluate_tasks(
                restored, tasks, num_samples=_SAMPLES.value, temperature=_TEMPERATURE.value
            )
            print(suite.format_summary(results))
            print(f"tasks: {path}")


if __name__ == "__main__":
    cli.run(main)
