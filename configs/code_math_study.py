"""The code/math data-mixture study (arXiv:2605.19762) and its de-confounded arms, at four scales.

One fixed token budget for every arm; arms differ only by the intervention on the base mixture:
  full                no intervention
  no_code             remove pure code, code_text kept; proportional renormalisation (the paper)
  no_math             remove answer-only math, proportional
  scaffold            replace answer-only math by worked traces at equal math tokens
  no_code_fill_text   remove code, its share to text only (math tokens unchanged)
  no_code_hold_math   remove code, its share to every domain but math (math tokens unchanged)
  code_<P>            code share P% (0, 10, 25, 50), the rest scaled in proportion
A run: `--config configs/code_math_study.py:scale=cpu,arm=no_code,seed=1`. The whole study (train,
evaluate, analyse routing, report: WORKDIR/report.md), `make quickstart` at the runlocal scale:

  python -m experiments.sweep --config configs/code_math_study.py:scale=runlocal --workdir runs/study \
      --parallel 2

Scales (runtime of one run / of the sweep `sweep(add)` expands; model FLOPs from 6·N·tokens):
  runlocal  micro MoE (e4k2, 0.69M active), 200 steps x 8 x 256 = 0.4M tokens; full, no_code, scaffold,
            no_code_fill_text x 1 seed; the sweep with evaluation, routing and report in under
            10 minutes on 2 CPU cores (~7e12 FLOPs in all)
  cpu       micro MoE (e8k2, 0.69M active), 400 steps x 16 x 256 = 1.6M tokens; 6 arms + code shares
            10/25/50% (0% is no_code's mixture, 20% full's) x 2 seeds = 18 runs; ~6 min per run
            (2 at a time), about an hour on 2 quiet CPU cores (~1.2e14 FLOPs in all)
  gpu       small MoE (d512, 4 layers, e8k2), 20k steps x 64 x 1024 = 1.3B tokens per run, bf16, one
            H200-class GPU: ~2 h per run (~1.4e17 FLOPs)
  tpu       the paper's model: 20 layers, d_model 2048, 16 experts top-2, bf16, 24k steps x 512 x 2048 =
            25B tokens per run (~5e20 FLOPs), a v5e-256 slice for ~1 day per run; needs a mixture file of
            real corpora (`data.mixture_file`) since the built-in corpus has ~20 MB
Expected result (runlocal): the report's claims table resolves the direct effects (removing code
raises code bpb; proportional renormalisation lowers math bpb); task accuracies are near 0 at this
size, so most task-based verdicts are inconclusive or rest on a few items. The cpu grid's report is
committed under docs/study_cpu/ (README, "Results").
"""

import ml_collections

from mixlab import configlib

# Base mixture, token shares (domains not listed get 0; `math_traces` enters only through `scaffold`).
BASE = {"text": 0.40, "code": 0.20, "code_text": 0.15, "math": 0.15, "code_math": 0.10}
ARMS = {
    "full": "",
    "no_code": "remove:code",
    "no_math": "remove:math",
    "scaffold": "replace:math:math_traces",
    "no_code_fill_text": "remove:code:fill:text",
    "no_code_hold_math": "remove:code:keep:math",
}
CODE_SHARES = (0.0, 0.10, 0.25, 0.50)
# Code shares whose mixture an arm already has (proportional renormalisation of BASE).
SAME_AS_ARM = {0.0: "no_code", BASE["code"]: "full"}
SCALES = {
    # size, experts, steps, batch, seq_len, dtype, seeds in the sweep, max epochs of any domain,
    # checkpoints per run (the router-saturation series the sweep analyses). The
    # built-in corpus is ~20 MB (text ~0.7 MB), so the cpu grid reads text up to ~2.2 times (arms that
    # fill text); the gpu/tpu scales need a mixture file of real corpora and keep to one epoch.
    "runlocal": dict(
        size="micro",
        experts=4,
        steps=200,
        batch=8,
        seq_len=256,
        dtype="float32",
        seeds=1,
        epochs=1,
        checkpoints=4,
    ),
    "cpu": dict(
        size="micro",
        experts=8,
        steps=400,
        batch=16,
        seq_len=256,
        dtype="float32",
        seeds=2,
        epochs=3,
        checkpoints=10,
    ),
    "gpu": dict(
        size="small",
        experts=8,
        steps=20_000,
        batch=64,
        seq_len=1024,
        dtype="bfloat16",
        seeds=3,
        epochs=1,
        checkpoints=10,
    ),
    "tpu": dict(
        size="paper",
        experts=16,
        steps=24_000,
        batch=512,
        seq_len=2048,
        dtype="bfloat16",
        seeds=1,
        epochs=1,
        checkpoints=10,
    ),
}


def mixture(arm: str, code_share: float) -> tuple[dict[str, float], str]:
    """(base weights, arm string) for a named arm or, when code_share >= 0, a code-share point."""
    if code_share < 0:
        if arm not in ARMS:
            raise ValueError(f"arm={arm!r}: unknown (known: {', '.join(ARMS)})")
        return dict(BASE), ARMS[arm]
    if not 0 <= code_share < 1:
        raise ValueError(f"code_share={code_share}: must be in [0, 1)")
    rest = sum(w for d, w in BASE.items() if d != "code")
    weights = {d: w * (1 - code_share) / rest for d, w in BASE.items() if d != "code"}
    if code_share > 0:
        weights["code"] = code_share
    return weights, ""


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = configlib.parse_arg(arg, scale="runlocal", arm="full", code_share=-1.0, seed=0)
    if arg.scale not in SCALES:
        raise ValueError(f"scale={arg.scale!r}: unknown (known: {', '.join(SCALES)})")
    s = SCALES["runlocal" if arg.runlocal else arg.scale]
    c = ml_collections.ConfigDict()
    c.seed = arg.seed
    c.model = configlib.model_size(
        s["size"], vocab_size=0, num_experts=s["experts"], top_k=2, dtype=s["dtype"]
    )

    c.data = ml_collections.ConfigDict()
    c.data.weights, c.data.arm = mixture(arg.arm, arg.code_share)
    c.data.schedule = None
    c.data.max_epochs = float(s["epochs"])  # reading a domain more often than this is an error
    c.data.allow_repeat = False
    c.data.seq_len = s["seq_len"]

    c.mesh = {"data": -1, "fsdp": 1, "expert": 1, "tensor": 1}

    c.train = ml_collections.ConfigDict()
    c.train.steps = s["steps"]  # the same token budget for every arm
    c.train.grad_accum_steps = 1  # > 1: the batch is split into micro-batches, one update per step
    c.train.halt_at_step = 0
    c.train.warmup = {"percent": 5}
    c.train.batch_size = s["batch"]
    c.train.lr = 3e-3 if s["size"] in ("nano", "micro") else 1e-3
    c.train.min_lr_ratio = 0.1
    c.train.b1, c.train.b2 = 0.9, 0.95
    c.train.weight_decay = 0.1
    c.train.grad_clip = 1.0
    c.train.lb_loss_coef = 0.01
    c.train.z_loss_coef = 1e-3
    c.train.log_every = max(1, s["steps"] // 40)

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = max(1, s["steps"] // s["checkpoints"])  # the router-saturation series
    c.checkpoint.keep = 2
    c.checkpoint.keep_every = c.checkpoint.every

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = min(s["batch"], 16)
    c.eval.num_batches = 2 if arg.scale == "runlocal" or arg.runlocal else 8
    # Generation suites the sweep evaluates at the final step (mixlab/evals/suite.py).
    c.eval.tasks = {
        "runlocal": "math_free,output_pred",
        "cpu": "math_free,math,math_extrap,output_pred,code_gen",
    }.get(arg.scale, "math_free,math,math_extrap,output_pred,code_gen,humaneval")
    # Their experiments.eval flags: on CPU 10 problems per (family, difficulty) of each math suite
    # (240 of 600 in distribution, 160 of 400 harder), the same problems for every run.
    c.eval.task_flags = {"math_per_cell": 10} if arg.scale in ("runlocal", "cpu") else {}

    # experiments.routing flags of the sweep's analysis: the saturation series needs every checkpoint;
    # the masking test ΔL(r) (3 more forward passes per checkpoint) is left to experiments.routing.
    c.routing = ml_collections.ConfigDict()
    c.routing.all_steps = True
    c.routing.tokens_per_domain = {"runlocal": 2048, "cpu": 4096}.get(arg.scale, 16_384)
    c.routing.mask_top = ""
    return c


def sweep(add, arg: str | None = None) -> None:
    """`add(name, seed=..., **config args)` once per run: the runs live in WORKDIR/<name>/seed_<seed>."""
    arg = configlib.parse_arg(arg, scale="runlocal", lazy=True)
    seeds = range(SCALES[arg.scale]["seeds"])
    arms = ("full", "no_code", "scaffold", "no_code_fill_text") if arg.scale == "runlocal" else tuple(ARMS)
    for seed in seeds:
        for arm in arms:
            add(arm, seed=seed, arm=arm)
        if arg.scale != "runlocal":
            for share in CODE_SHARES:
                if share not in SAME_AS_ARM:  # 0% is no_code's mixture and 20% is full's: not run twice
                    add(f"code_{round(share * 100)}", seed=seed, code_share=share)
