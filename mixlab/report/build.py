"""`build(sweep_dir, ...)`: read the sweep, compute every section and the claims' verdicts, write the files.

The claims come from the study config (`--config FILE[:ARGS]`, or the sweep's sweep.json): its
`claims(arg)`; `--smaller DIR` adds the decision accuracy of a smaller-scale sweep of the same study.

DIR/report.json   everything report.md shows, machine-readable (no NaN: undefined values are null)
DIR/report.md     rendered from report.json's dict (markdown.py)
DIR/results.csv   one row per (arm, seed, step, kind, metric) (results.py)
DIR/figures/      capability.png, loss_curves.png, audit.png, code_share.png, routing_jsd.png
"""

from __future__ import annotations

import json
import os

from mixlab import configlib
from mixlab.analysis.export import clean
from mixlab.configlib import ConfigError
from mixlab.report import (
    baselines,
    claims,
    claims_text,
    decision,
    figures,
    load,
    markdown,
    results,
    routing_summary,
    scores,
    sections,
)


def study(sweep_dir: str, config: str | None) -> tuple[str, tuple, str]:
    """(config string, the study's claims, its A/A arm) from `config` or the sweep's sweep.json."""
    if not os.path.isdir(sweep_dir):
        raise ConfigError(f"--sweep_dir {sweep_dir}: no such directory")
    if not config:
        path = os.path.join(sweep_dir, load.SWEEP_FILE)
        if not os.path.exists(path):
            raise ConfigError(
                f"--sweep_dir {sweep_dir}: no {load.SWEEP_FILE}; give --config FILE[:ARGS], the study config "
                "whose claims(arg) the report tests"
            )
        config = load.read_json(path).get("config") or ""
    file, _, arg = config.partition(":")
    module = configlib.load_module(file, needs="claims")
    with configlib.errors_as_config_errors():
        return config, tuple(module.claims(arg or None)), getattr(module, "AA_ARM", "")


def compute(
    sweep_dir: str,
    reference: str = "full",
    confidence: float = 0.95,
    replicates: int = 2000,
    config: str | None = None,
    smaller: tuple[str, ...] = (),
) -> tuple[dict, load.Sweep, set[str]]:
    """The report as a JSON-ready dict (figures not drawn yet), the sweep, the per-sequence bpb domains."""
    if not 0 < confidence < 1:
        raise ConfigError(f"--confidence {confidence}: must be between 0 and 1 (e.g. 0.95)")
    config, claim_list, aa_arm = study(sweep_dir, config)
    sweep = load.load(sweep_dir, reference)
    seq_domains = scores.per_sequence_domains(sweep)
    ro = routing_summary.load(sweep_dir)
    tested = claims.evaluate(claim_list, sweep, seq_domains, ro, confidence=confidence, aa_arm=aa_arm)
    rates = baselines.suite_rates(sweep.of(reference)[0].tasks)
    claims.reword(tested["claims"], {s: r["rate"] for s, r in rates.items() if r})
    code_share = sections.code_share(sweep)
    summary = claims_text.summary(tested)
    if sentence := sections.code_share_sentence(code_share):
        summary.append(sentence)
    seeds = {a: len(sweep.of(a)) for a in sweep.arms}
    if max(seeds.values()) < 3:
        summary.append(
            f"This sweep has at most {max(seeds.values())} seed(s) per arm: no seed-level interval, so "
            "no claim can be decided here; the capability tables' bootstrap intervals cover item "
            "sampling and are exploratory."
        )
    primaries = list(
        dict.fromkeys(c["primary"]["metric"] for c in tested["claims"] if "metric" in c.get("primary", {}))
    )
    decisions = []
    for other in smaller:
        small = load.load(other, reference)
        decisions.append(
            decision.compare(sweep, seq_domains, small, scores.per_sequence_domains(small), primaries)
        )
    report = {
        "sweep_name": os.path.basename(os.path.normpath(os.path.abspath(sweep_dir))),
        "command": (
            f"python -m experiments.report --sweep_dir {sweep_dir} --config {config} --reference "
            f"{reference} --confidence {confidence:g}" + "".join(f" --smaller {d}" for d in smaller)
        ),
        "config": config,
        "reference": reference,
        "confidence": confidence,
        "bootstrap_replicates": replicates,
        "summary": summary,
        "claims": tested["claims"],
        "aa": tested["aa"],
        "aa_arm": aa_arm,
        "holm": {"alpha": tested["alpha"], "m": tested["holm_m"]},
        "task_rates": rates,
        "decision": decisions,
        "runs": sections.runs(sweep),
        "capability": sections.capability_section(sweep, seq_domains, confidence, replicates),
        "loss_curves": sections.loss_curves(sweep),
        "audit": sections.audit(sweep),
        "code_share": code_share,
        "routing": ro,
        "warnings": sweep.warnings + ro["warnings"],
        "figures": {},
    }
    return clean(report), sweep, seq_domains


def draw(report: dict, out_dir: str) -> dict[str, str]:
    """Draws every figure under out_dir/figures/; returns {name: path relative to out_dir}."""
    folder = os.path.join(out_dir, "figures")
    cap = [t for t in (report["capability"]["bpb"], report["capability"]["tasks"]) if t]
    audit_shares = {
        arm: {
            d: {"requested": v["requested_share"], "realised": v["realised_share"]}
            for d, v in a["domains"].items()
            if d in report["audit"]["domains"]
        }
        for arm, a in report["audit"]["arms"].items()
    }
    cs = report["code_share"]
    paths = {
        "capability": figures.capability(cap, os.path.join(folder, "capability.png")),
        "loss_curves": figures.loss_curves(report["loss_curves"], os.path.join(folder, "loss_curves.png")),
        "audit": figures.audit(audit_shares, os.path.join(folder, "audit.png")),
        "code_share": figures.code_share(
            cs["points"], cs["family"], cs["metrics"], os.path.join(folder, "code_share.png")
        ),
        "routing_jsd": figures.routing_jsd(
            report["routing"]["seeds"], os.path.join(folder, "routing_jsd.png")
        ),
    }
    return {k: os.path.relpath(p, out_dir) for k, p in paths.items() if p}


def build(
    sweep_dir: str,
    reference: str = "full",
    confidence: float = 0.95,
    replicates: int = 2000,
    config: str | None = None,
    smaller: tuple[str, ...] = (),
) -> dict:
    """Writes report.json, report.md, results.csv and figures/ into sweep_dir; returns the report."""
    report, sweep, seq_domains = compute(sweep_dir, reference, confidence, replicates, config, smaller)
    report["figures"] = draw(report, sweep_dir)
    with open(os.path.join(sweep_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(sweep_dir, "report.md"), "w") as f:
        f.write(markdown.render(report))
    results.write(os.path.join(sweep_dir, "results.csv"), results.rows(sweep, seq_domains, report["routing"]))
    return report
