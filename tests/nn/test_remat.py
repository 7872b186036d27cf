"""Remat and remat= on containers: the numbers of the unwrapped model, less memory kept."""

from __future__ import annotations

import doctest
import pathlib
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.functional as F
import funcnet.nn._remat as remat_module
from funcnet import nn
from funcnet.errors import ShapeError

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "layers.md"
# jaxlib 0.10's XLA:CPU drops jax.checkpoint's optimisation barrier and CSE merges the
# recomputation of unrolled blocks back into the forward pass (docs/layers.md); 0.12 keeps it
UNROLLED_REMAT_COMPILES = jax.__version_info__ >= (0, 12)


def _block():
    """Every kind of per-call input a block can have: params, state, a key, the mode."""
    return nn.Sequential(
        nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 4)
    )


def _mlp_block(d=64):
    return nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))


def _policies(fn, *args):
    """The policies of the jax.checkpoint calls in fn's jaxpr, nested ones (scan) included."""

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if "prevent_cse" in eqn.params:
                yield eqn.params["policy"]
                continue
            for value in eqn.params.values():
                inner = getattr(value, "jaxpr", value)
                if hasattr(inner, "eqns"):
                    yield from walk(inner)

    return list(walk(jax.make_jaxpr(fn)(*args).jaxpr))


def _train_grads(model, params, state, x):
    """Jitted gradients and new state of a train-mode step with dropout and BatchNorm."""

    def loss(p, x):
        y, new_state = model.apply(p, state, x, train=True, key=jax.random.key(2))
        return jnp.sum(jnp.sin(y)), new_state

    return jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(params, x)


@pytest.mark.parametrize("policy", [None, "dots_saveable"])
def test_gradients_and_state_are_bit_identical_to_the_unwrapped_block(policy):
    plain = nn.Sequential(_block(), nn.Linear(4, 2))
    wrapped = nn.Sequential(nn.Remat(_block(), policy), nn.Linear(4, 2))
    params, state = plain.init(jax.random.key(0))
    # transparent: the same names (state_dict keys, checkpoints) and initial values
    chex.assert_trees_all_equal(wrapped.init(jax.random.key(0)), (params, state))
    x = jax.random.normal(jax.random.key(1), (16, 4))
    assert _policies(lambda p: wrapped.apply(p, state, x)[0], params) == [
        remat_module.jax_policy("test", policy)
    ]
    # the same float32 forward (same dropout mask, same batch statistics), recomputed:
    # identical on XLA:CPU, as jax.checkpoint's are (shared/reference/jax-facts.md)
    want, got = _train_grads(plain, params, state, x), _train_grads(wrapped, params, state, x)
    chex.assert_trees_all_equal(got, want)
    (_, new_state) = got
    assert not np.array_equal(new_state["0"]["1"]["running_mean"], state["0"]["1"]["running_mean"])
    assert int(new_state["0"]["1"]["num_batches_tracked"]) == 1  # updated once, not again


def test_each_call_draws_the_keys_of_the_unwrapped_call():
    class Twice(nn.Module):
        def __init__(self, drop):
            self.drop = drop

        def forward(self, ctx, x):
            return self.drop(ctx, x) + 2 * self.drop(ctx, x)

    x = jnp.ones((256,))
    run = lambda m: jax.jit(lambda k: m.apply({}, {}, x, train=True, key=k)[0])(jax.random.key(3))
    want, got = run(Twice(nn.Dropout(0.5))), run(Twice(nn.Remat(nn.Dropout(0.5))))
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(np.asarray(got))) == 4  # two calls, two different masks: 0, 2, 4, 6


def test_containers_wrap_each_module_and_keep_names_and_gradients():
    layers = [nn.Linear(6, 8), F.relu, nn.Remat(nn.Linear(8, 8), "full"), nn.Linear(8, 2)]
    plain = nn.Sequential(*layers)
    model = nn.Sequential(*layers, remat="dots_saveable")
    assert [type(layer).__name__ for layer in model] == ["Remat", "function", "Remat", "Remat"]
    assert model[0].block is layers[0] and model[2] is layers[2]  # an own policy is kept
    params, state = plain.init(jax.random.key(0))
    chex.assert_trees_all_equal(model.init(jax.random.key(0)), (params, state))
    x = jax.random.normal(jax.random.key(1), (3, 6))
    dots, full = jax.checkpoint_policies.dots_saveable, None
    assert _policies(lambda p: model.apply(p, state, x)[0], params) == [dots, full, dots]
    grad = lambda m: jax.jit(jax.grad(lambda p: jnp.sum(m.apply(p, state, x)[0] ** 2)))(params)
    chex.assert_trees_all_equal(grad(model), grad(plain))

    class Owner(nn.Module):
        def __init__(self):
            self.layers = nn.ModuleList([nn.Linear(6, 6), nn.Linear(6, 6)], remat=True)
            self.heads = nn.ModuleDict({"a": nn.Linear(6, 2)}, remat="full")

        def forward(self, ctx, x):
            for layer in self.layers:
                x = layer(ctx, x)
            return self.heads["a"](ctx, x)

    owner = Owner()
    assert all(isinstance(m, nn.Remat) for m in (*owner.layers, *owner.heads.values()))
    params, state = _abstract(owner)
    assert sorted(nn.state_dict(params)) == [
        "heads.a.bias", "heads.a.weight", "layers.0.bias", "layers.0.weight", "layers.1.bias",
        "layers.1.weight",
    ]  # fmt: skip
    assert _policies(lambda p: owner.apply(p, state, x)[0], params) == [None] * 3


def test_jit_vmap_and_grad_compose():
    plain = nn.Sequential(nn.Linear(4, 8), jnp.tanh, nn.Linear(8, 4))
    model = nn.Remat(plain)
    params, state = plain.init(jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (5, 4))

    def per_example(m):
        """Outputs and input gradients, one example at a time (vmap), compiled."""
        apply = lambda x: jnp.sum(m.apply(params, state, x)[0] ** 2)
        return jax.jit(jax.vmap(jax.value_and_grad(apply)))(xs)

    chex.assert_trees_all_equal(per_example(model), per_example(plain))


def _abstract(model):
    """Shapes of model's parameters and state: no initial values computed."""
    return jax.eval_shape(model.init, jax.random.key(0))


def _residual_bytes(model, x):
    """Bytes autodiff keeps from the forward pass for the backward (the vjp's leaves)."""

    def residuals(params, state, x):
        return jax.vjp(lambda p: model.apply(p, state, x)[0], params)[1]

    vjp = jax.eval_shape(residuals, *_abstract(model), x)
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(vjp))


def test_fewer_activations_are_kept_for_the_backward_pass():
    x = jax.ShapeDtypeStruct((128, 64), jnp.float32)
    kept = {
        remat: _residual_bytes(nn.Sequential(*[_mlp_block() for _ in range(4)], remat=remat), x)
        for remat in (False, True, "dots_saveable")
    }
    assert kept[True] < kept["dots_saveable"] < kept[False]


@pytest.mark.parametrize("container", ["LayerStack", "Sequential"])
def test_the_compiled_step_needs_less_temporary_memory(container):
    if container == "Sequential" and not UNROLLED_REMAT_COMPILES:
        pytest.skip("jaxlib < 0.12's XLA:CPU merges unrolled recomputation into the forward")

    def temp_bytes(remat):
        if container == "LayerStack":
            model = nn.LayerStack(_mlp_block(), 4, remat=remat)
        else:
            model = nn.Sequential(*[_mlp_block() for _ in range(4)], remat=remat)
        loss = lambda p, s, x: jnp.sum(model.apply(p, s, x)[0] ** 2)
        x = jax.ShapeDtypeStruct((128, 64), jnp.float32)
        compiled = jax.jit(jax.grad(loss)).lower(*_abstract(model), x).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    # LayerStack ~1.3 MB -> ~0.3 MB, Sequential ~1.1 MB -> ~0.4 MB (jax 0.12, XLA:CPU)
    assert temp_bytes(True) < 0.5 * temp_bytes(False)


def test_policy_names_and_errors():
    for name in remat_module.POLICY_NAMES:
        want = None if name == "full" else getattr(jax.checkpoint_policies, name)
        assert remat_module.jax_policy("test", name) is want
        nn.Sequential(nn.Linear(2, 2), remat=name)
    custom = jax.checkpoint_policies.save_only_these_names("x")
    assert nn.Remat(nn.Linear(2, 2), custom).policy is custom
    choices = re.escape("'full', 'nothing_saveable', 'dots_saveable'")
    for make in (
        lambda: nn.Remat(nn.Linear(2, 2), "dots"),
        lambda: nn.Sequential(nn.Linear(2, 2), remat="dots"),
        lambda: nn.ModuleList([nn.Linear(2, 2)], remat="dots"),
        lambda: nn.ModuleDict({"a": nn.Linear(2, 2)}, remat="dots"),
        lambda: nn.LayerStack(nn.Linear(2, 2), 2, remat="dots"),
    ):
        with pytest.raises(
            ValueError, match=rf"unknown remat policy 'dots'; choose one of {choices}"
        ):
            make()
    with pytest.raises(TypeError, match=r"Sequential: remat=None is ambiguous"):
        nn.Sequential(nn.Linear(2, 2), remat=None)
    with pytest.raises(TypeError, match=r"Remat: policy=False would not rematerialise"):
        nn.Remat(nn.Linear(2, 2), False)
    with pytest.raises(TypeError, match=r"LayerStack: a remat policy is True, a name"):
        nn.LayerStack(nn.Linear(2, 2), 2, remat=1)
    with pytest.raises(TypeError, match=r"Remat: block must be a funcnet module"):
        nn.Remat(jnp.tanh)


def test_layer_stack_goes_through_the_same_mechanism():
    model = nn.LayerStack(nn.Linear(4, 4), 3, remat="dots_with_no_batch_dims_saveable")
    params, state = _abstract(model)
    policies = _policies(lambda p: model.apply(p, state, jnp.ones((2, 4)))[0], params)
    assert policies == [jax.checkpoint_policies.dots_with_no_batch_dims_saveable]


def test_errors_repr_and_summary_name_the_block():
    model = nn.Sequential(nn.Remat(nn.Sequential(nn.Linear(4, 8), nn.ReLU())), nn.Linear(8, 2))
    params, state = model.init(jax.random.key(0))
    with pytest.raises(ShapeError, match=r"model\.0\.0 \(Linear\): expected input with last"):
        model.apply(params, state, jnp.ones((3, 5)))
    assert repr(nn.Remat(nn.Linear(4, 4), "dots_saveable")) == (
        "Remat(policy='dots_saveable'\n  (block): Linear(in_features=4, out_features=4)\n)"
    )
    rows = [line.split()[:2] for line in model.summary((3, 4)).splitlines()[3:8]]
    assert rows == [["model", "(Sequential)"], ["0", "(Remat)"], ["0", "(Sequential)"],
                    ["0", "(Linear)"], ["1", "(ReLU)"]]  # fmt: skip


def test_static_keywords_pass_through():
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    plain, model = nn.TransformerEncoder(layer, 2), nn.TransformerEncoder(nn.Remat(layer), 2)
    params, state = _abstract(plain)
    assert _abstract(model) == (params, state)
    x = jax.ShapeDtypeStruct((2, 5, 8), jnp.float32)
    run = lambda m: jax.make_jaxpr(lambda p, x: m.apply(p, state, x, is_causal=True)[0])
    assert str(run(model)(params, x)).count("prevent_cse") == 2
    mask = jax.ShapeDtypeStruct((5, 5), jnp.bool_)  # an array keyword goes through as one
    jax.eval_shape(lambda p, x, m: model.apply(p, state, x, mask=m)[0], params, x, mask)


def test_the_mixed_precision_policy_reaches_the_block():
    # bf16 activations start at the Embedding, inside the block: without the policy the
    # Linear after it would compute in float32
    block = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 8))
    plain, model = (
        nn.Sequential(block, nn.Linear(8, 2)),
        nn.Sequential(nn.Remat(block), nn.Linear(8, 2)),
    )
    params, state = plain.init(jax.random.key(0))
    tokens = jnp.arange(6).reshape(2, 3)
    run = lambda m: jax.jit(lambda p: m.apply(p, state, tokens, precision="bf16")[0])(params)
    chex.assert_trees_all_equal(run(model), run(plain))
    assert not np.array_equal(run(model), plain.apply(params, state, tokens)[0])


def test_docstring_examples_run():
    assert doctest.testmod(remat_module).failed == 0


def _section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n## {title}\n")
    return text[start : text.index("\n## ", start + 1)]


def test_the_docs_section_runs(capsys):
    text = _section("Rematerialisation")
    small = {  # the table's model, made small for the test suite
        "depth, batch, length, width = 4, 8, 128, 256": "depth, batch, length, width = 2, 2, 8, 16",
        '(False, True, "dots_saveable", "dots_with_no_batch_dims_saveable")': "(False, True)",
        # MLP blocks compile several times faster than transformer layers
        "nn.TransformerEncoderLayer(width, 4, 4 * width, dropout=0.0, batch_first=True)": (
            "nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))"
        ),
    }
    for old, new in small.items():
        assert old in text, f"docs/layers.md no longer holds {old!r}"
        text = text.replace(old, new)
    namespace: dict = {}
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 3
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), namespace)
    assert "['0.0.weight', '0.0.bias']" in capsys.readouterr().out
    table = namespace["table"]
    assert table[True][1] < table[False][1]  # LayerStack: on every jax and backend
    if UNROLLED_REMAT_COMPILES:
        assert table[True][0] < table[False][0]
