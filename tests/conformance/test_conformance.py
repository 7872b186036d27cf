"""Checks that every public layer passes, run over the whole conformance registry.

Each family registers its layers in ``registry_<family>.py``. For every entry: jit and
eager agree, ``jax.eval_shape`` agrees with the real output, gradients are finite, a
bfloat16 input gives the documented output dtype, a wrong input raises ShapeError naming
the layer, and the parameter tree (names, shapes, dtypes) matches the golden JSON, so a
rename that would break users' checkpoints fails loudly. Every layer hashes, equal
dataclass layers compare equal, and none can be changed once built. Regenerate the golden file after
a deliberate change with ``FUNCNET_UPDATE_GOLDEN=1 pytest tests/conformance``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import nn
from funcnet.errors import FrozenModuleError, ShapeError
from tests.conformance._entry import Entry

HERE = pathlib.Path(__file__).parent
GOLDEN = HERE / "golden_params.json"
NOT_LAYERS = {"Module", "ModuleList", "ModuleDict"}


def _load() -> list[Entry]:
    entries: list[Entry] = []
    for path in sorted(HERE.glob("registry_*.py")):
        entries.extend(importlib.import_module(f"tests.conformance.{path.stem}").ENTRIES)
    return entries


ENTRIES = _load()
BY_ID = {e.id: e for e in ENTRIES}


def _arrays(specs, key, float_dtype=None):
    out = []
    for i, (shape, dtype) in enumerate(specs):
        k = jax.random.fold_in(key, i)
        if jnp.issubdtype(jnp.dtype(dtype), jnp.integer):
            out.append(jax.random.randint(k, shape, 0, 4).astype(dtype))
        else:
            out.append(jax.random.normal(k, shape, float_dtype or dtype))
    return out


def _pick(entry, out):
    if entry.output is not None:
        return entry.output(out)
    return out[0] if isinstance(out, tuple) else out


def _modes(entry):
    return [False, True] if entry.train else [False]


def _run(entry, module, params, state, xs, train):
    key = jax.random.key(7) if train else None
    out, new_state = module.apply(params, state, *xs, train=train, key=key, **entry.kwargs)
    return _pick(entry, out), new_state


@pytest.fixture(params=ENTRIES, ids=lambda e: e.id)
def entry(request):
    return request.param


def test_registry_ids_are_unique():
    ids = [e.id for e in ENTRIES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_every_public_layer_is_registered():
    public = {
        name
        for name, obj in vars(nn).items()
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and name not in NOT_LAYERS
    }
    covered = {e.id.split("-")[0] for e in ENTRIES}
    assert not public - covered, (
        f"public layers without a conformance entry: {sorted(public - covered)}"
    )


def test_layers_are_immutable_and_compare_by_value(entry):
    """A model is a static argument of jit (TrainState holds it): it must hash, equal
    dataclass layers must be equal with equal hashes, and none may change once built."""
    module, again = entry.make(), entry.make()
    hash(module)
    if dataclasses.is_dataclass(module):
        assert module == again and hash(module) == hash(again)
        assert dataclasses.replace(module) == module
    with pytest.raises(FrozenModuleError, match="immutable after construction"):
        module.extra = 1
    children = dict(module.named_children())
    for name in children:
        with pytest.raises(FrozenModuleError, match=f"tried to set {name!r}"):
            setattr(module, name, children[name])


@pytest.mark.one_version  # the layers' own maths: CI's newest-jax pass skips it
def test_jit_matches_eager_and_eval_shape(entry, key):
    module = entry.make()
    params, state = module.init(key)
    xs = _arrays(entry.inputs, jax.random.fold_in(key, 1))
    for train in _modes(entry):
        run = lambda p, s, *a, t=train: _run(entry, module, p, s, a, t)
        eager, eager_state = run(params, state, *xs)
        jitted, jit_state = jax.jit(run)(params, state, *xs)
        spec = jax.eval_shape(run, params, state, *xs)[0]
        assert (
            (spec.shape, spec.dtype) == (jitted.shape, jitted.dtype) == (eager.shape, eager.dtype)
        )
        # the same float32 ops, fused or op by op: at most other summation orders, ~sqrt(n)
        # U32 sum|terms| ~ 1e-6 for these small inputs (<= 3.6e-7 measured, every entry)
        np.testing.assert_allclose(
            np.asarray(jitted, np.float32), np.asarray(eager, np.float32), rtol=2e-5, atol=2e-5
        )
        assert jax.tree_util.tree_structure(jit_state) == jax.tree_util.tree_structure(state)
        for a, b in zip(
            jax.tree_util.tree_leaves(jit_state), jax.tree_util.tree_leaves(eager_state)
        ):
            np.testing.assert_allclose(
                np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=2e-5, atol=2e-5
            )
        same = jax.tree_util.tree_map(
            lambda a, b: a.shape == b.shape and a.dtype == b.dtype, jit_state, state
        )
        assert all(jax.tree_util.tree_leaves(same)), "apply changed the state's shapes or dtypes"


@pytest.mark.one_version  # the layers' own maths: CI's newest-jax pass skips it
def test_gradients_are_finite(entry, key):
    if not entry.grad:
        pytest.skip("entry has no differentiable parameters")
    module = entry.make()
    params, state = module.init(key)
    xs = _arrays(entry.inputs, key)
    train = entry.train

    def loss(p):
        out, _ = _run(entry, module, p, state, xs, train)
        return jnp.sum(jnp.sin(out.astype(jnp.float32)))

    grads = jax.jit(jax.grad(loss))(params)
    for leaf in jax.tree_util.tree_leaves(grads):
        assert np.all(np.isfinite(np.asarray(leaf)))


@pytest.mark.one_version  # the layers' own maths: CI's newest-jax pass skips it
def test_bfloat16_input_gives_documented_dtype(entry, key):
    if entry.bf16_dtype is None:
        pytest.skip("entry takes no floating input")
    module = entry.make()
    params, state = module.init(key)
    xs = _arrays(entry.inputs, key, float_dtype=jnp.bfloat16)
    out = jax.jit(lambda p, s, *a: _run(entry, module, p, s, a, False)[0])(params, state, *xs)
    assert out.dtype == jnp.dtype(entry.bf16_dtype)
    assert np.all(np.isfinite(np.asarray(out, np.float32)))


def test_wrong_input_raises_shape_error_naming_the_layer(entry, key):
    if entry.bad_inputs is None:
        pytest.skip("no wrong input defined for this entry")
    module = entry.make()
    params, state = module.init(key)
    bad = [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in entry.bad_inputs]
    with pytest.raises(ShapeError, match=entry.bad_match or "model"):
        jax.eval_shape(lambda p, s, *a: _run(entry, module, p, s, a, False), params, state, *bad)


def _tree_spec(module) -> dict:
    params, state = jax.eval_shape(module.init, jax.random.key(0))
    flat = nn.state_dict(params, state)
    return {k: [list(v.shape), str(v.dtype)] for k, v in flat.items()}


def test_parameter_tree_matches_golden():
    current = {e.id: _tree_spec(e.make()) for e in ENTRIES}
    if os.environ.get("FUNCNET_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    missing = sorted(set(current) - set(golden))
    assert not missing, (
        f"no golden parameter tree for {missing}: run FUNCNET_UPDATE_GOLDEN=1 pytest tests/conformance"
    )
    changed = {k: (golden[k], current[k]) for k in current if golden[k] != current[k]}
    assert not changed, f"parameter trees changed (breaks users' checkpoints): {changed}"
