"""The public API is typed: annotations everywhere, layer signatures, and (when pyright is
installed) pyright's own measure and a check of funcnet with optax in both directions."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import funcnet
from funcnet import nn

# Dunder methods users call (the others belong to Python's protocols, as in pyright's count).
_CALLED_DUNDERS = ("__init__", "__call__")


def _public_names(module: types.ModuleType) -> list[str]:
    """What type checkers take as ``module``'s public names: its ``__all__``, or else its
    public definitions, its ``import x as x`` re-exports and what its ``import *`` brings
    (the rules for stubs and ``py.typed`` packages)."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    tree = ast.parse(inspect.getsource(module))
    names = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.names[0].name == "*":
            names += _public_names(importlib.import_module(node.module or ""))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names += [
                a.asname for a in node.names if a.asname and a.asname == a.name.split(".")[-1]
            ]
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return [n for n in names if not n.startswith("_")]


def _public_modules() -> Iterator[types.ModuleType]:
    """funcnet and every funcnet module reachable through its public names."""
    seen: set[str] = set()
    todo = [funcnet]
    while todo:
        module = todo.pop()
        if module.__name__ in seen:
            continue
        seen.add(module.__name__)
        yield module
        for name in _public_names(module):
            value = getattr(module, name)
            if isinstance(value, types.ModuleType) and value.__name__.startswith("funcnet."):
                todo.append(value)


def _ours(obj: Any) -> bool:
    return getattr(obj, "__module__", "").startswith("funcnet")


def _public_objects() -> dict[str, Any]:
    """Every public function and class of funcnet's own, by its public dotted name."""
    found: dict[str, Any] = {}
    for module in _public_modules():
        for name in _public_names(module):
            value = getattr(module, name)
            if (inspect.isfunction(value) or inspect.isclass(value)) and _ours(value):
                found.setdefault(f"{module.__name__}.{name}", value)
    return found


def _methods(cls: type) -> Iterator[tuple[str, Callable[..., Any], bool, bool]]:
    """``(name, function, has_self, needs_return)`` for the public methods and properties
    that ``cls`` and its funcnet base classes define (``__init__`` needs no return type)."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not _ours(klass):
            continue
        for name, attr in vars(klass).items():
            if name in seen or (name.startswith("_") and name not in _CALLED_DUNDERS):
                continue
            seen.add(name)
            if isinstance(attr, property):
                if attr.fget is not None:
                    yield name, attr.fget, True, True
            elif isinstance(attr, staticmethod):
                yield name, attr.__func__, False, True
            elif isinstance(attr, classmethod):
                yield name, attr.__func__, True, True
            elif inspect.isfunction(attr) and _ours(attr):
                yield name, attr, True, name != "__init__"


def _unannotated(fn: Callable[..., Any], skip_first: bool, needs_return: bool) -> list[str]:
    """The parameters of ``fn`` without an annotation (and ``return`` when it has none)."""
    signature = inspect.signature(fn, follow_wrapped=True)
    params = list(signature.parameters.values())[1 if skip_first else 0 :]
    missing = [p.name for p in params if p.annotation is inspect.Parameter.empty]
    if needs_return and signature.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def _missing_annotations() -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    for name, obj in _public_objects().items():
        if inspect.isfunction(obj):
            entries = [(name, obj, False, True)]
        else:
            entries = [(f"{name}.{m}", fn, has_self, ret) for m, fn, has_self, ret in _methods(obj)]
        for where, fn, skip_first, needs_return in entries:
            missing = _unannotated(fn, skip_first, needs_return)
            if missing:
                problems[where] = missing
    return problems


def test_walk_reaches_the_public_api() -> None:
    names = _public_objects()
    for expected in (
        "funcnet.nn.Linear",
        "funcnet.optim.adamw",
        "funcnet.train.TrainState",
        "funcnet.train.restore_training",
        "funcnet.nn.init.kaiming_uniform",
        "funcnet.data.transforms.Normalize",
    ):
        assert expected in names
    assert len(names) > 400


def test_every_public_callable_is_annotated() -> None:
    assert _missing_annotations() == {}


def _layer_classes() -> dict[str, type[nn.Module]]:
    out: dict[str, type[nn.Module]] = {}
    for module in (nn, importlib.import_module("funcnet.models")):
        for name in _public_names(module):
            value = getattr(module, name)
            if inspect.isclass(value) and issubclass(value, nn.Module):
                out[f"{module.__name__}.{name}"] = value
    return out


def test_layer_signature_lists_the_constructor_arguments() -> None:
    layers = _layer_classes()
    assert len(layers) > 100
    wrong = {}
    for name, cls in layers.items():
        expected = list(inspect.signature(cls.__init__).parameters)[1:]
        got = list(inspect.signature(cls).parameters)
        if got != expected:
            wrong[name] = got
    assert wrong == {}


def test_linear_signature_is_pytorchs() -> None:
    signature = inspect.signature(nn.Linear)
    assert list(signature.parameters)[:3] == ["in_features", "out_features", "bias"]
    assert signature.parameters["bias"].default is True
    assert signature.return_annotation is inspect.Signature.empty
    conv = inspect.signature(nn.Conv2d).parameters
    assert [conv[k].default for k in ("stride", "padding", "dilation", "groups")] == [1, 0, 1, 1]
    help_text = re.sub(r"[\s|]+", " ", _help_text(nn.Linear))  # 3.13 wraps the signature
    assert re.search(
        r"Linear\( ?in_features: 'int', out_features: 'int', bias: 'bool' = True", help_text
    )


def _help_text(obj: Any) -> str:
    import pydoc

    return pydoc.render_doc(obj, renderer=pydoc.plaintext)


# ------------------------------------------------------------------------------ pyright
_GOOD = """
    import jax
    import jax.numpy as jnp
    import optax

    from funcnet import nn, optim, train

    tx: optax.GradientTransformation = optax.chain(
        optax.clip_by_global_norm(1.0), optim.adamw(1e-3)
    )
    mixed: optim.GradientTransformation = optim.chain(optax.clip_by_global_norm(1.0), optim.sgd(0.1))
    model = nn.Linear(3, 2)
    params, model_state = model.init(jax.random.key(0))
    state = train.TrainState.create(model, optax.adam(1e-3), jax.random.key(1))
    state = train.TrainState.create(model, optimizer=tx, key=jax.random.key(1))
    updates, opt_state = mixed.update(params, mixed.init(params), params)
    params = optim.apply_updates(params, updates)
    y, model_state = model.apply(params, model_state, jnp.ones((4, 3)))
    layer: nn.Linear = nn.Linear(in_features=3, out_features=2, bias=False)
"""

# Each line marked "# error" must be one: proof that the checks above are made, not skipped.
_BAD = """
    from typing import Any

    from funcnet import nn, optim


    def update(grads: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        return grads, state


    tx = optim.GradientTransformation(lambda params: (), update)  # error: not optax's names
    layer = nn.Linear(3, 2, nonsense=1)  # error: not an argument of Linear
    model: nn.Linear = nn.Conv2d(1, 2, 3)  # error: not a Linear
"""


def _pyright(tmp_path: Path, *args: str) -> dict[str, Any]:
    """Runs pyright in the environment of this interpreter (it reads ``python`` on PATH)."""
    pytest.importorskip("pyright")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = sys.prefix
    run = subprocess.run(
        [sys.executable, "-m", "pyright", "--outputjson", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return json.loads(run.stdout)


def test_pyright_verifytypes_is_complete(tmp_path: Path) -> None:
    report = _pyright(tmp_path, "--verifytypes", "funcnet", "--ignoreexternal")
    completeness = report["typeCompleteness"]
    assert completeness["packageRootDirectory"], report.get("generalDiagnostics")
    unknown = [
        symbol["name"]
        for symbol in completeness["symbols"]
        if symbol["isExported"] and not symbol["isTypeKnown"]
    ]
    assert unknown == []
    assert completeness["completenessScore"] == 1


def _errors(report: dict[str, Any]) -> list[tuple[str, int]]:
    return [
        (Path(d["file"]).name, d["range"]["start"]["line"])
        for d in report["generalDiagnostics"]
        if d["severity"] == "error"
    ]


def test_pyright_accepts_funcnet_with_optax(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(textwrap.dedent(_GOOD))
    bad = textwrap.dedent(_BAD)
    (tmp_path / "bad.py").write_text(bad)
    report = _pyright(tmp_path, "good.py", "bad.py")
    errors = _errors(report)
    assert [e for e in errors if e[0] == "good.py"] == []
    bad_lines = sorted({line for name, line in errors if name == "bad.py"})
    marked = [i for i, line in enumerate(bad.splitlines()) if "# error" in line]
    assert len(marked) == 3
    assert bad_lines == marked, report["generalDiagnostics"]


def test_mypy_strict_accepts_funcnet_with_optax(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    (tmp_path / "good.py").write_text(textwrap.dedent(_GOOD))
    out, err, status = api.run(
        [
            "--strict",
            "--follow-untyped-imports",  # optax ships no py.typed marker
            "--cache-dir",
            str(tmp_path / "cache"),
            str(tmp_path / "good.py"),
        ]
    )
    assert status == 0, out + err
