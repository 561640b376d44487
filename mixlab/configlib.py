"""Config helpers shared by every file in `configs/`: typed arguments, size presets, durations.

A config is `get_config(arg)`; `arg` is a comma-separated `key=value` string that carries only what changes
several fields at once (size preset, mixture, `runlocal`). Single fields are set with
`--config.train.steps=...`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import ml_collections


class ConfigError(ValueError):
    """Bad user input (config key, value, file); entry points print it as one line and exit 2."""


@contextlib.contextmanager
def errors_as_config_errors() -> Iterator[None]:
    """Turns validation `ValueError`s raised while resolving a config into `ConfigError`s."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None


# Model size presets: name -> ModelConfig fields. Tiny sizes run on a laptop CPU; the paper's model is
# `paper` (with `num_experts=16`). Every row says where it comes from.
SIZES: dict[str, dict[str, Any]] = {
    # CPU smoke size: compiles in seconds, used by tests and `:runlocal`.
    "nano": dict(d_model=64, num_layers=2, num_heads=4, d_ff=128),
    # Quickstart size: learns visible structure from the built-in corpus in minutes on 2 cores.
    "micro": dict(d_model=128, num_layers=4, num_heads=4, d_ff=256),
    # The CPU benchmark size of nanodo/MaxText-style peers: D=512, 4 layers, 8 heads, MLP 2048.
    "small": dict(d_model=512, num_layers=4, num_heads=8, d_ff=2048),
    # arXiv:2605.19762: 20 layers, d_model 2048, 16 heads. The paper gives no expert width: mixlab's
    # choice is a dense SwiGLU of 2816, so under `model_size`'s halving each top-2 expert is 1408 wide.
    "paper": dict(d_model=2048, num_layers=20, num_heads=16, d_ff=2816),
    # GPT-2 small's widths (768, 12 heads, MLP 3072) on 8 layers: the largest size that steps on a CPU.
    "base": dict(d_model=768, num_layers=8, num_heads=12, d_ff=3072),
    # ~1B active, TPU/GPU: Llama-3.2-1B's shape (16 layers, 2048, 32 heads on 8 kv heads, SwiGLU 8192).
    "1b": dict(d_model=2048, num_layers=16, num_heads=32, num_kv_heads=8, d_ff=8192),
}


def parse_arg(arg: str | None, *, lazy: bool = False, **spec: Any) -> ml_collections.ConfigDict:
    """Parses `"a=1,b=x,runlocal"` against typed defaults in `spec`.

    A bare key means True (for bools). Values are converted with the default's type; unknown keys and
    bad values are errors that name them. `runlocal` is always accepted (default False).
    """
    spec = {"runlocal": False, **spec}
    out = dict(spec)
    for item in filter(None, (s.strip() for s in (arg or "").split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if key not in spec:
            if lazy:
                continue
            raise ValueError(f"config arg: unknown key {key!r} (known: {', '.join(sorted(spec))})")
        default = spec[key]
        if not sep:
            if not isinstance(default, bool):
                raise ValueError(f"config arg {key!r} needs a value, e.g. {key}={default}")
            out[key] = True
            continue
        out[key] = _convert(key, raw.strip(), default)
    return ml_collections.ConfigDict(out)


def _convert(key: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return raw.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ValueError(f"config arg {key}={raw!r}: expected {type(default).__name__}") from None
    return raw


def model_size(name: str, **overrides: Any) -> ml_collections.ConfigDict:
    """A `model` config section from a size preset.

    With `num_experts > 0` each expert gets `d_ff // top_k` hidden units, so the MoE has the same active
    parameters per token as the dense preset (the study's dense baseline is that preset with 0 experts).
    An explicit `d_ff` override wins."""
    if name not in SIZES:
        raise ValueError(f"unknown size {name!r} (known: {', '.join(SIZES)})")
    fields = dict(SIZES[name])
    if overrides.get("num_experts", 0) > 0:
        fields["d_ff"] = max(1, fields["d_ff"] // overrides.get("top_k", 2))
    return ml_collections.ConfigDict({**fields, **overrides})


def optimizer(lr: float, **overrides: Any) -> dict[str, Any]:
    """The `train` fields of the one recipe every config shares (optax AdamW, cosine to
    `min_lr_ratio` after linear warmup, global-norm clipping; the MoE auxiliary losses' weights)."""
    return {
        "lr": lr,
        "min_lr_ratio": 0.1,
        "b1": 0.9,
        "b2": 0.95,
        "weight_decay": 0.1,
        "grad_clip": 1.0,
        "lb_loss_coef": 0.01,  # Switch load balancing
        "z_loss_coef": 1e-3,  # router z-loss
        **overrides,
    }


UNITS = ("steps", "tokens", "percent")


def to_steps(value: Mapping[str, float] | int, *, total_steps: int | None, tokens_per_step: int) -> int:
    """Converts a duration to steps. `value` is an int (steps) or a one-key mapping `{unit: amount}`:
    `{"steps": 100}`, `{"tokens": 2e6}` (rounded up to whole steps), `{"percent": 5}` of `total_steps`."""
    if isinstance(value, int):
        return value
    items = dict(value)
    if len(items) != 1 or next(iter(items)) not in UNITS:
        raise ValueError(f"duration {items}: give exactly one of {', '.join(UNITS)}")
    unit, amount = next(iter(items.items()))
    if amount < 0:
        raise ValueError(f"duration {items}: must be >= 0")
    if unit == "steps":
        return int(amount)
    if unit == "tokens":
        return -(-int(amount) // tokens_per_step)
    if total_steps is None:
        raise ValueError(f"duration {items}: percent needs a total step count")
    return round(total_steps * amount / 100)


def load_module(config_path: str, *, needs: str) -> ModuleType:
    """A config file as a module, which must define `needs` (e.g. `sweep`, `claims`)."""
    if not os.path.exists(config_path):
        raise ConfigError(f"--config {config_path}: no such file")
    spec = importlib.util.spec_from_file_location("mixlab_study_config", config_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, needs):
        raise ConfigError(f"{config_path} has no {needs}() function")
    return module
