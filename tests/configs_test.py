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


def test_study_runlocal_flag_and_scale_are_one_config():
    """`:runlocal` (every config's CPU switch) and `:scale=runlocal` give the study the same model, data,
    budget and evaluation tasks."""
    study = importlib.import_module("configs.code_math_study")
    a, b = study.get_config("runlocal"), study.get_config("scale=runlocal")
    assert a.to_json_best_effort() == b.to_json_best_effort()
    assert a.eval.tasks == "math_free,output_pred" and a.train.steps == 200
