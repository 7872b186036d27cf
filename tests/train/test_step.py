"""make_train_step / make_eval_step: compiled once, donated, correct, guarded."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcnet import losses, metrics, nn, optim, train
from tests._numerics import to_float64
from tests.train._models import MLP, CountingMLP, blobs, loader, tree_equal


def counted(fn, counter):
    def wrapped(*args, **kwargs):
        counter.append(1)
        return fn(*args, **kwargs)

    return wrapped


def test_fit_compiles_train_and_eval_step_once_including_the_short_last_batch(key):
    traces = []
    state = train.TrainState.create(MLP(), optim.adam(1e-2), key)
    train_loader = loader(100, 32)  # last batch has 4 rows: padded and masked
    eval_loader = loader(50, 32, shuffle=False)
    state, history = train.fit(
        state,
        train_loader,
        epochs=3,
        loss_fn=counted(losses.cross_entropy, traces),
        metrics={"accuracy": metrics.accuracy},
        eval_loader=eval_loader,
        progress="quiet",
    )
    assert len(traces) == 2  # one trace for the train step, one for the eval step
    assert int(state.step) == 3 * 4 and len(history.steps) == 12
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    assert history.epochs[-1]["val_accuracy"] > 0.9


def test_masked_loss_ignores_padding_rows(key):
    state = train.TrainState.create(MLP(), optim.sgd(0.0), key)
    x, y = blobs(8)
    step = train.make_train_step(
        losses.cross_entropy, metrics={"accuracy": metrics.accuracy}, donate=False
    )
    _, full = step(state, (x[:5], y[:5]), jnp.ones(5, bool))
    padded_x = np.concatenate([x[:5], np.full((3, 8), 1e3, np.float32)])
    _, masked = step(state, (padded_x, np.concatenate([y[:5], y[:3]])), np.arange(8) < 5)
    # the same 5 positive row losses, averaged in another order: at most (5 + 2) roundings
    # of float32 (7 * 2**-24 = 4e-7 relative) on any CPU
    np.testing.assert_allclose(masked["loss"], full["loss"], rtol=1e-6)
    np.testing.assert_allclose(masked["accuracy"], full["accuracy"])
    assert float(masked["count"]) == 5


def test_step_matches_a_hand_written_step(key):
    model, opt = MLP(), optim.adam(1e-2)
    # in float64: the two programs may sum in other orders, which in float32 moves Adam's
    # g / (|g| + eps) by more than a fixed bound wherever a gradient nearly cancels
    with jax.enable_x64(True):
        params = to_float64(model.init(key)[0])
        state = train.TrainState.create(model, opt, key, params=params)
        x, y = (to_float64(a) for a in blobs(32))

        def reference(params, opt_state):
            def loss(p):
                return losses.cross_entropy(model.apply(p, {}, x, train=True)[0], y)

            grads = jax.grad(loss)(params)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optim.apply_updates(params, updates)

        expected = reference(state.params, state.opt_state)
        new, _ = train.make_train_step(losses.cross_entropy, donate=False)(state, (x, y))
        leaves = jax.tree_util.tree_leaves(new.params)
        assert {a.dtype for a in leaves} == {jnp.dtype(jnp.float64)}
        for a, b in zip(leaves, jax.tree_util.tree_leaves(expected)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert int(new.step) == 1


def test_model_state_is_carried_and_optax_optimizers_work(key):
    state = train.TrainState.create(
        CountingMLP(), optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)), key
    )
    step = train.make_train_step(losses.cross_entropy)
    x, y = blobs(16)
    for _ in range(3):
        state, values = step(state, (x, y))
    assert int(state.model_state["calls"]) == 3
    assert np.isfinite(float(values["loss"]))


def test_has_aux_losses_report_their_values(key):
    def loss_with_aux(out, y, reduction="mean"):
        ce = losses.cross_entropy(out, y, reduction=reduction)
        return ce, {"logit_norm": jnp.mean(jnp.abs(out))}

    state = train.TrainState.create(MLP(), optim.sgd(0.1), key)
    _, values = train.make_train_step(loss_with_aux, has_aux=True)(state, blobs(16))
    assert set(values) == {"loss", "logit_norm", "finite"}  # "count" comes with a mask


def _nan_loss(out, y, reduction="mean"):
    loss = losses.cross_entropy(out, y, reduction=reduction)
    return loss * jnp.where(jnp.max(jnp.abs(out)) > 0, jnp.nan, 1.0)


def test_nonfinite_step_keeps_parameters_and_fit_names_the_step(key):
    state = train.TrainState.create(MLP(), optim.sgd(1e-2, momentum=0.9), key)
    state, _ = train.make_train_step(losses.cross_entropy, donate=False)(state, blobs(16))
    before = jax.tree_util.tree_map(np.asarray, (state.params, state.opt_state))
    skipped, values = train.make_train_step(_nan_loss, on_nonfinite="skip", donate=False)(
        state, blobs(16)
    )
    assert not bool(values["finite"])
    for a, b in zip(
        jax.tree_util.tree_leaves((skipped.params, skipped.opt_state)),
        jax.tree_util.tree_leaves(before),
    ):
        np.testing.assert_array_equal(a, b)  # "skip" changes nothing
    guarded, values = train.make_train_step(_nan_loss, donate=False)(state, blobs(16))
    assert not bool(values["finite"])
    assert all(
        np.all(np.isfinite(leaf))
        for leaf in jax.tree_util.tree_leaves((guarded.params, guarded.opt_state))
    )
    unguarded, _ = train.make_train_step(_nan_loss, on_nonfinite="ignore", donate=False)(
        state, blobs(16)
    )
    assert not all(
        np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(unguarded.params)
    )
    with pytest.raises(
        train.NonFiniteLossError,
        match=r"non-finite loss at step 2 .*no step had a finite loss",
    ):
        train.fit(state, loader(), 1, loss_fn=_nan_loss, progress="quiet")
    skipped, _history = train.fit(
        state, loader(), 1, loss_fn=_nan_loss, on_nonfinite="skip", progress="quiet"
    )
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(skipped.params))


def _nan_gradient_loss(out, y, reduction="mean"):
    """A finite loss whose gradient is NaN: d/dx sqrt(0 * |x|) = inf * 0."""
    return losses.cross_entropy(out, y, reduction=reduction) + jnp.sqrt(0.0 * jnp.abs(out[0, 0]))


def test_nan_gradients_with_a_finite_loss_never_reach_the_parameters(key):
    state = train.TrainState.create(MLP(), optim.adam(1e-2), key)
    before = jax.tree_util.tree_map(np.asarray, state.params)
    grads = jax.grad(
        lambda p: _nan_gradient_loss(MLP().apply(p, {}, blobs(16)[0])[0], blobs(16)[1])
    )(state.params)
    bad = [np.asarray(~np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]
    assert any(b.any() for b in bad) and not all(b.all() for b in bad)
    # Default guard: the loss is finite so the step counts; NaN elements are zeroed.
    guarded, values = train.make_train_step(_nan_gradient_loss, donate=False)(state, blobs(16))
    assert bool(values["finite"])
    for leaf, old, nan in zip(
        jax.tree_util.tree_leaves(guarded.params), jax.tree_util.tree_leaves(before), bad
    ):
        assert np.all(np.isfinite(leaf))
        np.testing.assert_array_equal(np.asarray(leaf)[nan], old[nan])
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(guarded.opt_state))
    # "skip" checks every gradient and skips the whole step.
    skipped, values = train.make_train_step(_nan_gradient_loss, on_nonfinite="skip", donate=False)(
        state, blobs(16)
    )
    assert not bool(values["finite"])
    for a, b in zip(jax.tree_util.tree_leaves(skipped.params), jax.tree_util.tree_leaves(before)):
        np.testing.assert_array_equal(a, b)


def test_eval_step_and_evaluate(key):
    state = train.TrainState.create(MLP(), optim.sgd(0.1), key)
    results = train.evaluate(
        state,
        loader(70, 32, shuffle=False),
        loss_fn=losses.cross_entropy,
        metrics={"accuracy": metrics.accuracy},
    )
    x, y = blobs(70)
    logits = state.model.apply(state.params, state.model_state, x)[0]
    np.testing.assert_allclose(results["loss"], float(losses.cross_entropy(logits, y)), rtol=1e-5)
    np.testing.assert_allclose(
        results["accuracy"], float(np.mean(np.argmax(logits, -1) == y)), rtol=1e-6
    )


def test_bad_arguments_are_reported(key):
    with pytest.raises(ValueError, match="on_nonfinite"):
        train.make_train_step(losses.cross_entropy, on_nonfinite="maybe")
    state = train.TrainState.create(MLP(), optim.sgd(0.1), key)
    with pytest.raises(TypeError, match="a batch must be a pair"):
        train.make_train_step(losses.cross_entropy)(state, (1, 2, 3))
    with pytest.raises(ValueError, match="needs loss_fn"):
        train.fit(state, loader(), 1)


def test_padded_batch_with_class_weights_matches_the_unpadded_pytorch_mean(key):
    weight = jnp.array([0.2, 1.0, 3.0])

    def weighted(out, y, **kwargs):
        return losses.cross_entropy(out, y, weight, **kwargs)

    state = train.TrainState.create(MLP(), optim.sgd(0.0), key)
    step = train.make_train_step(weighted, donate=False)
    x, y = blobs(8)
    _, plain = step(state, (x[:5], y[:5]))
    _, padded = step(state, (x, y), np.arange(8) < 5)
    # a weighted mean of 5 positive terms in another order: at most 4e-7 relative apart
    np.testing.assert_allclose(padded["loss"], plain["loss"], rtol=1e-6)


@dataclasses.dataclass(frozen=True)
class Largest(metrics.Metric):
    """The largest output seen: a state that ``merge`` combines by max, not by a sum."""

    def init(self):
        return {"max": jnp.full((), -jnp.inf, jnp.float32)}

    def update(self, state, outputs, targets, *, mask=None):
        rows = jnp.max(outputs, axis=-1).astype(jnp.float32)
        rows = rows if mask is None else jnp.where(mask, rows, -jnp.inf)
        return {"max": jnp.maximum(state["max"], jnp.max(rows))}

    def merge(self, state, other):
        return {"max": jnp.maximum(state["max"], other["max"])}

    def compute(self, state):
        return state["max"]


def _members(tree, n=4):
    """``(n, rows / n, ...)``: the batch as ``n`` members of a named axis take it."""
    return jax.tree_util.tree_map(lambda a: a.reshape(n, -1, *a.shape[1:]), tree)


def test_axis_name_step_under_vmap_equals_the_whole_batch_step(key):
    # one member (rows 24..31) holds padding only: its empty means must not spread nan
    mask = np.arange(32) < 21
    fns = {
        "acc": metrics.accuracy,
        "f1": metrics.F1Score(num_classes=3, average="macro"),
        "largest": Largest(),
    }
    with jax.enable_x64(True):  # float64: the two sum in other orders (tests/_numerics.py)
        state = train.TrainState.create(
            MLP(), optim.sgd(0.1, momentum=0.9), key, params=to_float64(MLP().init(key)[0])
        )
        batch = tuple(to_float64(a) for a in blobs(32))
        whole = train.make_train_step(losses.cross_entropy, metrics=fns, donate=False)
        synced = train.make_train_step(losses.cross_entropy, metrics=fns, axis_name="data")
        mapped = jax.jit(jax.vmap(synced, (None, 0, 0), None, axis_name="data"))
        (expected, want), (new, got) = (
            whole(state, batch, mask),
            mapped(state, _members(batch), _members(mask)),
        )
        eval_whole = train.make_eval_step(losses.cross_entropy, metrics=fns)
        eval_synced = train.make_eval_step(losses.cross_entropy, metrics=fns, axis_name="data")
        eval_mapped = jax.vmap(eval_synced, (None, 0, 0), None, axis_name="data")
        eval_want = eval_whole(state, batch, mask)
        eval_got = eval_mapped(state, _members(batch), _members(mask))
    for a, b in zip(
        jax.tree_util.tree_leaves(new.params), jax.tree_util.tree_leaves(expected.params)
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    for values, reference in ((got, want), (eval_got, eval_want)):
        assert list(values) == list(reference)
        np.testing.assert_allclose(values["loss"], reference["loss"], rtol=1e-12)
        np.testing.assert_allclose(values["acc"], reference["acc"], rtol=1e-6)  # float32
        np.testing.assert_array_equal(values["f1"]["matrix"], reference["f1"]["matrix"])
        assert float(values["largest"]["max"]) == float(reference["largest"]["max"])
        assert float(values["count"]) == 21


def test_axis_name_step_takes_the_same_step_on_every_member_after_a_nan(key):
    state = train.TrainState.create(MLP(), optim.sgd(0.1), key)
    x, y = blobs(32)
    x[3] = np.nan  # on member 0 only
    step = train.make_train_step(losses.cross_entropy, axis_name="data", jit=False)
    # out_axes=None: vmap refuses values that differ between members
    new, values = jax.vmap(step, (None, 0), None, axis_name="data")(state, _members((x, y)))
    assert not bool(values["finite"])
    assert tree_equal(new.params, state.params) and int(new.step) == 1


def test_axis_name_step_outside_a_named_axis_says_how_to_run_it(key):
    state = train.TrainState.create(MLP(), optim.sgd(0.1), key)
    step = train.make_train_step(losses.cross_entropy, axis_name="data", donate=False)
    with pytest.raises(NameError, match=r"jax.pmap\(step, axis_name='data'.*DataParallel"):
        step(state, blobs(8))
    with pytest.raises(TypeError, match="axis_name must be the name"):
        train.make_eval_step(losses.cross_entropy, axis_name=0)


def test_axis_name_step_draws_other_dropout_masks_on_every_member(key):
    state = train.TrainState.create(nn.Sequential(nn.Dropout(0.5)), optim.sgd(0.1), key)
    step = train.make_train_step(lambda out, y: jnp.mean(out), axis_name="data", jit=False)
    x = np.ones((4, 64, 1), np.float32)  # the same rows on every member
    losses_by_size = [
        float(jax.vmap(step, (None, 0), None, axis_name="data")(state, (x[:n], x[:n]))[1]["loss"])
        for n in (1, 4)
    ]
    assert losses_by_size[0] != losses_by_size[1]  # member 0's own mask, then four masks
