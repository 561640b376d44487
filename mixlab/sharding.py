"""Meshes and the one table that maps logical axis names to mesh axes.

Parameters and activations name their dimensions logically (`"embed"`, `"exp"`, `"act_batch"`); `RULES`
decides where each lives on the 4-axis mesh `(data, fsdp, expert, tensor)`. Changing the parallelism of a run
is a config change of `mesh`, never a model change.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping

import jax
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "expert", "tensor")

# Logical name -> mesh axes. Parameters shard their largest dims over `fsdp` (ZeRO-3 style) and `tensor`
# (Megatron style); experts over `expert`. Activations' batch is split over every axis that is not
# model-parallel for that tensor: outside the MoE layer the `expert` axis acts as extra data parallelism
# (MaxText's `activation_batch`).
RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    # parameters
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("exp", "expert"),
    ("router_exp", None),
    ("norm", None),
    # activations
    ("act_batch", ("data", "fsdp", "expert")),
    ("act_batch_no_exp", ("data", "fsdp")),
    ("act_exp", "expert"),
    ("act_len", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
)


def logical_spec(*names: str | None) -> P:
    """PartitionSpec of a tensor whose dims carry these logical names (None = replicated)."""
    rules = dict(RULES)
    return P(*(rules[n] if n is not None else None for n in names))


def constrain(x: jax.Array, *names: str | None) -> jax.Array:
    """Sharding hint at a block boundary; a no-op outside a mesh context."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, logical_spec(*names))


def mesh_shape(mesh_cfg: Mapping[str, int], num_devices: int, allow_fewer: bool = False) -> dict[str, int]:
    """Resolves one `-1` axis to fill the devices; errors name the offending axis and sizes.
    `allow_fewer`: a mesh with no `-1` axis may use fewer devices than there are (`make_mesh`)."""
    if allow_fewer and -1 not in dict(mesh_cfg).values():
        wanted = math.prod(int(v) for v in dict(mesh_cfg).values())
        if 0 < wanted < num_devices:
            num_devices = wanted
    unknown = set(mesh_cfg) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"mesh: unknown axis {sorted(unknown)} (known: {', '.join(MESH_AXES)})")
    sizes = {a: int(mesh_cfg.get(a, 1)) for a in MESH_AXES}
    fill = [a for a, s in sizes.items() if s == -1]
    if len(fill) > 1:
        raise ValueError(f"mesh: only one axis may be -1, got {fill}")
    if any(s == 0 or s < -1 for s in sizes.values()):
        raise ValueError(f"mesh: axis sizes must be positive or -1, got {sizes}")
    fixed = math.prod(s for s in sizes.values() if s != -1)
    if fill:
        if num_devices % fixed:
            raise ValueError(f"mesh {sizes}: {num_devices} devices are not divisible by {fixed}")
        sizes[fill[0]] = num_devices // fixed
    if math.prod(sizes.values()) != num_devices:
        raise ValueError(
            f"mesh {sizes} needs {math.prod(sizes.values())} devices but {num_devices} are present"
        )
    return sizes


def check_experts_fit_mesh(num_experts: int, mesh: jax.sharding.Mesh) -> None:
    """Errors (naming field and sizes) for experts the mesh cannot split evenly; call before compiling.

    Experts must divide evenly over `expert`: an uneven split would silently pad every expert einsum.
    Takes the count, not the model config: this module sits below `models/`, which imports it."""
    experts = mesh.shape.get("expert", 1)
    if num_experts and num_experts % experts:
        raise ValueError(
            f"model.num_experts = {num_experts} is not divisible by the mesh's expert axis "
            f"({experts}); choose mesh.expert among the divisors of {num_experts}"
        )


def make_mesh(mesh_cfg: Mapping[str, int], devices: list | None = None) -> jax.sharding.Mesh:
    """A mesh with Auto axes: shardings propagate (GSPMD), `constrain` hints at block boundaries.

    A mesh with no `-1` axis that is smaller than the device count uses the first devices (tests,
    debugging on a slice); one that is larger is an error."""
    devices = jax.devices() if devices is None else devices
    sizes = mesh_shape(mesh_cfg, len(devices), allow_fewer=True)
    devices = devices[: math.prod(sizes.values())]
    return jax.make_mesh(
        tuple(sizes.values()),
        MESH_AXES,
        axis_types=(AxisType.Auto,) * len(MESH_AXES),
        devices=devices,
    )


@contextlib.contextmanager
def use_mesh(mesh: jax.sharding.Mesh) -> Iterator[jax.sharding.Mesh]:
    """Mesh + logical rules: every model construction and jitted step runs inside this."""
    with jax.set_mesh(mesh), nnx.logical_axis_rules(RULES):
        yield mesh


def named(mesh: jax.sharding.Mesh, *names: str | None) -> NamedSharding:
    return NamedSharding(mesh, logical_spec(*names))
