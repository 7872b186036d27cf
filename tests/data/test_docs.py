"""The docstrings' examples run, and every public name of funcnet.data is documented."""

import doctest
import importlib

import pytest

import funcnet.data

MODULES = [
    "funcnet.data._dataset",
    "funcnet.data._collate",
    "funcnet.data._loader",
    "funcnet.data.transforms",
    "funcnet.data.datasets._digits",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def _public(module):
    return [getattr(module, n) for n in module.__all__ if not n.startswith("_")]


def test_every_public_name_has_a_docstring():
    names = _public(funcnet.data) + _public(funcnet.data.transforms)
    names += _public(funcnet.data.datasets)
    for obj in names:
        assert (obj.__doc__ or "").strip(), obj
        for attr, member in vars(obj).items() if isinstance(obj, type) else []:
            if callable(member) and not attr.startswith("_"):
                assert (member.__doc__ or "").strip(), f"{obj.__name__}.{attr}"
