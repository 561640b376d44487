"""The code/math data-mixture study (arXiv:2605.19762) and its de-confounded arms, at four scales.

One fixed token budget for every arm; arms differ only by the intervention on the base mixture:
  full                no intervention
  full_aa             `full` again with other seeds (config seed + 1000): the A/A noise floor
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

The paper's recipe at every scale: dropless routing (`dispatch="auto"`, in evaluation too), the
load-balancing and router z-losses, stochastic routing warmup over the learning-rate warmup, and a
warmup of 2,000 of 24,000 steps at `tpu` (1/12 of the steps at the smaller scales); checkpoints every
1,200 steps at `tpu`. Scales (`SCALES`, one row each; model FLOPs from 6·N·tokens):
  runlocal  micro MoE (e4k2, 0.69M active), 200 steps x 8 x 256 = 0.4M tokens; full, no_code, scaffold,
            no_code_fill_text x 1 seed; the sweep with evaluation, routing and report in under
            10 minutes on 2 CPU cores (its report says it has one seed: no seed-level interval)
  cpu       micro MoE (e8k2, 0.69M active), 300 steps x 16 x 256 = 1.2M tokens; the 7 claim arms
            (incl. full_aa) x 5 seeds = 35 runs, the code-share points 10/25/50% x 1 seed; ~1.5 h of
            training, 4.1 h with evaluation and routing on 2 CPU cores, two runs at a time (measured
            2026-12-03/04, when answer-level metrics were scored at all 6 checkpoints; now at the
            final one only (`eval.answers_steps`), which took a runlocal run's evaluation from 70 s
            to 38 s: expect less; ~8e13 FLOPs in all)
  gpu       small MoE (d512, 4 layers, e8k2), 20k steps x 64 x 1024 = 1.3B tokens per run, bf16, one
            H200-class GPU: ~2 h per run (~1.4e17 FLOPs), 3 seeds
  tpu       the paper's model: 20 layers, d_model 2048, 16 experts top-2 (1408 wide), bf16, 24k steps x
            512 x 2048 = 25B tokens per run (~5e20 FLOPs), a v5e-256 slice for ~1 day per run, 3 seeds;
            needs a mixture file of real corpora (`data.mixture_file`): the built-in corpus has ~20 MB
`claims(arg)` states what the report tests, each claim with its expected direction and its source.
Expected result (runlocal): removing code raises held-out code bpb; one seed gives no seed-level
interval, so every verdict is inconclusive there. The cpu grid's report is committed under
docs/study_cpu/ (README, "Results").
"""

from typing import NamedTuple

import ml_collections

from mixlab import configlib
from mixlab.report.claims import Claim, CompetitionClaim, Reading, RoutingClaim

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
AA_ARM, AA_SEED_OFFSET = "full_aa", 1000  # `full` with config seed + 1000: the seed-to-seed noise floor
CODE_SHARES = (0.0, 0.10, 0.25, 0.50)
# Code shares whose mixture an arm already has (proportional renormalisation of BASE).
SAME_AS_ARM = {0.0: "no_code", BASE["code"]: "full"}


class Scale(NamedTuple):
    size: str
    experts: int
    steps: int
    batch: int
    seq_len: int
    dtype: str
    seeds: int  # of every claim arm in the sweep
    share_seeds: int  # of the code-share points
    epochs: int  # reading a domain more often than this is an error
    checkpoint_every: int  # steps: the router-saturation series and the loss curves
    answers_per_cell: int | None  # answer-level metrics: problems per (family, difficulty); None = all


# The built-in corpus is ~20 MB (text ~0.7 MB), so the cpu grid reads text up to ~2 times (arms that
# fill text); the gpu/tpu scales need a mixture file of real corpora and keep to one epoch.
# fmt: off
SCALES = {
    "runlocal": Scale("micro", 4, 200, 8, 256, "float32", 1, 0, 1, 50, 5),
    "cpu": Scale("micro", 8, 300, 16, 256, "float32", 5, 1, 3, 50, 10),
    "gpu": Scale("small", 8, 20_000, 64, 1024, "bfloat16", 3, 3, 1, 2_000, None),
    "tpu": Scale("paper", 16, 24_000, 512, 2048, "bfloat16", 3, 1, 1, 1_200, None),
}
# fmt: on
PAPER_WARMUP = 2_000 / 24_000  # the paper's warmup share of its 24k steps


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


def scale_of(arg) -> str:
    if arg.scale not in SCALES:
        raise ValueError(f"scale={arg.scale!r}: unknown (known: {', '.join(SCALES)})")
    return "runlocal" if arg.runlocal else arg.scale  # `:runlocal` and `scale=runlocal` are the same


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = configlib.parse_arg(arg, scale="runlocal", arm="full", code_share=-1.0, seed=0, replica=0)
    scale = scale_of(arg)
    s = SCALES[scale]
    c = ml_collections.ConfigDict()
    c.seed = arg.seed + AA_SEED_OFFSET * arg.replica
    warmup = max(1, round(s.steps * PAPER_WARMUP))
    c.model = configlib.model_size(
        s.size, vocab_size=0, num_experts=s.experts, top_k=2, dtype=s.dtype, dispatch="auto"
    )
    c.model.routing_warmup_steps = warmup  # logits = a·learned + (1 − a)·N(0, 1), a = min(t / t_w, 1)

    c.data = ml_collections.ConfigDict()
    c.data.weights, c.data.arm = mixture(arg.arm, arg.code_share)
    c.data.schedule = None
    c.data.max_epochs = float(s.epochs)
    c.data.allow_repeat = False
    c.data.seq_len = s.seq_len

    c.mesh = {"data": -1, "fsdp": 1, "expert": 1, "tensor": 1}

    c.train = ml_collections.ConfigDict()
    c.train.steps = s.steps  # the same token budget for every arm
    c.train.grad_accum_steps = 1  # > 1: the batch is split into micro-batches, one update per step
    c.train.halt_at_step = 0
    c.train.warmup = {"steps": warmup}
    c.train.batch_size = s.batch
    c.train.update(configlib.optimizer(lr=3e-3 if s.size in ("nano", "micro") else 1e-3))
    c.train.log_every = max(1, s.steps // 40)

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = s.checkpoint_every
    c.checkpoint.keep = 2
    c.checkpoint.keep_every = c.checkpoint.every  # every checkpoint stays: the series the sweep reads

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = min(s.batch, 16)
    c.eval.num_batches = 2 if scale == "runlocal" else 8
    # Answer-level likelihood metrics (mixlab/evals/likelihood.py): the primaries of the math and code
    # claims below the tpu scale.
    c.eval.answers = "math,math_extrap,output_pred,code_gen" + (
        ",humaneval" if scale in ("gpu", "tpu") else ""
    )
    c.eval.answers_per_cell = s.answers_per_cell
    # The report reads the final step's answer-level items only: the other checkpoints get loss and
    # bpb (the loss curves). "all" scores them at every checkpoint too.
    c.eval.answers_steps = "final"
    # Generation suites the sweep evaluates at the final step (mixlab/evals/suite.py).
    c.eval.tasks = {
        "runlocal": "math_free,output_pred",
        "cpu": "math_free,math,math_extrap,output_pred,code_gen",
    }.get(scale, "math_free,math,math_extrap,output_pred,code_gen,humaneval")
    # Their experiments.eval flags: on CPU 10 problems per (family, difficulty) of each math suite
    # (240 of 600 in distribution, 160 of 400 harder), 5 at runlocal, the same problems for every run.
    c.eval.task_flags = {"runlocal": {"math_per_cell": 5}, "cpu": {"math_per_cell": 10}}.get(scale, {})

    # experiments.routing flags of the sweep's analysis: the saturation series needs every checkpoint;
    # the masking test ΔL(r) (3 more forward passes per checkpoint) is left to experiments.routing.
    c.routing = ml_collections.ConfigDict()
    c.routing.all_steps = True
    c.routing.tokens_per_domain = {"runlocal": 2048, "cpu": 4096}.get(scale, 16_384)
    c.routing.mask_top = ""
    return c


def sweep(add, arg: str | None = None) -> None:
    """`add(name, seed=..., **config args)` once per run: the runs live in WORKDIR/<name>/seed_<seed>."""
    arg = configlib.parse_arg(arg, scale="runlocal", lazy=True)
    scale = scale_of(arg)
    s = SCALES[scale]
    small = scale == "runlocal"
    arms = ("full", "no_code", "scaffold", "no_code_fill_text") if small else tuple(ARMS)
    for seed in range(s.seeds):
        for arm in arms:
            add(arm, seed=seed, arm=arm)
        if not small:
            add(AA_ARM, seed=seed, arm="full", replica=1)
    for seed in range(s.share_seeds):
        for share in CODE_SHARES:
            if share not in SAME_AS_ARM:  # 0% is no_code's mixture and 20% is full's: not run twice
                add(f"code_{round(share * 100)}", seed=seed, code_share=share)


# What the paper says, quoted: its summary (arXiv:2605.19762's abstract as the project brief gives it)
# and a third-party note on its per-benchmark table (approximate relative changes of the math average:
# ~-14% without code, ~+18% for the scaffold arm, code within ~1%), which the project was given.
SUMMARY = "arXiv:2605.19762 summary"
CODE_COMPETES = f"{SUMMARY}: code 'helps programming but competes with hard math'"
TRACES_HELP = f"{SUMMARY}: 'cross-domain structured traces (code-text, math-text) are what help math'"
ROUTING = f"{SUMMARY}: 'MoE routing shows competing vs synergetic expert activation'"
NOTE_NO_CODE = "third-party note on the paper's table: 'removing code lowered the math average by ~14%'"
NOTE_SCAFFOLD = "third-party note on the paper's table: 'the scaffold arm raised it by ~18%'"
CONFOUND = "the data audit: 'removing code and renormalising proportionally adds math tokens'"


def claims(arg: str | None = None) -> tuple:
    """The study's claims, tested by `experiments.report` (mixlab/report/claims.py says how).

    Below the tpu scale exact-match accuracy sits near zero, so the math and code claims are decided by
    answer-level likelihoods (gold-answer bits per byte given the question; the normalised probability
    of the correct answer among 4 choices); exact match stays a secondary. At tpu it decides."""
    arg = configlib.parse_arg(arg, scale="runlocal", lazy=True)
    exact = scale_of(arg) == "tpu"
    likely = ("answer_bpb/math", "choice_prob/math", "answer_bpb/math_extrap", "bpb/math")
    tasks = ("tasks:math_free", "tasks:math")
    math = tasks + likely if exact else likely + tasks
    code = ("bpb/code", "answer_bpb/output_pred", "solution_bpb/code_gen", "choice_prob/output_pred")
    code_tasks = ("tasks:output_pred", "tasks:code_gen", "tasks:humaneval")
    same_math = "math tokens are held at full's (the audit table shows the realised tokens)"
    scaffold_metrics = (
        "choice_prob/math",
        "solution_bpb/math_extrap",
        "answer_bpb/math",
        "tasks:math_free",
        "tasks:math_extrap",
    )
    if exact:
        scaffold_metrics = ("tasks:math_free", "tasks:math_extrap", *scaffold_metrics[:3])
    return (
        Claim(
            "C1",
            "code helps programming",
            "no_code",
            "full",
            (Reading("worse", CODE_COMPETES),),
            code_tasks + code if exact else code + code_tasks,
            measured_text="pure code lowers the loss of held-out code and of gold program outputs",
            note="worded as measured unless a programming task scores above its constant-answer rate",
        ),
        Claim(
            "C2",
            "code competes with math at equal math tokens",
            "no_code_hold_math",
            "full",
            (Reading("better", CODE_COMPETES),),
            math,
            note=same_math,
        ),
        Claim(
            "C2b",
            "code competes with math at equal math tokens (freed share to text)",
            "no_code_fill_text",
            "full",
            (Reading("better", CODE_COMPETES),),
            math,
            note=same_math,
        ),
        Claim(
            "C2p",
            "removing code changes math (the paper's proportional arm)",
            "no_code",
            "full",
            (Reading("better", CODE_COMPETES), Reading("worse", NOTE_NO_CODE)),
            math,
            note="the summary and the note on the paper's number disagree: both readings are tested; "
            "proportional renormalisation also adds math tokens (C5)",
        ),
        Claim(
            "C3",
            "structured traces help math at equal math tokens",
            "scaffold",
            "full",
            (Reading("better", TRACES_HELP), Reading("better", NOTE_SCAFFOLD)),
            scaffold_metrics,
            note="choice probability compares the answers after the same prompt, so the answer format "
            "scaffold never trains on is shared by every choice; solution bpb is in scaffold's format, "
            "answer bpb in full's",
        ),
        RoutingClaim(
            "C4-code",
            "routing shifts most for the removed domain (code)",
            "no_code",
            "full",
            "code",
            siblings=("code_text", "code_math"),
            aa_arm=AA_ARM,
            source=ROUTING,
        ),
        RoutingClaim(
            "C4-math",
            "routing shifts most for the removed domain (math)",
            "no_math",
            "full",
            "math",
            siblings=("math_traces", "code_math"),
            aa_arm=AA_ARM,
            source=ROUTING,
        ),
        Claim(
            "C5",
            "part of the paper's effect is extra math tokens",
            "no_code",
            "no_code_hold_math",
            (Reading("better", CONFOUND),),
            math,
            note="both remove code; only no_code adds math tokens, so a gain here is the extra-math part",
        ),
        CompetitionClaim(
            "C6",
            "code and math compete for shared experts (math tokens held)",
            "no_code_hold_math",
            "full",
            target="math",
            source_domain="code",
            expect="competition",
            source=ROUTING,
        ),
        CompetitionClaim(
            "C7",
            "code and code_text are synergetic through shared experts (math tokens held)",
            "no_code_hold_math",
            "full",
            target="code_text",
            source_domain="code",
            expect="synergy",
            source=ROUTING,
        ),
    )
