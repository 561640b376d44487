"""Every config in configs/ builds, resolves and names its command in its docstring."""

import glob
import importlib
import os

import pytest

from mixlab import train

CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob("configs/*.py") if not p.endswith("__init__.py"))


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_and_resolves(name):
    module = importlib.import_module(f"configs.{name}")
    assert f"--config configs/{name}.py" in module.__doc__
    for arg in (None, "runlocal"):
        setup = train.resolve(module.get_config(arg))
        assert setup.total_steps > 0
