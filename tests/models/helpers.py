"""Shared test helpers: meshes and a fast model init."""

from collections.abc import Callable

import jax
import numpy as np
from flax import nnx

from mixlab import sharding


def one_device_mesh() -> jax.sharding.Mesh:
    return sharding.make_mesh({"data": 1}, devices=jax.devices()[:1])


def init(make: Callable[[nnx.Rngs], nnx.Module], mesh: jax.sharding.Mesh, seed: int = 0) -> nnx.Module:
    """`make(rngs)` built abstractly, its variables filled from numpy (std 1/sqrt(fan-in); norm scales 1,
    router biases small and random) and placed with their shardings on `mesh`. Compiling the real
    initialisers costs 5-10 s per model on 2 busy cores, most of a test's time."""
    rng = np.random.default_rng(seed)
    with sharding.use_mesh(mesh):
        graphdef, state = nnx.split(nnx.eval_shape(lambda: make(nnx.Rngs(0))))
        shardings = nnx.get_named_sharding(state, mesh)

        def fill(path, a, s):
            name = str(path[-2])  # path[-1] is `.value`
            if "scale" in name:
                value = np.ones(a.shape)
            elif "bias" in name:
                value = 0.1 * rng.standard_normal(a.shape)
            else:
                value = rng.standard_normal(a.shape) * a.shape[-2] ** -0.5
            return jax.device_put(value.astype(a.dtype), s)

        state = jax.tree.map_with_path(fill, state, shardings)
    return nnx.merge(graphdef, state)
