"""The docstrings' Examples and the code of docs/optim.md run and say what they show."""

from __future__ import annotations

import contextlib
import doctest
import importlib
import inspect
import io
import pathlib
import re

import pytest

import funcnet.optim as optim

MODULES = [
    "_adadelta",
    "_adam_variants",
    "_asgd",
    "_base",
    "_cyclic",
    "_ema",
    "_guards",
    "_hyperparams",
    "_lbfgs",
    "_masking",
    "_optimizers",
    "_plateau",
    "_recipe",
    "_rprop",
    "_schedules",
    "_transforms",
    "_wrappers",
]
DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "optim.md"


def test_docstring_examples():
    for name in MODULES:
        module = importlib.import_module(f"funcnet.optim.{name}")
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
        assert result.failed == 0, name
    assert doctest.testmod(importlib.import_module("funcnet.optim._optimizers")).attempted > 0


def test_every_public_name_is_documented():
    for name in dir(optim):
        obj = getattr(optim, name)
        if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        assert obj.__doc__ and obj.__doc__.strip(), name
    text = DOC.read_text()
    for name in ("sgd", "adam", "adamw", "rmsprop", "adagrad", "current_lr", "set_hyperparams",
                 "param_groups", "freeze", "accumulate", "skip_nonfinite", "ReduceLROnPlateau",
                 "clip_grad_norm", "exclude_bias_and_norm", "inject_hyperparams", "all_finite",
                 "zero_nonfinite", "update_if_finite", "with_ema",
                 "ema_params", "adamax", "nadam", "radam", "adadelta", "rprop", "asgd",
                 "asgd_averaged_params", "lbfgs", "cyclic", "cyclic_momentum", "lambda_lr",
                 "multiplicative", "chained", "maximize", "learning_rate",
                 "scale_by_adamax", "scale_by_nadam", "scale_by_radam", "scale_by_adadelta",
                 "scale_by_rprop"):  # fmt: skip
        assert f"`{name}" in text or f"{name}(" in text, name


def test_markdown_code_runs():
    pytest.importorskip("optax")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 6
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), namespace)
    printed = out.getvalue()
    assert "[1e-05, 0.001]" in printed  # the param_groups example
    assert "3 0.001\n4 0.0005\n" in printed  # ReduceLROnPlateau halved the lr after 3 flat epochs
    assert "sgd: funcnet optimizers take hyper-parameters only" in printed
    assert "{'fc1': {'bias': (3,), 'weight': (4, 3)}}" in printed  # the EMA of the parameters
    assert "lbfgs 13.0 [1.0, 1.0]" in printed  # one L-BFGS step solves the quadratic
