"""The package's metadata tells the truth: Python floor, dependencies, licence."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

#: Runtime dependencies funcnet needs without importing them itself.
INDIRECT = {
    "jaxlib": "jax's compiled backend",
    "optax": "funcnet's optimizers follow its protocol and the docs combine the two",
}


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower().replace("-", "_")


def test_every_runtime_dependency_is_imported_by_funcnet():
    source = "\n".join(p.read_text() for p in (ROOT / "funcnet").rglob("*.py"))
    for requirement in PROJECT["dependencies"]:
        name = _name(requirement)
        if name in INDIRECT:
            continue
        assert re.search(rf"^\s*(import|from) {name}\b", source, re.M), (
            f"{requirement} is declared but funcnet never imports it"
        )


def test_python_floor_is_jaxs_and_the_readme_says_it():
    assert PROJECT["requires-python"] == ">=3.11"  # jax 0.10 (our floor) requires 3.11
    assert "Python ≥ 3.11" in (ROOT / "README.md").read_text()
    classifiers = [c for c in PROJECT["classifiers"] if re.fullmatch(r".*:: 3\.\d+", c)]
    assert min(classifiers).endswith(":: 3.11")


def test_licence_is_an_spdx_expression_with_its_file():
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_the_install_is_a_path_entry_type_checkers_follow():
    # pyright, Pylance and mypy find packages through path entries (.pth files), not through
    # import hooks such as setuptools' editable finder
    hooks = [
        finder
        for finder in sys.meta_path
        if "editable" in f"{getattr(finder, '__module__', '')} {type(finder).__module__}"
    ]
    assert not hooks, hooks
    origin = Path(importlib.util.find_spec("funcnet").origin)
    assert str(origin.parents[1]) in [str(Path(p).resolve()) for p in sys.path if p]
