"""Every benchmark's `--smoke` run exits 0 and ends in one JSON line with its documented keys
(benchmarks/README.md); `device_check.sh --smoke` writes its JSON and Markdown. No timing is asserted.

The scripts run as subprocesses on one CPU device (not the 8 fake devices of conftest.py) with XLA's
cheapest compile (device_check.sh --smoke sets the same flags): ~65 CPU-seconds in all. Run alone,
the module starts every run at once, two at a time; under pytest-xdist each test runs its own (the
workers give the parallelism). train_step.py, decode.py and ragged_dot.py are checked through
device_check.sh, which runs their `--smoke` (train_step twice: 8 experts float32, 16 experts bfloat16)
and keeps each one's stdout.
"""

import json
import os
import pathlib
import subprocess
import sys
from concurrent import futures

import pytest

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parent.parent
DISPATCH = ("capacity", "dropless_blocked", "dropless_ragged")


def spec(words: str) -> dict:
    """The keys of a JSON object, space-separated (a value None: any value; a dict: nested keys)."""
    return dict.fromkeys(words.split())


MODEL = spec(
    "step_s step_s_min tokens_per_s model_flops_per_s peak_flops_per_s mfu mfu_best mfu_cpu compile_s "
    "flops_per_step flops_per_token attention_flops_per_token n_active_nonembed n_active_with_embeddings "
    "n_total"
)


def train_step_keys(experts: int) -> dict:
    moe = [f"moe_e{experts}k2_{d}" for d in DISPATCH]
    return {
        **spec("device backend formula order ragged_backend loadavg_start loadavg_end config"),
        "peak_matmul": dict.fromkeys(["n", "dtype", "flops"]),
        **{name: MODEL for name in ["dense", *moe]},
        **dict.fromkeys(f"{m}_over_dense_step_time" for m in moe),
    }


PIPE = spec("tokens_per_s sequences_per_s repeats_tokens_per_s setup_s weights")
DECODE_METHOD = spec("run_s run_s_min tokens_per_s ms_per_token_step speedup first_run_s greedy_match")
RAGGED = spec(
    "matmul_flops ragged_ops custom_calls ideal_flops matmul_flops_over_ragged cost_analysis_flops "
    "cost_flops_over_ragged lowering lowers_to_dense ragged_s einsum_s ragged_over_einsum_time"
)
KEYS = {
    "data_pipeline": {
        "a_text_tokenize_pack_mix": PIPE,
        "a_all_domains_equal": PIPE,
        "b_pretokenized_arrayrecord": {
            **PIPE,
            **dict.fromkeys(["prepare_s", "prepared_tokens", "goal_tokens_per_s"]),
        },
        "train_step_quickstart": MODEL,
        **spec(
            "device b_meets_goal ratio_a_over_train ratio_a_all_domains_over_train goal_ratio meets_goal "
            "loadavg_start loadavg_end config"
        ),
    },
    "routing": spec(
        "tokens layers experts top_k domains make_traces_s save_load_npz_s counts_s trace_metrics_s "
        "trace_metrics_2_more_s saturation_s cross_arm_jsd_s routing_json_s plots_s one_trace_set_s total_s "
        "routing_json_mb goal_s meets_goal"
    ),
    "checkpoint_cost": spec(
        "size steps save_every_steps step_s_without_saves step_s_with_saves overhead goal"
    ),
    "learning": spec(
        "vocab_size ln_vocab steps tokens_per_step total_tokens init_loss heldout_loss_at_tokens "
        "train_loss_at_steps final mixlab_minus_reference_final params seconds config"
    ),
    # Run inside device_check.sh (its step names).
    "train_step_e8": train_step_keys(8),
    "train_step_e16": train_step_keys(16),
    "decode": {
        **{
            m: DECODE_METHOD
            for m in (
                "full_recompute",
                "cached_step",
                "cached_chunked",
                "chunked_topk",
                "chunked_all_experts",
            )
        },
        **spec("device backend cached_chunked_speedup topk_over_all_experts_speedup"),
        **spec("loadavg_start loadavg_end config"),
        "params": dict.fromkeys(["total", "active", "active_nonembed"]),
    },
    "ragged_dot": {
        **spec("device backend max_abs_diff_vs_einsum lowers_to_dense config"),
        "shape": spec("groups rows k n dtype"),
        "forward": RAGGED,
        "fwd_bwd": RAGGED,
    },
}
DEVICE_CHECK = spec("date smoke ok backend device nvidia_smi host loadavg wall_s summary steps")
STEP = spec("ok rc seconds command error result")


def summary_keys() -> list[str]:
    """device_check.json's `summary` keys, as benchmarks/README.md lists them."""
    keys = []
    for e in (8, 16):
        for m in ["dense"] + [f"moe_e{e}k2_{d}" for d in DISPATCH]:
            keys += [
                f"train_step_e{e}.{m}.{k}" for k in ("mfu", "tokens_per_s", "step_s", "n_active_nonembed")
            ]
        keys += [f"train_step_e{e}.moe_e{e}k2_{d}_over_dense_step_time" for d in DISPATCH]
    keys += ["gpu_scale.tokens_per_s", "gpu_scale.trainer_mfu", "gpu_scale.steps"]
    keys += [
        f"decode.{m}.{k}" for m in ("full_recompute", "cached_chunked") for k in ("tokens_per_s", "speedup")
    ]
    keys += ["decode.topk_over_all_experts_speedup"]
    keys += ["ragged_dot.lowers_to_dense"]
    keys += [
        f"ragged_dot.{p}.{k}"
        for p in ("forward", "fwd_bwd")
        for k in ("lowering", "matmul_flops_over_ragged", "ragged_over_einsum_time", "custom_calls")
    ]
    return keys


def missing(obj, spec: dict, prefix: str = "") -> list[str]:
    out = []
    for key, sub in spec.items():
        if not isinstance(obj, dict) or key not in obj:
            out.append(prefix + key)
        elif sub is not None:
            out += missing(obj[key], sub, f"{prefix}{key}.")
    return out


def last_json(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    assert lines, "no output"
    result = json.loads(lines[-1])
    assert isinstance(result, dict), lines[-1][:200]
    return result


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # not conftest's 8 fake devices
    # XLA's cheapest CPU compile: about a third of the default's compile time for these tiny steps.
    flags = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
    return e | {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}


def scripts() -> list[str]:
    present = ["data_pipeline", "routing", "checkpoint_cost"]
    return present + (["learning"] if (ROOT / "benchmarks" / "learning.py").exists() else [])


def run(name: str, outdir: pathlib.Path) -> subprocess.CompletedProcess:
    if name == "device_check":
        cmd = ["bash", "benchmarks/device_check.sh", "--smoke", str(outdir)]
        cmd_env = env() | {"PYTHON": sys.executable}
    else:
        cmd, cmd_env = [sys.executable, f"benchmarks/{name}.py", "--smoke"], env()
    return subprocess.run(cmd, cwd=ROOT, env=cmd_env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """name -> its finished subprocess; alone, every run starts now, two at a time."""
    outdir = tmp_path_factory.mktemp("device_check")
    under_xdist = "PYTEST_XDIST_WORKER" in os.environ
    pool = futures.ThreadPoolExecutor(max_workers=1 if under_xdist else 2)
    started = {}

    def get(name: str) -> tuple[subprocess.CompletedProcess, pathlib.Path]:
        if name not in started:
            started[name] = pool.submit(run, name, outdir)
        return started[name].result(), outdir

    if not under_xdist:
        for name in ["device_check", *scripts()]:  # the longest first
            started[name] = pool.submit(run, name, outdir)
    yield get
    pool.shutdown(wait=True)


@pytest.mark.parametrize("name", ["data_pipeline", "routing", "checkpoint_cost", "learning"])
def test_smoke_ends_in_json_with_documented_keys(smoke, name):
    if name not in scripts():
        pytest.skip(f"benchmarks/{name}.py does not exist yet")
    proc, _ = smoke(name)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert missing(last_json(proc.stdout), KEYS[name]) == []


def test_device_check_smoke_writes_json_and_markdown(smoke):
    proc, outdir = smoke("device_check")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((outdir / "device_check.json").read_text())
    assert missing(report, DEVICE_CHECK) == []
    errors = {name: step["error"] for name, step in report["steps"].items() if not step["ok"]}
    assert errors == {}
    assert report["ok"] and report["smoke"]
    for name, step in report["steps"].items():
        assert missing(step, STEP) == [], name
    assert sorted(report["summary"]) == sorted(summary_keys())
    assert [k for k, v in report["summary"].items() if v is None] == []
    markdown = (outdir / "device_check.md").read_text()
    for name in report["steps"]:
        assert f"| {name} |" in markdown
    # The scripts device_check.sh ran with --smoke: each log ends in its JSON line.
    for name in ("train_step_e8", "train_step_e16", "decode", "ragged_dot"):
        log = (outdir / "logs" / f"{name}.log").read_text()
        assert missing(last_json(log), KEYS[name]) == [], name
