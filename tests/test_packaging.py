"""The package's metadata tells the truth: Python floor, dependencies, licence."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

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


def _floors() -> dict[str, Version]:
    """Each runtime dependency's lowest version, as pyproject declares it (``name>=X``)."""
    floors = {}
    for line in PROJECT["dependencies"]:
        requirement = Requirement(line)
        (specifier,) = requirement.specifier  # exactly one: the floor
        assert specifier.operator == ">=", f"{line}: a runtime dependency declares a floor"
        floors[canonicalize_name(requirement.name)] = Version(specifier.version)
    return floors


def test_ci_floor_pins_are_the_declared_floors():
    # .ci/run installs the Python 3.11 environment with these pins: the floors it tests are
    # the ones users are promised
    pins = {}
    for line in (ROOT / ".ci" / "floor.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{line}: pin one version"
            pins[canonicalize_name(requirement.name)] = Version(specifier.version)
    assert pins == _floors()
    assert "-c .ci/floor.txt" in (ROOT / ".ci" / "run").read_text()


def _links(markdown: str) -> list[str]:
    """The targets of a Markdown text's links and images, outside code."""
    prose = re.sub(r"```.*?```", "", markdown, flags=re.S)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    inline = re.findall(r"\]\(\s*<?([^)\s>]+)", prose)
    reference = re.findall(r"^[\s>*+\-\d.]*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", prose, re.M)
    html = re.findall(r"(?:href|src)\s*=\s*[\"']([^\"']+)", prose)
    return inline + reference + html


def test_readme_has_no_relative_links():
    # the README is the package's long description: on the package index a relative link
    # (docs/x.md) leads nowhere, so paths are written as code and links are absolute
    links = _links((ROOT / "README.md").read_text())
    relative = [link for link in links if not re.match(r"(https?|mailto):", link)]
    assert not relative, f"README.md links to {relative}: write paths as `code`"


def test_readme_names_every_python_the_classifiers_list():
    versions = sorted(
        (c.rsplit(" ", 1)[1] for c in PROJECT["classifiers"] if re.fullmatch(r".*:: 3\.\d+", c)),
        key=lambda v: tuple(map(int, v.split("."))),
    )
    assert len(versions) >= 3
    listed = f"Python {', '.join(versions[:-1])} and {versions[-1]}"  # Python 3.11, 3.12 and 3.13
    assert listed in (ROOT / "README.md").read_text()
