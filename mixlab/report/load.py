"""Reading a sweep directory: its runs (config, metrics, audit, evals) and the checks on them.

`DIR/<name>/seed_<s>/` is a run (an ordinary training workdir); `DIR/routing/` is not. A run's final
step is its audit's `run_steps` (a `:hold` arm trains fewer steps) or else `config.train.steps`. A run
without `eval/step_<final>.json` is skipped with a warning naming it, unless it belongs to the reference
arm (then the report cannot be made: an error). Every JSON read that is not valid is an error naming the
file, except a torn last line of `metrics.jsonl` (a run still writing it), which is a warning.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

from mixlab import configlib
from mixlab.configlib import ConfigError

ROUTING_DIR = "routing"  # DIR/routing/seed_<s>/: experiments.routing output, not a run
SWEEP_FILE = "sweep.json"  # {"config": "FILE[:ARGS]"}: written by the sweep runner, read by the report


@dataclasses.dataclass
class RunData:
    arm: str  # the directory name under the sweep: an arm or a code-share point `code_<P>`
    seed: int
    workdir: str
    config: dict
    final_step: int
    audit: dict | None  # data_audit.json
    evals: dict[int, dict]  # step -> {domain: {"loss", "bpb", ..., "seq_*"?}}
    answers: dict[int, dict]  # step -> the "answers" section of eval/step_<N>.json (answer-level metrics)
    tasks: dict | None  # eval/tasks_step_<final>.json
    train_loss: float | None  # the last logged train/loss
    train_step: int | None  # its step

    @property
    def name(self) -> str:
        return f"{self.arm}/seed_{self.seed}"

    @property
    def final(self) -> dict:
        return self.evals[self.final_step]

    def path(self, *parts: str) -> str:
        return os.path.join(self.workdir, *parts)

    @property
    def final_answers(self) -> dict:
        return self.answers.get(self.final_step, {})

    @property
    def tokens(self) -> int | None:
        if self.audit and "run_tokens" in self.audit:
            return int(self.audit["run_tokens"])
        try:
            return (
                self.final_step
                * int(self.config["train"]["batch_size"])
                * int(self.config["data"]["seq_len"])
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclasses.dataclass
class Sweep:
    root: str
    reference: str
    runs: list[RunData]  # usable runs only
    skipped: list[str]  # the runs left out, each a line naming it and why
    warnings: list[str]

    @property
    def arms(self) -> list[str]:
        """Reference first, then named arms alphabetically, then `code_<P>` points by P."""
        names = {r.arm for r in self.runs}

        def key(a: str):
            m = re.fullmatch(r"code_(\d+(?:\.\d+)?)", a)
            return (a != self.reference, m is not None, float(m[1]) if m else 0.0, a)

        return sorted(names, key=key)

    def of(self, arm: str) -> list[RunData]:
        return sorted((r for r in self.runs if r.arm == arm), key=lambda r: r.seed)


def read_json(path: str) -> dict:
    """A JSON file; invalid JSON is a ConfigError naming the file."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror})") from None


def _last_train_loss(path: str, warnings: list[str]) -> tuple[float | None, int | None]:
    loss = step = None
    if not os.path.exists(path):
        return None, None
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                warnings.append(f"{path}:{n}: not valid JSON (a run still writing?); line ignored")
                continue
            if isinstance(row, dict) and isinstance(row.get("train/loss"), int | float):
                loss, step = float(row["train/loss"]), row.get("step")
    return loss, step


def final_step(config: dict, audit: dict | None) -> int:
    if audit and isinstance(audit.get("run_steps"), int):
        return audit["run_steps"]
    train, data = config.get("train", {}), config.get("data", {})
    per_step = int(train.get("batch_size", 1)) * int(data.get("seq_len", 1))
    return configlib.to_steps(train["steps"], total_steps=None, tokens_per_step=per_step)


def _check_eval(path: str, result: dict) -> dict:
    domains = result.get("domains") if isinstance(result, dict) else None
    if not isinstance(domains, dict) or not all(
        isinstance(v, dict)
        and isinstance(v.get("loss"), int | float)
        and isinstance(v.get("bpb"), int | float)
        for v in domains.values()
    ):
        raise ConfigError(f"{path}: not a loss eval (needs 'domains': {{domain: {{'loss', 'bpb', ...}}}})")
    for domain, v in domains.items():
        lengths = {len(v[k]) for k in ("seq_nats", "seq_bytes") if isinstance(v.get(k), list)}
        if len(lengths) > 1:
            raise ConfigError(f"{path}: domain {domain!r} has seq_nats and seq_bytes of different lengths")
    return domains


def load_run(root: str, arm: str, seed: int, warnings: list[str]) -> RunData | str:
    """One run, or why it cannot be used (no config, no final eval) as a line naming it."""
    workdir = os.path.join(root, arm, f"seed_{seed}")
    name = f"{arm}/seed_{seed}"
    config_path = os.path.join(workdir, "config.json")
    if not os.path.exists(config_path):
        return f"{name}: no config.json in {workdir} (not started?)"
    config = read_json(config_path)
    audit_path = os.path.join(workdir, "data_audit.json")
    audit = read_json(audit_path) if os.path.exists(audit_path) else None
    try:
        final = final_step(config, audit)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{config_path}: no usable train.steps ({e})") from None
    evals, answers = {}, {}
    eval_dir = os.path.join(workdir, "eval")
    for f in sorted(os.listdir(eval_dir)) if os.path.isdir(eval_dir) else ():
        if m := re.fullmatch(r"step_(\d+)\.json", f):
            path = os.path.join(eval_dir, f)
            result = read_json(path)
            evals[int(m[1])] = _check_eval(path, result)
            if isinstance(result.get("answers"), dict):
                answers[int(m[1])] = result["answers"]
    if final not in evals:
        path = os.path.join(eval_dir, f"step_{final}.json")
        return f"{name}: no final eval ({path} missing; eval steps found: {sorted(evals)})"
    tasks_path = os.path.join(eval_dir, f"tasks_step_{final}.json")
    tasks = read_json(tasks_path) if os.path.exists(tasks_path) else None
    if tasks is not None and not isinstance(tasks.get("items"), list):
        raise ConfigError(f"{tasks_path}: no 'items' list (not a task eval of mixlab.evals.suite.write)")
    loss, step = _last_train_loss(os.path.join(workdir, "metrics.jsonl"), warnings)
    return RunData(arm, seed, workdir, config, final, audit, evals, answers, tasks, loss, step)


def _item_keys(run: RunData) -> dict[str, object]:
    """What a run's final evals cover: per domain the number of sequences, and the task ids."""
    keys: dict[str, object] = {
        f"domain {d}": len(v["seq_nats"]) if isinstance(v.get("seq_nats"), list) else "aggregate only"
        for d, v in sorted(run.final.items())
    }
    keys["domains"] = sorted(run.final)
    if run.tasks is not None:
        keys["task items"] = sorted(str(it.get("id")) for it in run.tasks["items"])
    return keys


def check_items(sweep: Sweep) -> None:
    """The seeds of an arm must evaluate the same items (domains, sequences, task ids)."""
    for arm in sweep.arms:
        runs = sweep.of(arm)
        first = _item_keys(runs[0])
        for other in runs[1:]:
            keys = _item_keys(other)
            for what in first.keys() & keys.keys():
                if first[what] != keys[what]:
                    raise ConfigError(
                        f"arm {arm!r}: {runs[0].name} and {other.name} evaluate different items ({what}): "
                        f"{runs[0].path('eval')} vs {other.path('eval')}"
                    )


def load(root: str, reference: str) -> Sweep:
    """Every run of the sweep at `root`; errors for a missing directory, no runs or no reference."""
    if not os.path.isdir(root):
        raise ConfigError(f"--sweep_dir {root}: no such directory")
    found = []
    for arm in sorted(os.listdir(root)):
        if arm == ROUTING_DIR or not os.path.isdir(os.path.join(root, arm)):
            continue
        for sub in sorted(os.listdir(os.path.join(root, arm))):
            if (m := re.fullmatch(r"seed_(\d+)", sub)) and os.path.isdir(os.path.join(root, arm, sub)):
                found.append((arm, int(m[1])))
    if not found:
        raise ConfigError(f"--sweep_dir {root}: no runs (expected <name>/seed_<s>/ run directories)")
    if reference not in (arms := sorted({a for a, _ in found})):
        raise ConfigError(f"reference arm {reference!r} has no runs under {root} (arms: {', '.join(arms)})")
    warnings: list[str] = []
    runs, skipped = [], []
    for arm, seed in found:
        run = load_run(root, arm, seed, warnings)
        if isinstance(run, str) and arm == reference:
            raise ConfigError(f"{run}: a run of the reference arm, which the report needs")
        if isinstance(run, str):
            skipped.append(run)
        else:
            runs.append(run)
    sweep = Sweep(root, reference, runs, skipped, warnings)
    check_items(sweep)
    return sweep
