"""The layer system: naming, immutability, keys, state, containers, errors, transforms."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet.functional as F
from funcnet import nn
from funcnet.errors import ShapeError, StateDictError


class MLP(nn.Module):
    """The seeds' MLP, written as a PyTorch user writes it."""

    def __init__(self, in_features=784):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_features, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, ctx, x):
        x = self.flatten(ctx, x)
        return self.fc2(ctx, F.relu(self.fc1(ctx, x)))


class Noise(nn.Module):
    """Adds uniform noise in train mode: a minimal key-consuming layer."""

    def init(self, key):
        return {}, {}

    def forward(self, ctx, x):
        return x + jax.random.uniform(ctx.next_key(), x.shape) if ctx.train else x


class Counter(nn.Module):
    """Counts its calls in a buffer: a minimal stateful layer."""

    def __init__(self):
        self.count = nn.Buffer((), init=nn.init.zeros, dtype=jnp.int32)
        self.scale = nn.Parameter((3,), init=nn.init.ones)

    def forward(self, ctx, x):
        ctx.set_state("count", ctx.state["count"] + 1)
        return x * ctx.param("scale")


class TwoNoises(nn.Module):
    def __init__(self):
        self.a = Noise()
        self.b = Noise()

    def forward(self, ctx, x):
        return self.a(ctx, x), self.b(ctx, x), self.a(ctx, x)


def test_parameters_are_named_after_attributes(key):
    params, state = MLP().init(key)
    assert jax.tree_util.tree_map(jnp.shape, params) == {
        "fc1": {"weight": (784, 128), "bias": (128,)},
        "fc2": {"weight": (128, 10), "bias": (10,)},
    }
    assert state == {}
    assert list(nn.state_dict(params)) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert nn.num_parameters(params) == 101_770


def test_init_and_apply_under_jit_grad_and_vmap(key):
    model = MLP(in_features=12)
    params, state = jax.jit(model.init)(key)
    x = jax.random.normal(key, (5, 3, 4))
    y, _ = jax.jit(model.apply)(params, state, x)
    eager, _ = model.apply(params, state, x)
    np.testing.assert_allclose(y, eager, rtol=1e-6, atol=1e-6)
    per_example = jax.vmap(lambda xi: model.apply(params, state, xi[None])[0][0])(x)
    np.testing.assert_allclose(per_example, y, rtol=1e-5, atol=1e-5)
    grads = jax.grad(lambda p: jnp.sum(model.apply(p, state, x)[0] ** 2))(params)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)


def test_module_is_immutable_after_construction():
    model = MLP()
    with pytest.raises(AttributeError, match="immutable"):
        model.fc1 = nn.Linear(2, 2)
    with pytest.raises(Exception, match="fc|cannot assign|frozen"):
        model.fc1.in_features = 3


def test_wrong_input_shape_names_the_layer_path(key):
    model = MLP()
    params, state = model.init(key)
    with pytest.raises(
        ShapeError,
        match=r"model\.fc1 \(Linear\): expected input with last dimension 784, got shape \(2, 100\)",
    ):
        jax.jit(model.apply)(params, state, jnp.ones((2, 10, 10)))


def test_params_from_another_model_are_reported(key):
    params, state = MLP(in_features=12).init(key)
    del params["fc2"]
    with pytest.raises(ShapeError, match=r"model\.fc2 \(Linear\): no parameter '(weight|bias)'"):
        MLP(in_features=12).apply(params, state, jnp.ones((1, 12)))


def test_calling_conventions_give_clear_errors(key):
    model = MLP(in_features=4)
    params, state = model.init(key)
    with pytest.raises(TypeError, match="model.apply"):
        model(jnp.ones((1, 4)))
    with pytest.raises(TypeError, match="state must be the dict"):
        model.apply(params, jnp.ones((1, 4)))
    with pytest.raises(TypeError, match="train must be a Python bool"):
        model.apply(params, state, jnp.ones((1, 4)), train=jnp.bool_(True))

    class Stray(nn.Module):
        def forward(self, ctx, x):
            return nn.Linear(4, 2)(ctx, x)

    with pytest.raises(TypeError, match="not a sub-module of Stray"):
        Stray().apply({}, {}, jnp.ones((1, 4)))


def test_keys_are_deterministic_and_distinct_per_layer_and_call(key):
    model = TwoNoises()
    x = jnp.zeros((4,))
    a1, b1, a2 = model.apply({}, {}, x, train=True, key=key)[0]
    again = model.apply({}, {}, x, train=True, key=key)[0]
    other = model.apply({}, {}, x, train=True, key=jax.random.key(1))[0]
    np.testing.assert_array_equal(a1, again[0])
    assert not np.allclose(a1, b1) and not np.allclose(a1, a2)
    assert not np.allclose(a1, other[0])
    with pytest.raises(ValueError, match=r"model\.a \(Noise\) needs a PRNG key.*key="):
        model.apply({}, {}, x, train=True)
    np.testing.assert_array_equal(model.apply({}, {}, x)[0][0], x)  # eval needs no key


def test_raw_uint32_keys_work_too():
    out = TwoNoises().apply({}, {}, jnp.zeros(3), train=True, key=jax.random.PRNGKey(0))[0]
    assert out[0].shape == (3,)


def test_state_is_returned_not_mutated(key):
    model = Counter()
    params, state = model.init(key)
    assert jax.tree_util.tree_map(jnp.shape, (params, state)) == ({"scale": (3,)}, {"count": ()})
    _, new_state = model.apply(params, state, jnp.ones(3))
    _, newer = jax.jit(model.apply)(params, new_state, jnp.ones(3))
    assert int(state["count"]) == 0 and int(new_state["count"]) == 1 and int(newer["count"]) == 2


def test_state_may_not_change_shape(key):
    class Bad(nn.Module):
        def __init__(self):
            self.buf = nn.Buffer((2,), init=nn.init.zeros)

        def forward(self, ctx, x):
            ctx.set_state("buf", jnp.zeros(3))
            return x

    params, state = Bad().init(key)
    with pytest.raises(ShapeError, match=r"model \(Bad\): state 'buf' would change"):
        Bad().apply(params, state, 1.0)


def test_nested_state_and_shared_module_called_twice(key):
    class Outer(nn.Module):
        def __init__(self):
            self.inner = Counter()
            self.alias = self.inner  # the same object: weights are shared, as in PyTorch

        def forward(self, ctx, x):
            return self.alias(ctx, self.inner(ctx, x))

    params, state = Outer().init(key)
    assert list(nn.state_dict(params, state)) == ["inner.scale", "inner.count"]
    _, new_state = Outer().apply(params, state, jnp.ones(3))
    assert int(new_state["inner"]["count"]) == 2


def test_module_list_and_dict_name_parameters_like_pytorch(key):
    class Stack(nn.Module):
        def __init__(self):
            self.layers = nn.ModuleList([nn.Linear(3, 3) for _ in range(2)])
            self.heads = nn.ModuleDict({"cls": nn.Linear(3, 2), "reg": nn.Linear(3, 1)})

        def forward(self, ctx, x):
            for layer in self.layers:
                x = F.relu(layer(ctx, x))
            return {name: head(ctx, x) for name, head in self.heads.items()}

    params, state = Stack().init(key)
    assert list(nn.state_dict(params)) == [
        "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
        "heads.cls.weight", "heads.cls.bias", "heads.reg.weight", "heads.reg.bias",
    ]  # fmt: skip
    out, _ = Stack().apply(params, state, jnp.ones((4, 3)))
    assert out["cls"].shape == (4, 2) and out["reg"].shape == (4, 1)
    with pytest.raises(ShapeError, match=r"model\.layers\.0 \(Linear\)"):
        Stack().apply(params, state, jnp.ones((4, 5)))


def test_sequential_numbers_layers_and_accepts_functions(key):
    model = nn.Sequential(nn.Linear(4, 8), jax.nn.relu, nn.Linear(8, 2))
    params, _ = model.init(key)
    assert list(nn.state_dict(params)) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    named = nn.Sequential({"fc": nn.Linear(4, 2)})
    assert list(nn.state_dict(named.init(key)[0])) == ["fc.weight", "fc.bias"]
    assert len(model) == 3 and isinstance(model[0], nn.Linear)


def test_adding_a_layer_keeps_the_other_layers_initial_values(key):
    class A(nn.Module):
        def __init__(self, extra):
            self.fc1 = nn.Linear(3, 3)
            if extra:
                self.fc0 = nn.Linear(3, 3)
            self.fc2 = nn.Linear(3, 3)

    p1, _ = A(False).init(key)
    p2, _ = A(True).init(key)
    np.testing.assert_array_equal(p1["fc2"]["weight"], p2["fc2"]["weight"])


def test_repr_and_summary():
    model = MLP()
    assert repr(model) == (
        "MLP(\n  (flatten): Flatten()\n  (fc1): Linear(in_features=784, out_features=128)\n"
        "  (fc2): Linear(in_features=128, out_features=10)\n)"
    )
    text = model.summary((32, 28, 28))
    assert "fc1 (Linear)" in text and "(32, 128)" in text and "100,480" in text
    assert "Trainable params: 101,770" in text


def test_state_dict_round_trip_and_reports(key):
    model = Counter()
    params, state = model.init(key)
    flat = nn.state_dict(params, state)
    assert set(flat) == {"scale", "count"}
    p2, s2 = nn.load_state_dict(model, {k: np.asarray(v) for k, v in flat.items()})
    assert jax.tree_util.tree_map(
        lambda a, b: bool(np.array_equal(a, b)), (p2, s2), (params, state)
    )
    bad = {"scale": np.ones(4), "extra": np.ones(1)}
    with pytest.raises(StateDictError) as info:
        nn.load_state_dict(model, bad)
    message = str(info.value)
    assert "missing keys: count" in message and "unexpected keys: extra" in message
    assert "scale: expected shape (3,), got (4,)" in message
    p3, s3 = nn.load_state_dict(
        model, {"scale": np.full(3, 2.0), "extra": 1}, strict=False, into=(params, state)
    )
    assert float(p3["scale"][0]) == 2.0 and int(s3["count"]) == 0


def _deep(n):
    return nn.Sequential(*[nn.Linear(4, 4) for _ in range(n)])


def test_deep_model_traces_once_and_runs_no_funcnet_python_per_call(key, monkeypatch):
    model = _deep(100)
    params, state = model.init(key)
    traces = []

    def step(p, s, x):
        traces.append(1)
        return model.apply(p, s, x)[0]

    step = jax.jit(step)
    x = jnp.ones((2, 4))
    first = step(params, state, x)

    def forbidden(*args, **kwargs):
        raise AssertionError("funcnet Python ran after compilation")

    monkeypatch.setattr(nn.Module, "apply", forbidden)
    monkeypatch.setattr(nn.Context, "__init__", forbidden)
    for _ in range(3):
        np.testing.assert_array_equal(step(params, state, x), first)
    assert len(traces) == 1


def test_mlp_train_step_compiles_once_and_loss_falls(key):
    model = MLP(in_features=64)
    params, state = model.init(key)
    kx, kw = jax.random.split(key)
    x = jax.random.normal(kx, (256, 64))
    y = jnp.argmax(x @ jax.random.normal(kw, (64, 10)), axis=-1)
    opt = optax.adam(1e-2)
    opt_state = opt.init(params)
    traces = []

    def loss_fn(p, xb, yb):
        logits, _ = model.apply(p, state, xb, train=True)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, yb))

    def step(p, o, xb, yb):
        traces.append(1)
        loss, grads = jax.value_and_grad(loss_fn)(p, xb, yb)
        updates, o = opt.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    step = jax.jit(step, donate_argnums=(0, 1))
    losses = []
    for i in range(60):
        sl = slice((i % 4) * 64, (i % 4 + 1) * 64)
        params, opt_state, loss = step(params, opt_state, x[sl], y[sl])
        losses.append(float(loss))
    assert len(traces) == 1
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])


def test_operations_are_named_after_the_layer_path():
    """Profiles and compiled HLO attribute every operation to its layer (``jax.named_scope``
    from the attribute path), as Flax does; the computation itself is unchanged."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
            self.head = nn.Linear(8, 2)

        def forward(self, ctx, x):
            return self.head(ctx, self.encoder(ctx, x))

    model = Net()
    params, state = model.init(jax.random.key(0))
    x = jnp.ones((3, 4))
    lowered = jax.jit(lambda p, x: model.apply(p, state, x)[0]).lower(params, x)
    # the lowering's locations, not the compiled text: a persistent-cache hit keeps the
    # names of whichever program was compiled first
    names = set(re.findall(r'loc\("([^"]+)"', lowered.as_text(debug_info=True)))
    assert any("/encoder/0/dot_general" in n for n in names), names
    assert any("/encoder/1/tanh" in n for n in names), names
    assert any("/head/dot_general" in n for n in names), names
    enc, head = params["encoder"]["0"], params["head"]
    want = jnp.tanh(x @ enc["weight"] + enc["bias"]) @ head["weight"] + head["bias"]
    np.testing.assert_allclose(lowered.compile()(params, x), want, rtol=1e-6)
