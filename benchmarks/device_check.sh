#!/usr/bin/env bash
# Everything mixlab measures on an accelerator, in one run of under 8 minutes (a GPU such as an H200,
# or a TPU; the venv needs jax[cuda12] or jax[tpu]):
#
#   bash benchmarks/device_check.sh OUTDIR           # on the accelerator machine, from the repo root
#   bash benchmarks/device_check.sh --smoke OUTDIR   # the same steps at tiny sizes on CPU (< 1 minute)
#
# Steps, each a script's CLI under `timeout` (a step that fails or runs out of time is recorded with
# its error and the rest still run; the steps share a 470 s budget):
#   train_step_e8    bf16 train-step MFU and tokens/s at the `1b` size (d_model 2048, 16 layers, ~1B
#                    active): dense and MoE e8k2 with capacity, dropless_blocked, dropless_ragged
#   train_step_e16   the same for MoE e16k2 at 8 of the 16 layers (16 layers of 16 experts are 6.6B
#                    parameters: with AdamW's float32 state ~106 GB, more than one H200 holds beside
#                    the activations), with its own 8-layer dense reference
#   gpu_scale        tokens/s of the study's `gpu` scale (configs/code_math_study.py:scale=gpu, small
#                    MoE e8k2, 64 x 1024 tokens a step, bf16), 50 steps of experiments.train
#   decode           benchmarks/decode.py: KV-cache decode tokens/s of the gpu scale's model (small, bf16)
#                    with 16 experts: each token through its top-k vs through all experts
#   ragged_dot       benchmarks/ragged_dot.py: does jax.lax.ragged_dot lower to a dense dot over every
#                    group on this backend (HLO) and how it times against an equal-FLOP einsum
# Writes OUTDIR/device_check.json (keys: benchmarks/README.md), OUTDIR/device_check.md (a table) and
# OUTDIR/logs/<step>.{log,err,cmd,rc} (stdout, stderr, command; exit status, seconds, limit). The
# script exits 0 even when a step failed: read `ok` in the JSON. Env: PYTHON (default .venv/bin/python),
# DEVICE_CHECK_BUDGET_S (470).
set -u
SMOKE=0
if [ "${1:-}" = "--smoke" ]; then
  SMOKE=1
  shift
fi
OUT=${1:?usage: bash benchmarks/device_check.sh [--smoke] OUTDIR}
cd "$(dirname "$0")/.."
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
BUDGET_S=${DEVICE_CHECK_BUDGET_S:-470}
START=$(date +%s)
GS_DIR=$(mktemp -d)  # the gpu_scale run's workdir: its checkpoint (~0.7 GB) stays out of OUTDIR
trap 'rm -rf "$GS_DIR"' EXIT

if [ "$SMOKE" = 1 ]; then
  # CPU, one device, XLA's fastest compile (a smoke run checks that each step runs, not its speed).
  export JAX_PLATFORMS=cpu XLA_FLAGS="--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
  TS_E8=(--smoke --experts 8)
  TS_E16=(--smoke --experts 16 --dtype bfloat16)
  GS=(--config.train.halt_at_step=2 --config.train.log_every=1 --config.model.d_model=64
    --config.model.num_layers=2 --config.model.num_heads=4 --config.model.d_ff=64
    --config.train.batch_size=4 --config.data.seq_len=64 --config.model.dtype=float32)
  DEC=(--smoke)
  RAG=(--smoke)
  LIMIT_E8=120 LIMIT_E16=120 LIMIT_GS=120 LIMIT_DEC=120 LIMIT_RAG=120
else
  # One process per step: let it take the accelerator's memory (JAX's default is 75%).
  export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}
  SIZE=(--size 1b --dtype bfloat16 --seq_len 1024 --batch 8 --steps 5)
  TS_E8=("${SIZE[@]}" --experts 8)
  TS_E16=("${SIZE[@]}" --experts 16 --num_layers 8)
  GS=(--config.train.halt_at_step=50 --config.train.log_every=10)
  DEC=(--size small --dtype bfloat16 --experts 16)
  RAG=()
  LIMIT_E8=150 LIMIT_E16=120 LIMIT_GS=110 LIMIT_DEC=60 LIMIT_RAG=40
fi
# ragged last: where it lowers to a dense dot over every expert it needs the most memory.
DISPATCH=(--dispatch capacity,dropless_blocked,dropless_ragged)

run_step() {  # NAME LIMIT_S COMMAND...: runs it under `timeout`, capped by what is left of the budget
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET_S - ($(date +%s) - START)))
  printf '%s\n' "$*" >"$OUT/logs/$name.cmd"
  if [ "$left" -lt 15 ]; then
    echo "skipped: ${left}s of the ${BUDGET_S}s budget left" >"$OUT/logs/$name.log"
    echo "125 0" >"$OUT/logs/$name.rc"
    echo "[$(date +%T)] $name: skipped (budget spent)"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "[$(date +%T)] $name (timeout ${limit}s): $*"
  local t0 rc
  t0=$(date +%s.%N)
  timeout -k 10 "$limit" "$@" >"$OUT/logs/$name.log" 2>"$OUT/logs/$name.err"
  rc=$?
  echo "$rc $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') $limit" \
    >"$OUT/logs/$name.rc"
  echo "[$(date +%T)] $name: exit $rc"
}

run_step train_step_e8 "$LIMIT_E8" "$PY" benchmarks/train_step.py "${TS_E8[@]}" "${DISPATCH[@]}"
run_step train_step_e16 "$LIMIT_E16" "$PY" benchmarks/train_step.py "${TS_E16[@]}" "${DISPATCH[@]}"
# allow_repeat: the built-in corpus (~20 MB) is far below the scale's 20k-step budget, which the
# repetition check counts even for a run halted at step 50.
run_step gpu_scale "$LIMIT_GS" "$PY" -m experiments.train --config configs/code_math_study.py:scale=gpu \
  --workdir "$GS_DIR/run" --config.data.allow_repeat=True "${GS[@]}"
rm -f "$OUT/logs/gpu_scale_metrics.jsonl"
cp "$GS_DIR/run/metrics.jsonl" "$OUT/logs/gpu_scale_metrics.jsonl" 2>/dev/null
run_step decode "$LIMIT_DEC" "$PY" benchmarks/decode.py "${DEC[@]}"
run_step ragged_dot "$LIMIT_RAG" "$PY" benchmarks/ragged_dot.py "${RAG[@]}"

# Collect: every step's last stdout line (or, after a timeout, train_step's per-model RESULT lines).
"$PY" - "$OUT" "$SMOKE" "$(($(date +%s) - START))" <<'EOF'
import json, os, platform, shutil, statistics, subprocess, sys, time

out, smoke, wall = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
logs = os.path.join(out, "logs")
STEPS = ("train_step_e8", "train_step_e16", "gpu_scale", "decode", "ragged_dot")
DISPATCH = ("capacity", "dropless_blocked", "dropless_ragged")


def gpu_scale_result(path):
    rows = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
    if not rows:
        return None
    steady = rows[1:] or rows  # the first interval includes compilation
    return {
        "tokens_per_s": statistics.median(r["perf/tokens_per_s"] for r in steady),
        "trainer_mfu": statistics.median(r["perf/mfu"] for r in steady),
        "steps": rows[-1]["step"],
        "loss_first": rows[0]["train/loss"],
        "loss_last": rows[-1]["train/loss"],
    }


steps = {}
for name in STEPS:
    rc_s, seconds, limit = (open(os.path.join(logs, f"{name}.rc")).read().split() + ["0", "0"])[:3]
    rc = int(rc_s)
    lines = open(os.path.join(logs, f"{name}.log"), errors="replace").read().splitlines()
    err_path = os.path.join(logs, f"{name}.err")
    err = open(err_path, errors="replace").read().splitlines() if os.path.exists(err_path) else []
    result, error = None, None
    if name == "gpu_scale":
        result = gpu_scale_result(os.path.join(logs, "gpu_scale_metrics.jsonl"))
    elif lines:
        try:
            result = json.loads(lines[-1])
        except json.JSONDecodeError:
            partial = [ln.split(" ", 2) for ln in lines if ln.startswith("RESULT ")]
            result = {n: json.loads(r) for _, n, r in partial} or None
    if rc == 125:
        error = lines[0]
    elif rc != 0:
        why = {124: f"timed out after {limit} s", 137: f"killed after {limit} s"}
        error = why.get(rc, f"exit {rc}") + ": " + " | ".join((lines + err)[-4:])[-600:]
    steps[name] = {
        "ok": rc == 0 and result is not None,
        "rc": rc,
        "seconds": float(seconds),
        "command": open(os.path.join(logs, f"{name}.cmd")).read().strip(),
        "error": error,
        "result": result,
    }


def get(path):
    step, *keys = path.split(".")
    value = steps[step]["result"]
    for k in keys:
        if not isinstance(value, dict) or k not in value:
            return None
        value = value[k]
    return value


KEYS = []
for e in (8, 16):
    for model in ["dense"] + [f"moe_e{e}k2_{d}" for d in DISPATCH]:
        fields = ("mfu", "tokens_per_s", "step_s", "n_active_nonembed")
        KEYS += [f"train_step_e{e}.{model}.{k}" for k in fields]
    KEYS += [f"train_step_e{e}.moe_e{e}k2_{d}_over_dense_step_time" for d in DISPATCH]
KEYS += ["gpu_scale.tokens_per_s", "gpu_scale.trainer_mfu", "gpu_scale.steps"]
KEYS += [f"decode.{m}.{k}" for m in ("full_recompute", "cached_chunked") for k in ("tokens_per_s", "speedup")]
KEYS += ["decode.topk_over_all_experts_speedup"]
KEYS += ["ragged_dot.lowers_to_dense"] + [
    f"ragged_dot.{p}.{k}"
    for p in ("forward", "fwd_bwd")
    for k in ("lowering", "matmul_flops_over_ragged", "ragged_over_einsum_time", "custom_calls")
]
summary = {k: get(k) for k in KEYS}
smi = None
if shutil.which("nvidia-smi"):
    q = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    smi = subprocess.run(q, capture_output=True, text=True).stdout.strip()
first = next((s["result"] for s in steps.values() if s["result"] and "backend" in s["result"]), {})
report = {
    "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    "smoke": smoke,
    "ok": all(s["ok"] for s in steps.values()),
    "backend": first.get("backend"),
    "device": first.get("device"),
    "nvidia_smi": smi,
    "host": platform.node(),
    "loadavg": list(os.getloadavg()),
    "wall_s": wall,
    "summary": summary,
    "steps": steps,
}
with open(os.path.join(out, "device_check.json"), "w") as f:
    json.dump(report, f, indent=1)


def fmt(v, pct=False):
    if v is None:
        return "—"
    if isinstance(v, bool) or isinstance(v, str):
        return str(v)
    if isinstance(v, list):
        return ", ".join(v) or "—"
    return f"{v:.1%}" if pct else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}")


md = [
    f"# device check{' (smoke)' if smoke else ''}: {report['device']} ({report['backend']}), "
    f"{report['date']}",
    "",
    f"{wall} s in all; every step {'ok' if report['ok'] else 'NOT ok (see errors)'}.",
    "",
    "| step | model | MFU | tokens/s | step / dense |",
    "|---|---|---|---|---|",
]
for e in (8, 16):
    for model in ["dense"] + [f"moe_e{e}k2_{d}" for d in DISPATCH]:
        ratio = summary.get(f"train_step_e{e}.{model}_over_dense_step_time") if model != "dense" else 1.0
        md.append(
            f"| train_step_e{e} | {model} | {fmt(summary[f'train_step_e{e}.{model}.mfu'], True)} | "
            f"{fmt(summary[f'train_step_e{e}.{model}.tokens_per_s'])} | {fmt(ratio)} |"
        )
md.append(f"| gpu_scale | small e8k2 (trainer's MFU) | {fmt(summary['gpu_scale.trainer_mfu'], True)} | "
          f"{fmt(summary['gpu_scale.tokens_per_s'])} | |")
for m in ("full_recompute", "cached_chunked"):
    md.append(f"| decode | {m} (speed-up {fmt(summary[f'decode.{m}.speedup'])}x) | | "
              f"{fmt(summary[f'decode.{m}.tokens_per_s'])} | |")
md.append(f"| decode | top-k over all-experts decode speed-up | | "
          f"{fmt(summary['decode.topk_over_all_experts_speedup'])} | |")
md += ["", "| ragged_dot | lowering | matmul FLOPs / ideal | time / equal-FLOP einsum | custom calls |",
       "|---|---|---|---|---|"]
for p in ("forward", "fwd_bwd"):
    md.append(f"| {p} | {fmt(summary[f'ragged_dot.{p}.lowering'])} | "
              f"{fmt(summary[f'ragged_dot.{p}.matmul_flops_over_ragged'])} | "
              f"{fmt(summary[f'ragged_dot.{p}.ragged_over_einsum_time'])} | "
              f"{fmt(summary[f'ragged_dot.{p}.custom_calls'])} |")
md += ["", "| step | ok | seconds | error |", "|---|---|---|---|"]
for name, s in steps.items():
    err = (s["error"] or "").replace("|", "/")[:200]
    md.append(f"| {name} | {s['ok']} | {s['seconds']:.0f} | {err} |")
with open(os.path.join(out, "device_check.md"), "w") as f:
    f.write("\n".join(md) + "\n")
print("\n".join(md))
print(f"wrote {out}/device_check.json and device_check.md")
EOF
