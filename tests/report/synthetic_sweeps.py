"""Synthetic sweep directories written as the sweep runner, evaluation and routing analysis write them.

Effects are set per arm and metric: `bpb/<domain>` shifts every sequence's bits per byte (+ = worse);
answer-level metrics (`answer_bpb/<suite>`, `choice_prob/<suite>`, ...) shift every item's value;
`tasks:<suite>` turns that many wrong items right (- : right items wrong); "noise" changes items both
ways with a zero net effect (so an interval around it contains 0). Every run also gets a seed offset
that differs between arms, alternating in sign over seeds (so seed-level intervals have width and an
arm without an effect is not significant).
"""

import json
import math
import os

import numpy as np

DOMAINS = ("text", "code", "code_text", "math", "math_traces", "code_math")
ARMS = (
    "full",
    "no_code",
    "no_math",
    "scaffold",
    "no_code_fill_text",
    "no_code_hold_math",
    "code_50",
    "full_aa",
)
STUDY = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "code_math_study.py")
CONFIG = f"{os.path.normpath(STUDY)}:scale=cpu"
# Answer-level metrics and their base values (bpb: lower is better; choice_prob: higher).
ANSWERS = {
    "answer_bpb/math": 1.5,
    "choice_prob/math": 0.4,
    "answer_bpb/math_extrap": 2.0,
    "solution_bpb/math_extrap": 1.2,
    "answer_bpb/output_pred": 1.8,
    "solution_bpb/code_gen": 1.6,
    "choice_prob/output_pred": 0.35,
}
N_ANS = 30
SHARES = {  # requested token shares per arm
    "full": {"text": 0.4, "code": 0.2, "code_text": 0.15, "math": 0.15, "code_math": 0.1},
    "no_code": {"text": 0.5, "code_text": 0.1875, "math": 0.1875, "code_math": 0.125},
    "no_math": {"text": 0.47, "code": 0.235, "code_text": 0.177, "code_math": 0.118},
    "scaffold": {"text": 0.4, "code": 0.2, "code_text": 0.15, "math_traces": 0.15, "code_math": 0.1},
    "no_code_fill_text": {"text": 0.6, "code_text": 0.15, "math": 0.15, "code_math": 0.1},
    "no_code_hold_math": {"text": 0.47, "code_text": 0.2, "math": 0.15, "code_math": 0.18},
    "code_50": {"text": 0.25, "code": 0.5, "code_text": 0.094, "math": 0.094, "code_math": 0.062},
}
SHARES["full_aa"] = SHARES["full"]
SUITES = {
    "math": ("linear", "gcd"),
    "math_extrap": ("linear",),
    "output_pred": ("string",),
    "code_gen": ("list",),
}
STEPS = (50, 100)
N_SEQ, N_ITEMS, BYTES = 32, 40, 200


def dump(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def base_bpb(domain: str) -> np.ndarray:
    rng = np.random.default_rng(DOMAINS.index(domain))
    return 2.0 + 0.3 * rng.standard_normal(N_SEQ)


def seed_offset(arm: str, seed: int) -> float:
    """A run's seed effect: +-0.01 alternating over seeds, scaled by an arm-dependent factor."""
    return 0.01 * (-1) ** seed * (1 + sum(map(ord, arm)) % 7) / 7


def answer_items(arm: str, seed: int, metric: str, effects: dict) -> dict:
    rng = np.random.default_rng(list(ANSWERS).index(metric))
    base = ANSWERS[metric] * (1 + 0.1 * rng.standard_normal(N_ANS))
    e = effects.get(arm, {}).get(metric, 0.0)
    if e == "noise":
        e = 0.05 * np.where(np.arange(N_ANS) % 2, 1.0, -1.0)
    x = base + e + seed_offset(arm, seed)
    field = "prob" if metric.startswith("choice_prob") else "bpb"
    suite = metric.split("/")[1]
    items = {f"{suite}/x/{i}/1": {field: float(v)} for i, v in enumerate(x)}
    return {"items": items, "mean": float(np.mean(x)), "chance": 0.25 if field == "prob" else None}


def seq_bpb(arm: str, seed: int, domain: str, effects: dict, step: int = STEPS[-1]) -> np.ndarray:
    """The per-sequence bpb a run scores: base + effect + a seed offset, later steps lower."""
    x = base_bpb(domain) + seed_offset(arm, seed) + 0.5 * (STEPS[-1] - step) / STEPS[-1]
    e = effects.get(arm, {}).get(f"bpb/{domain}", 0.0)
    if e == "noise":
        return x + 0.05 * np.where(np.arange(N_SEQ) % 2, 1.0, -1.0)
    return x + e


def task_scores(arm: str, suite: str, effects: dict) -> list[float]:
    """Item i is right when i % 4 == 0 (25%), then the arm's effect flips items."""
    s = (np.arange(N_ITEMS) % 4 == 0).astype(float)
    e = effects.get(arm, {}).get(f"tasks:{suite}", 0)
    wrong, right = np.flatnonzero(s == 0), np.flatnonzero(s == 1)
    if e == "noise":
        s[wrong[:3]], s[right[:3]] = 1.0, 0.0
    elif e > 0:
        s[wrong[:e]] = 1.0
    elif e < 0:
        s[right[:-e]] = 0.0
    return s.tolist()


def write_run(
    root,
    arm,
    seed,
    effects=None,
    *,
    seq=True,
    tasks=True,
    answers=True,
    final_eval=True,
    steps=STEPS,
    suites=SUITES,
):
    effects = effects or {}
    wd = os.path.join(root, arm, f"seed_{seed}")
    final = steps[-1]
    shares = SHARES.get(arm, SHARES["full"])
    dump(
        os.path.join(wd, "config.json"),
        {
            "seed": seed,
            "data": {"weights": shares, "arm": arm, "seq_len": 64},
            "train": {"steps": final, "batch_size": 4},
        },
    )
    domains = {}
    for i, d in enumerate(DOMAINS):
        req = shares.get(d, 0.0)
        domains[d] = {
            "id": i,
            "requested_share": req,
            "realised_share": req + (0.001 * seed if req else 0.0),
            "tokens_run_requested": req * final * 256,
            "tokens_run_delta": 0.0,
            "epochs": req,
        }
    audit = {"arm": arm, "run_steps": final, "run_tokens": final * 256, "sequences": 1000}
    dump(os.path.join(wd, "data_audit.json"), {**audit, "max_window_error_pp": 0.1, "domains": domains})
    with open(os.path.join(wd, "metrics.jsonl"), "w") as f:
        for step in range(10, final + 1, 10):
            f.write(json.dumps({"step": step, "train/loss": 3.0 - step / 100 + 0.01 * seed}) + "\n")
    for step in steps if final_eval else steps[:-1]:
        result = {}
        for d in DOMAINS:
            bpb = seq_bpb(arm, seed, d, effects, step)
            nats = (bpb * math.log(2) * BYTES).tolist()
            result[d] = {
                "loss": float(np.sum(nats) / (N_SEQ * 100)),
                "bpb": float(np.sum(nats) / (math.log(2) * BYTES * N_SEQ)),
                "tokens": N_SEQ * 100,
                "bytes": N_SEQ * BYTES,
            }
            if seq:
                result[d].update(seq_nats=nats, seq_bytes=[BYTES] * N_SEQ, seq_tokens=[100] * N_SEQ)
        out = {"step": step, "domains": result}
        if answers:
            out["answers"] = {m: answer_items(arm, seed, m, effects) for m in ANSWERS}
        dump(os.path.join(wd, "eval", f"step_{step}.json"), out)
    if tasks and final_eval:
        items = []
        for suite, families in suites.items():
            scores = task_scores(arm, suite, effects)
            for i, sc in enumerate(scores):
                fam = families[i % len(families)]
                items.append(
                    {
                        "id": f"{suite}-{i}",
                        "suite": suite,
                        "family": fam,
                        "metric": f"{suite}/{fam}",
                        "score": sc,
                    }
                )
        dump(
            os.path.join(wd, "eval", f"tasks_step_{final}.json"),
            {"step": final, "summary": {}, "items": items},
        )
    return wd


def competition(g_math: float, g_code_text: float, seed: int, layers: int = 2) -> dict:
    """The competition entry of no_code_hold_math (intervention code) with g(math <- code) and
    g(code_text <- code), each moved by 0.02 * (-1)^seed."""
    effects = {}
    for a, g in (("math", g_math), ("code_text", g_code_text)):
        g = g + 0.02 * (-1) ** seed
        effects[a] = {
            "delta_loss": 0.2 * g,
            "noise_tol": 0.01,
            "paired": True,
            "g": g,
            "sign": float(np.sign(g)),
        }
    index = {a: [0.5 * e["sign"]] * layers for a, e in effects.items()}
    return {"intervention": "code", "delta_share": -0.2, "effects": effects, "index_layer_domain": index}


def write_routing(root, seed, jsd: dict, *, reference="full", layers=2, names=None, comp=(-0.4, 0.4)):
    """routing/seed_<seed>/routing.json with cross-arm JSD `jsd[arm][domain]` (each layer: v ± 0.01)
    and the competition index of no_code_hold_math (`comp`: g of math and code_text; None: none)."""
    names = names or {}
    out = os.path.join(root, "routing", f"seed_{seed}")
    arms = [reference, *jsd]
    runs = {}
    for arm in arms:
        lay = {
            str(i): {
                "all": {"saturation": 0.9},
                "overlap": {
                    "code": {"math": 0.25 + 0.1 * i},
                    "math": {"code": 0.25 + 0.1 * i},
                    "code_text": {"code": 0.75},
                },
                "jsd": {"code": {"math": 0.4}},
            }
            for i in range(layers)
        }
        runs[names.get(arm, arm)] = {
            "workdir": os.path.join(root, arm, f"seed_{seed}"),
            "steps": {"100": {"layers": lay}},
        }
    cross = {
        names.get(arm, arm): {
            "100": {
                "reference_step": 100,
                "layers": {
                    str(i): {d: v + (0.01 if i else -0.01) for d, v in per.items()} for i in range(layers)
                },
            }
        }
        for arm, per in jsd.items()
    }
    report = {
        "meta": {"reference": names.get(reference, reference)},
        "warnings": [],
        "runs": runs,
        "cross_arm_jsd": cross,
        "cross_arm_jsd_train_counts": {},
        "competition": {}
        if comp is None
        else {names.get("no_code_hold_math", "no_code_hold_math"): {"100": competition(*comp, seed, layers)}},
    }
    dump(os.path.join(out, "routing.json"), report)
    os.makedirs(os.path.join(out, "plots"), exist_ok=True)
    with open(os.path.join(out, "plots", "cross_arm_jsd_step100.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
    return out


def routing_jsd(removed_largest: bool) -> dict:
    """JSD per arm and domain where each removed domain is (or is not) the one that shifted most."""
    out = {}
    for arm, removed in (("no_code", "code"), ("no_math", "math")):
        per = {d: 0.02 + 0.001 * i for i, d in enumerate(DOMAINS)}
        per[removed] = 0.2 if removed_largest else 0.001
        out[arm] = per
    out["full_aa"] = {d: 0.01 for d in DOMAINS}  # the seed-to-seed JSD
    return out


def make_sweep(root, effects=None, *, arms=ARMS, seeds=(0, 1, 2, 3, 4), routing=True, config=CONFIG, **kw):
    if config:
        dump(os.path.join(root, "sweep.json"), {"config": config})
    for seed in seeds:
        for arm in arms:
            write_run(root, arm, seed, effects, **kw)
        if routing:
            write_routing(root, seed, {a: v for a, v in routing_jsd(True).items() if a in arms})
    return root
