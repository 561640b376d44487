"""Comparisons across the checkpoints of a run (router saturation) and across arms (JSD, competition).

Whatever cannot be compared (different expert counts, a domain one run lacks, a step missing from a
series, different sampled tokens) is skipped with a warning naming the run, step and domain, and the
comparable part is still computed. Warnings are appended to the list the caller passes.

Competition/synergy index (needs a reference arm and an arm that changes the mixture). For arm A
against reference R, let b be the intervention domain, the one whose token share changed most,
Δr_b = r_b^A - r_b^R (resolved mixture shares), and for every other domain a let
ΔL_a = L_a^A - L_a^R (mean held-out nll on the same sampled tokens, nats/token). Then

  g(a <- b)    = -ΔL_a / Δr_b        > 0: more b lowers a's loss (synergy); < 0: competition
  s(a <- b)    = sign(g), 0 when |ΔL_a| <= 2 se(ΔL_a) (within noise); se is paired (the standard
                 error of the mean per-token difference) when both runs routed the same tokens, else
                 sqrt(se_A^2 + se_R^2)
  CSI_l(a, b)  = J_l^R(a, b) * s(a <- b)  in [-1, 1]

CSI is near +1 when a and b share experts in the reference run and b helps a (synergy through shared
experts), near -1 when they share experts and b hurts a (competition for them), and 0 when they use
separate experts or b has no measurable effect; NaN when J is undefined (no expert of either domain
above the K / E (1 + delta) threshold). It is a linearised, one-arm reading of the data-mixing law
L_a(r) = c_a + k_a exp(sum_j t_aj r_j): g(a <- b) estimates -dL_a/dr_b, whose sign is that of -t_ab.
"""

from __future__ import annotations

import math

import numpy as np

from mixlab.analysis import metrics
from mixlab.analysis.trace import Trace


def common_domains(
    names_a: tuple[str, ...],
    tokens_a: np.ndarray,
    names_b: tuple[str, ...],
    tokens_b: np.ndarray,
    *,
    runs: tuple[str, str],
    where: str,
    warnings: list[str],
) -> list[str]:
    """Domains with tokens in both runs (in `names_a` order); one warning per domain left out."""
    have_a = {n for n, t in zip(names_a, tokens_a, strict=True) if t > 0}
    have_b = {n for n, t in zip(names_b, tokens_b, strict=True) if t > 0}
    for name in sorted(have_a ^ have_b):
        lacking = runs[0] if name not in have_a else runs[1]
        warnings.append(f"{where}: domain {name!r} has no tokens in {lacking}; skipped")
    return [n for n in names_a if n in have_a & have_b]


def cross_arm_jsd(
    ref: dict, arm: dict, *, ref_name: str, arm_name: str, step_label: str, warnings: list[str]
) -> dict[int, dict[str, float]]:
    """JSD_{l,d}(arm, reference) in bits, {layer: {domain: value}}, over the comparable part.

    `ref` and `arm` are `metrics.count_metrics` results plus `domain_names`."""
    where = f"cross-arm {arm_name} vs {ref_name} at {step_label}"
    p_ref, p_arm = ref["activation_NDE"], arm["activation_NDE"]
    if p_ref.shape[-1] != p_arm.shape[-1]:
        warnings.append(
            f"{where}: {arm_name} has {p_arm.shape[-1]} experts, {ref_name} {p_ref.shape[-1]}; "
            "distributions over different experts are not compared"
        )
        return {}
    layers = min(p_ref.shape[0], p_arm.shape[0])
    if p_ref.shape[0] != p_arm.shape[0]:
        warnings.append(
            f"{where}: {arm_name} has {p_arm.shape[0]} MoE layers, {ref_name} {p_ref.shape[0]}; "
            f"comparing the first {layers} by position"
        )
    names = common_domains(
        ref["domain_names"],
        ref["tokens_D"],
        arm["domain_names"],
        arm["tokens_D"],
        runs=(ref_name, arm_name),
        where=where,
        warnings=warnings,
    )
    ia = [ref["domain_names"].index(n) for n in names]
    ib = [arm["domain_names"].index(n) for n in names]
    j_ND = metrics.jsd(p_ref[:layers, ia], p_arm[:layers, ib])
    return {layer: dict(zip(names, map(float, j_ND[layer]), strict=True)) for layer in range(layers)}


def saturation_series(traces: dict[int, Trace], *, run: str, warnings: list[str]) -> dict[int, dict]:
    """Sat_l(t_i) against the last step of the series: {step: {"overall_N", "domain_ND"}}."""
    if len(traces) < 2:
        return {}
    final_step = max(traces)
    final = traces[final_step]
    out = {}
    for step, tr in sorted(traces.items()):
        if not tr.same_tokens(final) or tr.experts_NTK.shape != final.experts_NTK.shape:
            warnings.append(
                f"saturation {run}: step {step} routed other tokens or another model shape than "
                f"final step {final_step}; skipped (collect both with the same --tokens_per_domain)"
            )
            continue
        overall_N, domain_ND = metrics.saturation(
            tr.experts_NTK, final.experts_NTK, tr.domain_T, tr.num_domains
        )
        out[step] = {"overall_N": overall_N, "domain_ND": domain_ND}
    return out


def step_pairs(
    ref_steps: list[int], arm_steps: list[int], *, ref_name: str, arm_name: str, warnings: list[str]
) -> list[tuple[int, int]]:
    """(reference step, arm step) pairs to compare: the common steps; with none in common, the last
    step of each (a warning says so). A reference step the arm lacks is named in a warning."""
    common = sorted(set(ref_steps) & set(arm_steps))
    for s in sorted(set(ref_steps) - set(arm_steps)):
        warnings.append(f"{arm_name} has no step {s} (has {sorted(arm_steps)}); skipped at that step")
    if common:
        return [(s, s) for s in common]
    if ref_steps and arm_steps:
        warnings.append(
            f"{arm_name} and {ref_name} share no step; comparing their last steps "
            f"{max(arm_steps)} and {max(ref_steps)}"
        )
        return [(max(ref_steps), max(arm_steps))]
    return []


def competition(
    ref: dict,
    arm: dict,
    *,
    ref_name: str,
    arm_name: str,
    step_label: str,
    warnings: list[str],
) -> dict | None:
    """The competition/synergy index of arm vs reference (module docstring). `ref`/`arm` hold
    `mixture` ({domain: share}), `loss` ({domain: {"loss", "loss_se"}}), `domain_names` and, for the
    reference, `overlap_NDD` and optionally `paired_se` ({domain: se of the mean difference}). None
    when the arms have the same mixture."""
    where = f"competition {arm_name} vs {ref_name} at {step_label}"
    domains = sorted(set(ref["mixture"]) | set(arm["mixture"]))
    shift = {d: arm["mixture"].get(d, 0.0) - ref["mixture"].get(d, 0.0) for d in domains}
    b = max(domains, key=lambda d: abs(shift[d]))
    if abs(shift[b]) < 1e-9:
        warnings.append(f"{where}: same mixture as the reference; no cross-domain effect to measure")
        return None
    if b not in ref["domain_names"]:
        warnings.append(f"{where}: intervention domain {b!r} not in the reference trace")
        return None
    effects, index = {}, {}
    overlap_NDD = ref["overlap_NDD"]
    ib = ref["domain_names"].index(b)
    for a in ref["domain_names"]:
        if a == b:
            continue
        la, lr = arm["loss"].get(a), ref["loss"].get(a)
        if la is None or lr is None:
            warnings.append(f"{where}: domain {a!r} has no loss in one of the runs; skipped")
            continue
        dl = la["loss"] - lr["loss"]
        se = ref.get("paired_se", {}).get(a)
        if se is None:
            se = math.sqrt(np.nan_to_num(la["loss_se"]) ** 2 + np.nan_to_num(lr["loss_se"]) ** 2)
        tol = 2 * se
        g = -dl / shift[b]
        sign = 0.0 if abs(dl) <= tol else float(np.sign(g))
        effects[a] = {"delta_loss": dl, "noise_tol": tol, "paired": a in ref.get("paired_se", {}), "g": g}
        effects[a]["sign"] = sign
        ia = ref["domain_names"].index(a)
        index[a] = overlap_NDD[:, ia, ib] * sign
    return {"intervention": b, "delta_share": shift[b], "effects": effects, "index_layer_domain": index}
