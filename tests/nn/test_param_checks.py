"""apply checks params and state against init at trace time: path, expected and actual."""

from __future__ import annotations

import re
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.nn._module as module_file
from funcnet import models, nn
from funcnet.errors import FuncnetError, ShapeError

KEY = jax.random.key(0)


def _shapes(model):
    """``(params, state)`` of ShapeDtypeStructs, as model.init gives them (nothing run)."""
    return jax.eval_shape(model.init, KEY)


def _trace(model, params, state, x):
    """Traces ``model.apply`` (the check runs while tracing; nothing is compiled)."""
    return jax.eval_shape(lambda p, s, x: model.apply(p, s, x)[0], params, state, x)


def _with(tree, path, value):
    """A copy of nested dicts ``tree`` with ``value`` at ``path`` (None: removed)."""
    tree = dict(tree)
    if len(path) > 1:
        tree[path[0]] = _with(tree[path[0]], path[1:], value)
    elif value is None:
        del tree[path[0]]
    else:
        tree[path[0]] = value
    return tree


def _spec(shape, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(shape, dtype)


def _linear_params(change):
    params, state = _shapes(nn.Linear(8, 16))
    return change(params), state


def _seq():
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Sequential(nn.Linear(16, 4)))


CASES = {
    "conv kernel 5 for 3": (
        nn.Conv2d(3, 8, 3),
        lambda: _shapes(nn.Conv2d(3, 8, 5)),
        (2, 8, 8, 3),
        "model.weight (Conv2d): expected (3, 3, 3, 8) float32, got (5, 5, 3, 8) float32",
    ),
    "linear 32 for 16": (
        nn.Linear(8, 16),
        lambda: _shapes(nn.Linear(8, 32)),
        (4, 8),
        "model.weight (Linear): expected (8, 16) float32, got (8, 32) float32",
    ),
    "bias (1,)": (
        nn.Linear(8, 16),
        lambda: _linear_params(lambda p: _with(p, ("bias",), _spec((1,)))),
        (4, 8),
        "model.bias (Linear): expected (16,) float32, got (1,) float32",
    ),
    "int32 weight": (
        nn.Linear(8, 16),
        lambda: _linear_params(lambda p: _with(p, ("weight",), _spec((8, 16), jnp.int32))),
        (4, 8),
        "model.weight (Linear): expected (8, 16) float32, got (8, 16) int32 (an int32 array "
        "where init makes floating: .astype(jnp.float32))",
    ),
    "transposed linear weight": (
        nn.Linear(8, 16),
        lambda: _linear_params(lambda p: _with(p, ("weight",), _spec((16, 8)))),
        (4, 8),
        "model.weight (Linear): expected (8, 16) float32, got (16, 8) float32 (PyTorch's "
        "(out, in) layout? load PyTorch weights with nn.load_state_dict(model, "
        "torch_state_dict, from_torch=True))",
    ),
    "batchnorm 4 statistics for 3": (
        nn.BatchNorm2d(3),
        lambda: (_shapes(nn.BatchNorm2d(3))[0], _shapes(nn.BatchNorm2d(4))[1]),
        (2, 4, 4, 3),
        "model.running_mean (BatchNorm2d state): expected (3,) float32, got (4,) float32",
    ),
    "lstm 32 for 16": (
        nn.LSTM(8, 16),
        lambda: _shapes(nn.LSTM(8, 32)),
        (2, 5, 8),
        "model.weight_hh_l0 (LSTM): expected (16, 64) float32, got (32, 128) float32",
    ),
    "missing entry": (
        nn.Linear(8, 16),
        lambda: _linear_params(lambda p: _with(p, ("bias",), None)),
        (4, 8),
        "model (Linear): no parameter 'bias' (expected (16,) float32)",
    ),
    "extra entry": (
        nn.Linear(8, 16),
        lambda: _linear_params(lambda p: _with(p, ("scale",), _spec((16,)))),
        (4, 8),
        "model.scale (Linear): unexpected params entry (16,) float32",
    ),
    "nested sequential": (
        _seq(),
        lambda: (_with(_shapes(_seq())[0], ("2", "0", "weight"), _spec((16, 5))), {}),
        (4, 8),
        "model.2.0.weight (Linear): expected (16, 4) float32, got (16, 5) float32",
    ),
    "layer stack of 4 for 6": (
        nn.LayerStack(nn.Linear(8, 8), 6),
        lambda: _shapes(nn.LayerStack(nn.Linear(8, 8), 4)),
        (2, 8),
        "model.weight (Linear): expected (6, 8, 8) float32, got (4, 8, 8) float32 (a "
        "LayerStack of 6 has every parameter and state entry stacked along a leading axis "
        "of 6",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_params_of_another_configuration_are_refused(case):
    model, make, shape, expected = CASES[case]
    params, state = make()
    with pytest.raises(ShapeError, match=re.escape(expected)) as info:
        _trace(model, params, state, _spec(shape))
    assert isinstance(info.value, FuncnetError)
    assert str(info.value).startswith(f"{type(model).__name__}.apply: params/state do not fit")


def test_every_problem_is_listed_bounded():
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(8)])
    params, state = _shapes(nn.Sequential(*[nn.Linear(4, 5) for _ in range(8)]))
    with pytest.raises(ShapeError, match=r"\(16 problems;") as info:
        _trace(model, params, state, _spec((2, 4)))
    lines = str(info.value).splitlines()
    assert sum(line.startswith("  model.") for line in lines) == 10
    assert "  ... and 6 more" in lines


def test_eager_apply_refuses_a_transposed_conv_kernel():
    model = nn.Conv2d(3, 8, 5)
    params, state = model.init(KEY)
    params = {**params, "weight": params["weight"].transpose(3, 2, 0, 1)}
    with pytest.raises(ShapeError, match=re.escape("PyTorch's (out, in, *kernel) layout?")):
        model.apply(params, state, jnp.ones((1, 8, 8, 3)))


def test_swapped_params_and_state_and_a_flat_state_dict_get_a_hint():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    params, state = _shapes(model)
    with pytest.raises(ShapeError, match="params and state look swapped"):
        _trace(model, state, params, _spec((2, 4)))
    flat = nn.state_dict(params)
    with pytest.raises(ShapeError, match=r"(?s)model\['0.weight'\] .*flat state dict"):
        _trace(model, flat, state, _spec((2, 4)))


def test_correct_params_work_under_jit_vmap_and_grad():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    params, state = model.init(KEY)
    x = jnp.ones((3, 4))
    y, _ = jax.jit(lambda p, s: model.apply(p, s, x))(params, state)
    np.testing.assert_allclose(y, model.apply(params, state, x)[0], rtol=1e-6)
    # grad and vmap: traced only (the check is Python on the traced shapes)
    loss = lambda p: model.apply(p, state, x, train=True)[0].sum()
    grads = jax.eval_shape(jax.grad(loss), params)
    assert jax.tree.map(jnp.shape, grads) == jax.tree.map(jnp.shape, params)
    ensemble = jax.eval_shape(jax.vmap(lambda k: model.init(k)[0]), jax.random.split(KEY, 5))
    ys = jax.eval_shape(jax.vmap(lambda p: model.apply(p, state, x)[0]), ensemble)
    assert ys.shape == (5, 3, 2)


def test_other_float_widths_are_accepted():
    model = nn.Linear(4, 8)
    params, state = model.init(KEY)
    half = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    assert model.apply(half, state, jnp.ones((2, 4)))[0].shape == (2, 8)
    y, _ = model.apply(params, state, jnp.ones((2, 4)), precision="bf16")
    assert y.shape == (2, 8)


def test_the_check_runs_at_trace_time_only():
    model = nn.Linear(4, 8)
    params, state = model.init(KEY)
    with mock.patch.object(module_file, "check_params", wraps=module_file.check_params) as spy:
        run = jax.jit(lambda p, s, x: model.apply(p, s, x)[0])
        run(params, state, jnp.ones((2, 4)))
        run(params, state, jnp.ones((2, 4)))
    assert spy.call_count == 1


class _Counted(nn.Module):
    calls = 0

    def __init__(self):
        self.fc = nn.Linear(4, 2)

    def init(self, key):
        type(self).calls += 1
        return super().init(key)

    def forward(self, ctx, x):
        return self.fc(ctx, x)


def test_the_expected_shapes_are_computed_once_per_model():
    model = _Counted()
    params, state = model.init(KEY)
    for _ in range(3):
        model.apply(params, state, jnp.ones((2, 4)))
    assert _Counted.calls == 2  # the init above, and one abstract trace for the check


def test_a_pretrained_model_is_checked_against_its_architecture(tmp_path):
    path = models.save_weights(tmp_path / "mlp.npz", *models.MLP(in_features=6).init(KEY))
    model = models.MLP(in_features=6, weights=path)
    params, state = model.init(KEY)
    assert model.apply(params, state, jnp.ones((2, 6)))[0].shape == (2, 10)
    with pytest.raises(ShapeError, match=r"model.fc1.weight \(Linear\): expected \(6, "):
        _trace(model, *_shapes(models.MLP(in_features=7)), _spec((2, 6)))
