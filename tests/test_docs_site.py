"""The documentation site is complete: every page in the nav, every module on an API page,
every public name documented. Cheap checks that need no MkDocs; ``mkdocs build --strict``
(in CI) checks links, anchors and docstring syntax.
"""

from __future__ import annotations
import __future__

import ast
import dataclasses
import importlib
import itertools
import re
import sys
import types
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGE = ROOT / "funcnet"


def nav_entries(config: str) -> list[str]:
    """The ``.md`` paths listed under ``nav:`` in an mkdocs.yml text."""
    block = re.search(r"^nav:\n((?:[ \t]+.*\n|\n)*)", config, re.M)
    assert block, "mkdocs.yml has no nav"
    return re.findall(r"^\s*-\s*(?:[^\n]*?:\s+)?(\S+\.md)\s*$", block.group(1), re.M)


def doc_pages() -> list[str]:
    """Every Markdown page under docs/, relative to it."""
    return sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))


def public_modules() -> list[str]:
    """Every funcnet module or package without an underscore in its dotted name."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if not any(part.startswith("_") for part in parts):
            names.append(".".join(parts))
    return names


def api_pages() -> dict[str, str]:
    """The module each ``::: module`` directive in docs/api/ renders, and its page."""
    found = {}
    for page in sorted((DOCS / "api").glob("*.md")):
        for module in re.findall(r"^:::\s+(\S+)\s*$", page.read_text(), re.M):
            found[module] = page.name
    return found


def public_names(module: types.ModuleType) -> list[str]:
    """``__all__``, or (without one) the names that do not start with an underscore."""
    names = getattr(module, "__all__", None)
    if names is None:
        future = type(__future__.annotations)  # `from __future__ import x` binds x
        names = [n for n, v in vars(module).items() if not isinstance(v, future)]
    return [n for n in names if not n.startswith("_")]


def own_docstring(obj: object) -> str:
    """A function's, class's or module's docstring, without generated or inherited ones."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__
    doc = (doc or "").strip()
    if isinstance(obj, type) and doc.startswith(f"{obj.__name__}("):
        return ""  # written by @dataclass or NamedTuple from the fields
    return doc


@cache
def _attribute_docstrings(path: Path) -> dict[str, str]:
    """Module-level ``NAME = value`` followed by a string literal: the attribute's docs."""
    body = ast.parse(path.read_text()).body
    docs = {}
    for node, after in itertools.pairwise([*body, None]):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        elif isinstance(node, ast.AnnAssign):
            target = node.target
        elif isinstance(node, getattr(ast, "TypeAlias", ())):  # `type X = ...`, 3.12+
            target = node.name
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        is_doc = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
        text = after.value.value if is_doc else ""
        docs[target.id] = docs.get(target.id) or (text if isinstance(text, str) else "")
    return docs


def data_docstring(module: str, name: str) -> str | None:
    """The attribute docstring of ``name`` where funcnet's subpackage defines it.

    None if no file of that subpackage assigns ``name`` at module level.
    """
    top = PACKAGE / module.split(".")[1] if "." in module else PACKAGE / "__init__.py"
    files = sorted(top.rglob("*.py")) if top.is_dir() else [top.with_suffix(".py")]
    found = [_attribute_docstrings(f) for f in files if name in _attribute_docstrings(f)]
    return max((d[name] for d in found), key=len) if found else None


def undocumented(module_name: str) -> list[str]:
    """The public names of a module that have no docstring."""
    module = importlib.import_module(module_name)
    missing = []
    for name in public_names(module):
        obj = getattr(module, name)
        if isinstance(obj, types.FunctionType | type | types.ModuleType):
            doc = own_docstring(obj)
        elif callable(obj) and getattr(obj, "__doc__", None) not in (None, type(obj).__doc__):
            doc = obj.__doc__.strip()  # a jitted or otherwise wrapped function
        else:
            doc = data_docstring(module_name, name)
        if not doc:
            missing.append(name)
    return missing


def nav_problems(config: str, pages: list[str]) -> list[str]:
    """Pages missing from the nav, nav entries without a page, and duplicate entries."""
    nav = nav_entries(config)
    problems = [f"not in the nav: {p}" for p in sorted(set(pages) - set(nav))]
    problems += [f"no such page: {p}" for p in sorted(set(nav) - set(pages))]
    return problems + [f"listed twice: {p}" for p in sorted({p for p in nav if nav.count(p) > 1})]


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_exists():
    assert nav_problems((ROOT / "mkdocs.yml").read_text(), doc_pages()) == []


def test_every_public_module_has_an_api_page():
    pages = api_pages()
    assert sorted(set(public_modules()) - set(pages)) == [], "modules without an API page"
    assert sorted(set(pages) - set(public_modules())) == [], "API pages of no public module"


@pytest.mark.parametrize("module", public_modules())
def test_every_public_name_has_a_docstring(module):
    assert importlib.import_module(module).__doc__, f"{module} has no module docstring"
    assert undocumented(module) == []


# The checks above must be able to fail: each on a deliberately broken input.


def test_nav_check_sees_a_page_left_out_and_a_missing_page():
    config = (
        "site_name: x\nnav:\n  - Home: index.md\n  - Guides:\n      - a.md\n  - b.md\ntheme: {}\n"
    )
    assert nav_entries(config) == ["index.md", "a.md", "b.md"]
    assert nav_problems(config, ["index.md", "a.md", "c.md"]) == [
        "not in the nav: c.md",
        "no such page: b.md",
    ]


@dataclasses.dataclass
class _NoDocs:
    x: int


def _no_docs(): ...


def test_docstring_check_sees_missing_docstrings(monkeypatch):
    fake = types.ModuleType("funcnet.optim._fake_for_test", "A module.")
    fake.__all__ = ["NoDocs", "no_docs", "Params", "Unknown", "documented", "_private"]
    fake.NoDocs, fake.no_docs, fake.documented = _NoDocs, _no_docs, nav_entries
    fake.Params, fake.Unknown, fake._private = object(), 3, _no_docs  # Params: in _base.py
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    assert undocumented(fake.__name__) == ["NoDocs", "no_docs", "Unknown"]


def test_attribute_docstring_check_sees_a_missing_one(tmp_path):
    source = tmp_path / "m.py"
    source.write_text('A = 1\nB: int = 2\n"""The docs of B."""\nC = 3\n')
    assert _attribute_docstrings(source) == {"A": "", "B": "The docs of B.", "C": ""}
