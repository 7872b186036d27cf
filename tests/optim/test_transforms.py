"""Clipping, weight-decay masks, masked, freeze, param_groups, accumulate."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.optim as optim

from ._problem import B0, STEPS, W0, assert_close, jax_trajectory, numpy_grads, torch_trajectory
from ._reference import np_adam

GRADS = {"fc1": {"weight": jnp.array([[3.0, -4.0], [1.0, 2.0]]), "bias": jnp.array([0.5, -12.0])}}
PARAMS = {"fc1": {"weight": jnp.ones((2, 2)), "bias": jnp.ones(2)}}


def _flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("max_norm", [1.0, 100.0])
@pytest.mark.parametrize("size", [1.0, 1e-5], ids=["grads", "tiny-grads"])
def test_clip_grad_norm_is_pytorchs(norm_type, max_norm, size):
    # Tiny gradients (norm ~1e-4) make PyTorch's + 1e-6 a 1% effect the test would see.
    grads = jax.tree.map(lambda g: g * size, GRADS)
    max_norm = max_norm * size
    updates, _ = optim.clip_grad_norm(max_norm, norm_type).update(grads, optim.EmptyState())
    g = _flat(grads)
    total = (
        np.abs(g).max()
        if norm_type == math.inf
        else np.sum(np.abs(g) ** norm_type) ** (1 / norm_type)
    )
    expected = g * min(1.0, max_norm / (total + 1e-6))  # PyTorch's 1e-6, clamped at 1
    # float32 norm of 6 values (a sum of 6 non-negative terms, a root, a quotient): within
    # ~10 U32 = 6e-7 relative in the worst case, any order
    np.testing.assert_allclose(_flat(updates), expected, rtol=1e-5)
    np.testing.assert_allclose(optim.global_norm(grads, norm_type), total, rtol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_clip_grad_norm_matches_torch(norm_type):
    torch = pytest.importorskip("torch")
    tensors = [torch.nn.Parameter(torch.zeros(x.shape)) for x in jax.tree.leaves(GRADS)]
    for t, g in zip(tensors, jax.tree.leaves(GRADS)):
        t.grad = torch.tensor(np.asarray(g))
    total = torch.nn.utils.clip_grad_norm_(tensors, 1.5, norm_type=norm_type)
    updates, _ = optim.clip_grad_norm(1.5, norm_type).update(GRADS, optim.EmptyState())
    expected = np.concatenate([t.grad.numpy().ravel() for t in tensors])
    # the gradients are small integers and halves: float32 sums of their squares are exact
    # in any order, leaving a root, a quotient and a product (< 4 U32 apart per side)
    np.testing.assert_allclose(_flat(updates), expected, rtol=1e-6)
    np.testing.assert_allclose(optim.global_norm(GRADS, norm_type), total.item(), rtol=1e-6)


def test_clip_grad_value():
    updates, _ = optim.clip_grad_value(2.0).update(GRADS, optim.EmptyState())
    np.testing.assert_allclose(_flat(updates), np.clip(_flat(GRADS), -2.0, 2.0))


@pytest.mark.parametrize(
    "mask",
    [
        optim.exclude_bias_and_norm,
        "*.weight",
        "fc1.weight",
        {"fc1": {"weight": True, "bias": False}},
    ],
    ids=["exclude_bias_and_norm", "glob", "name", "bool-tree"],
)
def test_weight_decay_mask_forms(mask):
    tx = optim.add_weight_decay(0.5, mask=mask)
    updates, _ = tx.update(GRADS, tx.init(PARAMS), PARAMS)
    np.testing.assert_allclose(updates["fc1"]["weight"], GRADS["fc1"]["weight"] + 0.5)
    np.testing.assert_allclose(updates["fc1"]["bias"], GRADS["fc1"]["bias"])


def test_exclude_bias_and_norm_on_a_model_tree():
    params = {
        "embed": {"weight": jnp.zeros((10, 4))},
        "blocks": [
            {
                "norm": {"weight": jnp.ones(4), "bias": jnp.zeros(4)},
                "conv": {"weight": jnp.zeros((3, 3, 4, 4))},
            }
        ],
        "head": {"weight": jnp.zeros((4, 2)), "bias": jnp.zeros(2)},
        "temperature": jnp.ones(()),
    }
    decayed = [
        n
        for n, m in zip(
            optim.leaf_names(params), jax.tree.leaves(optim.exclude_bias_and_norm(params))
        )
        if m
    ]
    assert decayed == ["blocks.0.conv.weight", "embed.weight", "head.weight"]


def test_masked_applies_inner_to_selected_leaves_only():
    tx = optim.masked(optim.adam(0.1), "fc1.bias")
    state = tx.init(PARAMS)
    moments = state.inner_state.inner_state[1]  # adam's scale_by_adam state
    assert isinstance(moments.exp_avg["fc1"]["weight"], optim.MaskedNode)  # no state for it
    assert moments.exp_avg["fc1"]["bias"].shape == (2,)
    updates, _ = tx.update(GRADS, state, PARAMS)
    np.testing.assert_allclose(updates["fc1"]["weight"], GRADS["fc1"]["weight"])  # untouched
    # Adam's first step: -0.1 g / (|g| + 1e-8), a few float32 roundings from -0.1 sign(g)
    np.testing.assert_allclose(updates["fc1"]["bias"], [-0.1, 0.1], rtol=1e-5)


def test_freeze_keeps_frozen_leaves_in_place_and_stateless():
    params = {"backbone": PARAMS["fc1"], "head": {"weight": jnp.ones((2, 1))}}
    grads = {"backbone": GRADS["fc1"], "head": {"weight": jnp.ones((2, 1))}}
    opt = optim.freeze(optim.adamw(1e-2, weight_decay=0.5), "backbone")
    state = opt.init(params)
    moments = state.inner_states[1].inner_state[0]  # adamw's scale_by_adam state
    assert jax.tree.structure(moments.exp_avg) == jax.tree.structure(
        {
            "backbone": {"bias": optim.MaskedNode(), "weight": optim.MaskedNode()},
            "head": {"weight": 0},
        }
    )
    for _ in range(3):
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
    np.testing.assert_array_equal(params["backbone"]["weight"], PARAMS["fc1"]["weight"])
    assert float(params["head"]["weight"][0, 0]) < 1.0


def test_param_groups_first_match_wins_and_errors():
    opt = optim.param_groups([("fc1.bias", optim.sgd(1.0)), ("fc1", optim.sgd(0.1))])
    updates, _ = opt.update(GRADS, opt.init(PARAMS), PARAMS)
    np.testing.assert_allclose(updates["fc1"]["bias"], -GRADS["fc1"]["bias"])
    # one float32 product on each side: equal or one rounding apart
    np.testing.assert_allclose(updates["fc1"]["weight"], -0.1 * GRADS["fc1"]["weight"], rtol=1e-6)

    with pytest.raises(ValueError, match=r"parameter group 0 \('trunk'\) picks no parameter"):
        optim.param_groups([("trunk", optim.sgd(0.1))], default=optim.sgd(1.0)).init(PARAMS)
    with pytest.raises(
        ValueError, match=r"parameters in no group and no default optimizer: \['fc1.weight'\]"
    ):
        optim.param_groups([("*.bias", optim.sgd(0.1))]).init(PARAMS)


def _numpy_groups_trajectory(lrs):
    params, states, out = [W0.copy(), B0.copy()], [{}, {}], []
    for t in range(1, STEPS + 1):
        for i, g in enumerate(numpy_grads(*params)):
            params[i] = np_adam(params[i], g, states[i], t, lrs[i], weight_decay=0.01 * (i == 0))
        out.append(np.concatenate([params[0].ravel(), params[1]]))
    return np.stack(out)


GROUPS = optim.param_groups(
    [("fc.bias", optim.adam(1e-3))], default=optim.adam(3e-2, weight_decay=0.01)
)


def test_param_groups_match_pytorch_rule():
    assert_close(jax_trajectory(GROUPS), _numpy_groups_trajectory([3e-2, 1e-3]))


@pytest.mark.torch
def test_param_groups_match_torch_param_groups():
    torch = pytest.importorskip("torch")

    def make(p):
        return torch.optim.Adam(
            [{"params": p[:1], "weight_decay": 0.01}, {"params": p[1:], "lr": 1e-3}], lr=3e-2
        )

    assert_close(jax_trajectory(GROUPS), torch_trajectory(make))


def test_accumulate_steps_every_k_calls_on_the_mean_gradient():
    params = {"w": jnp.zeros(2)}
    grads = [jnp.array([1.0, 2.0]), jnp.array([3.0, -2.0]), jnp.array([2.0, 6.0])] * 2
    opt = optim.accumulate(3, optim.adam(0.1))
    reference = optim.adam(0.1)
    state, ref_state = opt.init(params), reference.init(params)

    @jax.jit
    def step(g, state):
        return opt.update({"w": g}, state, params)

    for i, g in enumerate(grads):
        updates, state = step(g, state)
        if i % 3 < 2:
            np.testing.assert_array_equal(updates["w"], 0.0)
        else:
            mean = {"w": sum(grads[i - 2 : i + 1]) / 3}
            expected, ref_state = reference.update(mean, ref_state, params)
            # elementwise float32 only (no CPU-dependent reductions): the mean of 3 rounded
            # in another order (its sums do not cancel) through one Adam step, ~10 U32 at
            # most (1.5e-7 measured)
            np.testing.assert_allclose(updates["w"], expected["w"], rtol=1e-6)
    assert int(state.micro_step) == 0
    assert int(state.inner_state.inner_state[1].count) == 2  # Adam stepped once per 3 calls


def test_accumulate_rejects_bad_k():
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        optim.accumulate(0, optim.sgd(0.1))
