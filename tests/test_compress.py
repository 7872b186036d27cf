"""funcnet.compress: magnitude pruning, keep_pruned, int8 weight quantisation, reports.

Two digits models (an MLP and a small CNN) are trained once per module; pruning to 50 %
and int8 weights must each cost at most one point of test accuracy.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcnet import checkpoint, compress, losses, metrics, nn, optim, train
from funcnet.data import DataLoader
from funcnet.data.datasets import load_digits
from funcnet.data.transforms import ToFloat

ROOT = Path(__file__).resolve().parents[1]
ACCURACY = {"accuracy": metrics.accuracy}
MODELS = {
    "mlp": lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
    "cnn": lambda: nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 16, 10),
    ),
}


@pytest.fixture(scope="module")
def loaders():
    to_float = ToFloat(scale=1 / 16)
    train_set = load_digits("train")
    return (
        DataLoader(train_set, batch_size=64, shuffle=True, seed=0, transform=to_float),
        DataLoader(load_digits("test"), batch_size=512, transform=to_float),
    )


@pytest.fixture(scope="module", params=sorted(MODELS))
def trained(request, loaders):
    """``(state, test accuracy)`` of a model trained for 10 epochs of Adam."""
    state = train.TrainState.create(MODELS[request.param](), optim.adam(1e-2), jax.random.key(0))
    state, _ = train.fit(
        state, loaders[0], epochs=10, loss_fn=losses.cross_entropy, progress="quiet"
    )
    return state, train.evaluate(state, loaders[1], metrics=ACCURACY)["accuracy"]


def _params():
    """Weights, biases and a norm; NumPy draws them (no compilation)."""
    rng = np.random.default_rng(0)
    normal = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)
    return {
        "conv": {"weight": normal(3, 3, 2, 4), "bias": np.ones(4, np.float32)},
        "fc": {"weight": normal(5, 3), "bias": np.ones(3, np.float32)},
        "norm": {"weight": np.ones(7, np.float32), "bias": np.zeros(7, np.float32)},
        "head": {"weight": normal(6, 2)},
    }


def _leaf_dict(tree):
    return dict(zip(optim.leaf_names(tree), jax.tree.leaves(tree)))


# ---------------------------------------------------------------------------- accuracy


@pytest.mark.one_version
def test_half_pruned_and_fine_tuned_model_loses_at_most_a_point(trained, loaders):
    state, baseline = trained
    pruned, masks = compress.prune(state.params, 0.5, scope="global")
    opt = optim.chain(optim.adam(1e-3), compress.keep_pruned(masks))
    tuned = train.TrainState.create(state.model, opt, jax.random.key(1), params=pruned)
    tuned, _ = train.fit(
        tuned, loaders[0], epochs=1, loss_fn=losses.cross_entropy, progress="quiet"
    )
    report = compress.sparsity_report(tuned.params)
    n = report.total["size"]
    assert report.total["zeros"] == round(0.5 * n)
    for name, mask in _leaf_dict(masks).items():  # the masks outlive fit's donated steps
        assert np.all(np.asarray(_leaf_dict(tuned.params)[name])[~np.asarray(mask)] == 0)
    accuracy = train.evaluate(tuned, loaders[1], metrics=ACCURACY)["accuracy"]
    assert accuracy >= baseline - 0.01, (baseline, accuracy)


@pytest.mark.one_version
def test_int8_weights_lose_at_most_a_point_and_the_jitted_apply_takes_int8(trained, loaders):
    state, baseline = trained
    qparams = compress.quantize(state.params)

    @jax.jit
    def predict(qparams, x):
        logits, _ = state.model.apply(compress.dequantize(qparams), state.model_state, x)
        return jnp.argmax(logits, axis=-1)

    x, _ = next(iter(loaders[1]))
    args, _ = predict.lower(qparams, x).in_avals
    dtypes = {name: aval.dtype for name, aval in _leaf_dict(args[0]).items()}
    assert {d for n, d in dtypes.items() if n.endswith(".qweight")} == {jnp.dtype(jnp.int8)}
    assert sum(n.endswith(".qweight") for n in dtypes) == 2
    correct = sum(int(jnp.sum(predict(qparams, x) == y)) for x, y in loaders[1])
    accuracy = correct / len(load_digits("test"))
    assert accuracy >= baseline - 0.01, (baseline, accuracy)


# ---------------------------------------------------------------------------- pruning


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 1.0])
def test_layer_scope_prunes_exactly_round_sparsity_n_of_the_smallest(sparsity):
    params = _params()
    pruned, masks = compress.prune(params, sparsity)
    for name, weight in _leaf_dict(params).items():
        got = np.asarray(_leaf_dict(pruned)[name])
        if name not in ("conv.weight", "fc.weight", "head.weight"):
            assert np.array_equal(got, np.asarray(weight))  # biases and norms untouched
            continue
        mask = np.asarray(_leaf_dict(masks)[name])
        k = round(sparsity * weight.size)
        assert (~mask).sum() == k and np.count_nonzero(got == 0) == k
        magnitude = np.abs(np.asarray(weight))
        if 0 < k < weight.size:
            assert magnitude[~mask].max() <= magnitude[mask].min()
        assert np.array_equal(got, np.where(mask, weight, 0))
    assert masks["norm"]["weight"] is None and masks["fc"]["bias"] is None


def test_ties_are_broken_by_position_and_rounding_is_half_to_even():
    params = {"a": {"weight": np.ones((2, 5), np.float32)}, "b": {"weight": -np.ones((3, 2))}}
    _, masks = compress.prune(params, 0.25)  # a: round(2.5) = 2, b: round(1.5) = 2
    assert (~np.asarray(masks["a"]["weight"])).ravel().tolist() == [True] * 2 + [False] * 8
    assert (~np.asarray(masks["b"]["weight"])).ravel().tolist() == [True] * 2 + [False] * 4
    _, masks = compress.prune(params, 0.5, scope="global")  # 8 of 16, "a" comes first
    assert np.asarray(masks["a"]["weight"]).ravel().tolist() == [False] * 8 + [True] * 2
    assert np.asarray(masks["b"]["weight"]).all()


def test_global_scope_uses_one_threshold():
    params = {
        "a": {"weight": np.arange(1.0, 7.0, dtype=np.float32).reshape(2, 3)},
        "b": {"weight": np.full((2, 2), 3.5, np.float32)},
    }
    pruned, masks = compress.prune(params, 0.7, scope="global")  # 7 of 10: 1, 2, 3 and the 3.5s
    assert pruned["a"]["weight"].tolist() == [[0, 0, 0], [4, 5, 6]]
    assert not np.asarray(masks["b"]["weight"]).any()
    assert compress.sparsity_report(pruned).total["zeros"] == 7


def test_matches_torch_prune_on_distinct_magnitudes():
    torch = pytest.importorskip("torch")
    prune = pytest.importorskip("torch.nn.utils.prune")
    params = {k: v for k, v in _params().items() if k in ("fc", "head")}

    def torch_masks(scope, amount):
        layers = {k: torch.nn.Linear(*params[k]["weight"].shape) for k in sorted(params)}
        for k, layer in layers.items():  # torch's (out, in) is our (in, out) transposed
            layer.weight.data = torch.tensor(np.asarray(params[k]["weight"]).T.copy())
            if scope == "layer":
                prune.l1_unstructured(layer, "weight", amount=amount)
        if scope == "global":
            targets = [(layer, "weight") for layer in layers.values()]
            prune.global_unstructured(targets, prune.L1Unstructured, amount=amount)
        return {k: layer.weight_mask.numpy().T.astype(bool) for k, layer in layers.items()}

    for scope, amount in (("layer", 0.3), ("global", 0.4)):
        _, masks = compress.prune(params, amount, scope=scope)
        for k, want in torch_masks(scope, amount).items():
            assert np.array_equal(np.asarray(masks[k]["weight"]), want), (scope, k)


def test_cumulative_pruning_keeps_earlier_masks():
    params = _params()
    reverse = jax.tree.map(lambda x: 1 / (1 + np.abs(np.asarray(x))), params)
    _, masks = compress.prune(reverse, 0.3)  # pruned the largest weights of params
    pruned, masks2 = compress.prune(params, 0.6, masks=masks)
    for a, b in zip(jax.tree.leaves(masks), jax.tree.leaves(masks2)):
        assert np.all(np.asarray(b) <= np.asarray(a))  # pruned once, pruned still
        assert (~np.asarray(b)).sum() == round(0.6 * b.size)
    assert compress.sparsity_report(pruned).total["zeros"] == sum(
        round(0.6 * b.size) for b in jax.tree.leaves(masks2)
    )
    with pytest.raises(ValueError, match="already pruned, more than sparsity=0.2"):
        compress.prune(pruned, 0.2, masks=masks2)


def test_prune_errors_are_clear():
    params = _params()
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\]"):
            compress.prune(params, bad)
    with pytest.raises(TypeError, match="sparsity must be a float"):
        compress.prune(params, True)
    with pytest.raises(ValueError, match="scope must be one of"):
        compress.prune(params, 0.5, scope="module")
    with pytest.raises(ValueError, match=r"select no floating parameter .*'conv.bias'"):
        compress.prune(params, 0.5, include="encoder.*")
    with pytest.raises(ValueError, match="select no"):
        compress.prune(params, 0.5, include="*.bias")  # 1-D: never selected
    with pytest.raises(TypeError, match="glob patterns"):
        compress.prune(params, 0.5, exclude=[1])
    with pytest.raises(ValueError, match="structure"):
        compress.prune(params, 0.5, masks={"fc": None})
    pruned, masks = compress.prune(params, 0.5, exclude="head.*")
    assert masks["head"]["weight"] is None and pruned["head"]["weight"] is params["head"]["weight"]


# ---------------------------------------------------------------------------- keep_pruned


@pytest.mark.parametrize("chain", ["funcnet", "optax"])
def test_keep_pruned_keeps_zeros_exact_through_momentum_and_weight_decay(chain):
    params = _params()
    _, masks = compress.prune(params, 0.5)
    if chain == "funcnet":
        inner = optim.sgd(0.1, momentum=0.9, weight_decay=0.1)
        opt = optim.chain(inner, compress.keep_pruned(masks))
    else:
        inner = optax.adamw(0.1, weight_decay=0.1)
        opt = optax.chain(inner, compress.keep_pruned(masks))

    @jax.jit
    def step(params, opt_state, inner_params, inner_state, grads):
        updates, opt_state = opt.update(grads, opt_state, params)
        inner_updates, inner_state = inner.update(grads, inner_state, inner_params)
        return (
            optim.apply_updates(params, updates),
            opt_state,
            optim.apply_updates(inner_params, inner_updates),
            inner_state,
        )

    # starts from the unpruned parameters: the first step zeroes the pruned entries
    p, s, ref, ref_s = params, opt.init(params), params, inner.init(params)
    rng = np.random.default_rng(1)
    for _ in range(4):
        grads = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), x.dtype), params)
        p, s, ref, ref_s = step(p, s, ref, ref_s, grads)
        for name, mask in _leaf_dict(masks).items():
            got, want = np.asarray(_leaf_dict(p)[name]), np.asarray(_leaf_dict(ref)[name])
            mask = np.asarray(mask)
            assert np.all(got[~mask] == 0) and np.all(np.signbit(got[~mask]) == 0)
            # the others get the optimizer's update (up to XLA fusing the two differently)
            np.testing.assert_allclose(got[mask], want[mask], rtol=1e-6)
    np.testing.assert_allclose(p["norm"]["weight"], ref["norm"]["weight"], rtol=1e-6)


def test_keep_pruned_state_holds_copies_of_the_masks_and_checkpoints(tmp_path):
    params, masks = compress.prune(_params(), 0.5)
    opt = optim.chain(optim.adam(1e-3), compress.keep_pruned(masks))
    state = opt.init(params)
    held = state[1]
    assert isinstance(held, compress.KeepPrunedState)
    assert held.masks["fc"]["weight"] is not masks["fc"]["weight"]  # donation-safe
    path = checkpoint.save_params(tmp_path / "opt_state.npz", state)
    restored = checkpoint.load_params(path, target=state)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    assert restored[1].masks["norm"]["weight"] is None
    updates, _ = jax.jit(opt.update)(jax.tree.map(np.ones_like, params), restored, params)
    assert np.all(np.asarray(updates["fc"]["weight"])[~np.asarray(masks["fc"]["weight"])] == 0)


def test_keep_pruned_errors_and_bfloat16_under_strict_promotion():
    params, masks = compress.prune(_params(), 0.5)
    opt = compress.keep_pruned(masks)
    with pytest.raises(ValueError, match=r"call update\(grads, opt_state, params\)"):
        opt.update(params, opt.init(params))
    wrong = jax.tree.map(lambda m: m, masks)
    wrong["fc"]["weight"] = jnp.ones((3, 5), bool)
    with pytest.raises(
        ValueError, match=r"mask of fc.weight must be a bool array of shape \(5, 3\)"
    ):
        compress.keep_pruned(wrong).init(params)
    for param_dtype, grad_dtype in ((jnp.bfloat16, np.float32), (np.float32, jnp.bfloat16)):
        # parameters not yet pruned (not bfloat16 numbers), updates narrower or wider
        start = jax.tree.map(lambda x, t=param_dtype: jnp.asarray(x, t), _params())
        grads = jax.tree.map(lambda x, t=grad_dtype: np.full(x.shape, 0.1, t), start)
        with jax.numpy_dtype_promotion("strict"):
            updates, _ = jax.jit(opt.update)(grads, opt.init(start), start)
        new = jax.jit(optim.apply_updates)(start, updates)
        weight = np.asarray(new["fc"]["weight"], np.float32)
        assert new["fc"]["weight"].dtype == param_dtype
        assert np.all(weight[~np.asarray(masks["fc"]["weight"])] == 0)


# ---------------------------------------------------------------------------- quantisation


def test_quantize_rounds_to_nearest_per_output_channel():
    params = _params()
    params["fc"]["weight"] = params["fc"]["weight"].at[:, 1].set(0.0)  # an all-zero channel
    params["head"]["weight"] = params["head"]["weight"] * jnp.array([1e-3, 50.0])
    qparams = compress.quantize(params)
    assert qparams["conv"]["weight"]["scale"].shape == (1, 1, 1, 4)
    assert qparams["fc"]["weight"]["scale"].shape == (1, 3)
    assert qparams["norm"]["weight"] is params["norm"]["weight"]
    for name in ("conv", "fc", "head"):
        w = np.asarray(params[name]["weight"], np.float64)
        q, scale = qparams[name]["weight"]["qweight"], qparams[name]["weight"]["scale"]
        assert q.dtype == jnp.int8 and scale.dtype == jnp.float32 and q.shape == w.shape
        q, scale = np.asarray(q, np.int64), np.asarray(scale, np.float64)
        assert np.abs(q).max() <= 127 and q.min() > -128
        error = np.abs(w - q * scale)
        assert np.all(error <= scale * (0.5 + 1e-5)), (name, (error / scale).max())
        amax = np.abs(w).max(axis=tuple(range(w.ndim - 1)))
        peak = np.abs(q).max(axis=tuple(range(w.ndim - 1)))
        assert np.array_equal(peak, np.where(amax > 0, 127, 0))
        assert np.allclose(scale.ravel(), np.where(amax > 0, amax / 127, 1.0), rtol=1e-6)
    back = compress.dequantize(qparams)
    for name in ("conv", "fc", "head"):
        w, got = np.asarray(params[name]["weight"]), np.asarray(back[name]["weight"])
        scale = np.asarray(qparams[name]["weight"]["scale"])
        assert got.dtype == np.float32 and np.all(np.abs(got - w) <= scale * (0.5 + 1e-5))
    assert back["fc"]["weight"][:, 1].tolist() == [0.0] * 5
    assert back["norm"]["weight"] is params["norm"]["weight"]
    assert jax.tree.structure(back) == jax.tree.structure(params)
    assert compress.dequantize(qparams, jnp.bfloat16)["fc"]["weight"].dtype == jnp.bfloat16


def test_quantized_tree_round_trips_through_save_params_and_device_put(tmp_path):
    params = _params()
    qparams = jax.device_put(compress.quantize(params, exclude="head.*"))
    path = checkpoint.save_params(tmp_path / "int8.npz", qparams)
    with np.load(path, allow_pickle=False) as npz:
        assert npz["fc.weight.qweight"].dtype == np.int8 and "head.weight" in npz.files
    loaded = checkpoint.load_params(path)
    assert jax.tree.structure(loaded) == jax.tree.structure(qparams)
    assert compress.is_quantized(loaded["fc"]["weight"])
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(qparams)):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    want = compress.dequantize(qparams)
    for a, b in zip(jax.tree.leaves(compress.dequantize(loaded)), jax.tree.leaves(want)):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_quantize_errors_are_clear():
    params = _params()
    with pytest.raises(ValueError, match="quantize: include=.* select no"):
        compress.quantize(params, include="norm.*")
    params["fc"]["weight"] = params["fc"]["weight"].at[0, 0].set(jnp.inf)
    with pytest.raises(ValueError, match="fc.weight holds inf or nan"):
        compress.quantize(params)


# ---------------------------------------------------------------------------- reports


def test_reports_give_a_table_and_a_dict():
    params = {"fc1": {"weight": jnp.ones((64, 128)), "bias": jnp.ones(128)}}
    pruned, _ = compress.prune(params, 0.25)
    report = compress.sparsity_report(pruned)
    assert report.as_dict() == {
        "layers": {"fc1.weight": {"size": 8192, "zeros": 2048, "sparsity": 0.25}},
        "total": {"size": 8192, "zeros": 2048, "sparsity": 0.25},
    }
    assert str(report).splitlines() == [
        "parameter    size  zeros  sparsity",
        "fc1.weight  8,192  2,048     25.0%",
        "total       8,192  2,048     25.0%",
    ]
    sizes = compress.size_report(params, compress.quantize(params))
    assert sizes.layers["fc1.weight"] == {
        "bytes_before": 32768,
        "bytes_after": 8192 + 128 * 4,
        "ratio": 32768 / 8704,
    }
    assert sizes.total["bytes_before"] == 33280 and sizes.total["bytes_after"] == 9216
    assert str(sizes).splitlines()[-1] == "total             33,280        9,216  3.61x"
    with pytest.raises(ValueError, match="qparams does not have the structure"):
        compress.size_report(params, {"fc2": {}})


# ---------------------------------------------------------------------------- docs, code shape


@pytest.mark.parametrize("module", ["_prune", "_keep_pruned", "_quantize", "_report"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(f"funcnet.compress.{module}"))
    assert result.attempted > 0 and result.failed == 0


def test_the_guide_runs_top_to_bottom(tmp_path, monkeypatch, capsys):
    text = (ROOT / "docs" / "compression.md").read_text()
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for code in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL):
        exec(compile(code, "compression.md", "exec"), namespace)
    baseline, fine_tuned, quantized = (
        namespace[k] for k in ("baseline", "fine_tuned", "quantized")
    )
    assert fine_tuned >= baseline - 0.01 and quantized >= fine_tuned - 0.01
    assert namespace["report"].total["sparsity"] == 0.5
    printed = capsys.readouterr().out
    sizes = str(compress.size_report(namespace["state"].params, namespace["qparams"]))
    assert sizes in printed and sizes in text  # the page shows the real table


def test_functions_are_short_and_import_at_module_level():
    for path in sorted((ROOT / "funcnet" / "compress").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body
                lines = body[-1].end_lineno - body[0].lineno + 1
                assert lines < 50, f"{path.name}:{node.name} has {lines} lines"
                assert not any(isinstance(n, ast.Import | ast.ImportFrom) for n in ast.walk(node))
