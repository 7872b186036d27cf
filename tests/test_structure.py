"""The shape of the code that issue #19 set: funcnet.train stays a thin layer of short
functions, imports happen at module level, and the checkpoint package does not import
the top-level package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "funcnet"
OPTIONAL = ("matplotlib", "ipywidgets", "tqdm.notebook", "torch")


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        body = body[1:]  # the docstring
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


@pytest.mark.parametrize("path", sorted((ROOT / "train").glob("*.py")), ids=lambda p: p.name)
def test_train_functions_are_short_and_import_at_module_level(path):
    for node in _functions(path):
        assert _body_lines(node) < 50, f"{path.name}:{node.name} has {_body_lines(node)} lines"
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import | ast.ImportFrom):
                names = [inner.module or ""] if isinstance(inner, ast.ImportFrom) else []
                names += [alias.name for alias in getattr(inner, "names", [])]
                assert any(n.startswith(OPTIONAL) for n in names), (
                    f"{path.name}:{node.name} imports {names} inside a function"
                )


def test_checkpoint_does_not_import_the_top_level_package():
    for path in (ROOT / "checkpoint").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert all(a.name != "funcnet" for a in node.names), path.name
            if isinstance(node, ast.ImportFrom) and node.module == "funcnet":
                raise AssertionError(f"{path.name} imports from the top-level package")
