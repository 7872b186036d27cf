"""Mixed precision: Policy and precision= on apply, the steps and fit; float16 with dynamic
loss scaling (PyTorch's GradScaler rule); docs/mixed-precision.md runs top to bottom."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import checkpoint, losses, metrics, nn, optim, train
from funcnet import functional as F
from funcnet.data import DataLoader
from funcnet.data.datasets import load_digits
from funcnet.data.transforms import ToFloat
from funcnet.mixed_precision import (
    DynamicLossScale,
    Policy,
    current_loss_scale,
    get_policy,
    with_loss_scale,
)
from tests.docs.runner import run_page

DOCS = Path(__file__).resolve().parents[1] / "docs"
BF16, F16, F32 = jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16), jnp.dtype(jnp.float32)


# ------------------------------------------------------------------------------ Policy
def test_precision_names_parse_to_policies_and_unknown_names_list_the_choices():
    assert Policy.parse("bf16") == Policy.parse("mixed_bf16") == Policy(F32, BF16, F32)
    assert Policy.parse("fp16") == Policy.parse("mixed_float16") == Policy(F32, F16, F32)
    assert Policy.parse("f32") == Policy.parse("float32") == Policy()
    assert Policy.parse("fp16").needs_loss_scale and not Policy.parse("bf16").needs_loss_scale
    assert get_policy(None) is None and get_policy(Policy()) == Policy()
    assert repr(Policy.parse("bf16")) == (
        "Policy(param_dtype=float32, compute_dtype=bfloat16, output_dtype=float32)"
    )
    with pytest.raises(ValueError, match=r"unknown precision 'half': choose 'float32'.*'bf16'"):
        get_policy("half")
    with pytest.raises(ValueError, match="compute_dtype must be a floating dtype"):
        Policy(compute_dtype=jnp.int32)
    with pytest.raises(TypeError, match="precision must be None, a string"):
        get_policy(jnp.bfloat16)


class _Probe(nn.Module):
    """Passes its input through and records the dtype it saw (at trace time)."""

    def __init__(self, seen: list) -> None:
        super().__init__()
        self._seen = seen

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        self._seen.append((jnp.result_type(x), ctx.policy))
        return x


class _Tagger(nn.Module):
    def __init__(self, seen: list) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.fc = nn.Linear(3, 4)
        self.probe = _Probe(seen)

    def forward(self, ctx, ids, x, *, mask):
        a = self.probe(ctx, self.emb(ctx, ids))  # an Embedding output starts the activations
        b = self.probe(ctx, self.fc(ctx, x))
        return {"a": a, "b": b, "ids": ids, "mask": mask}


def test_apply_casts_floating_inputs_and_embedding_outputs_to_the_compute_dtype(key):
    seen: list = []
    model = _Tagger(seen)
    params, _ = model.init(key)
    ids, x, mask = jnp.arange(2), jnp.ones((2, 3)), jnp.ones(2, bool)

    def run(precision):
        seen.clear()
        return jax.eval_shape(
            lambda p: model.apply(p, {}, ids, x, mask=mask, precision=precision)[0], params
        )

    out = run("bf16")
    assert [dtype for dtype, _ in seen] == [BF16, BF16]
    assert seen[0][1] == Policy.parse("bf16")  # ctx.policy
    assert out["a"].dtype == out["b"].dtype == F32  # the output dtype
    assert out["ids"].dtype == jnp.int32 and out["mask"].dtype == jnp.bool_
    out = run(None)
    assert seen == [(F32, None), (F32, None)] and out["a"].dtype == F32
    run(Policy(F32, F16, F16))
    assert [dtype for dtype, _ in seen] == [F16, F16]


def test_softmax_of_16_bit_inputs_rounds_once():
    # Logits of standard deviation 5: in bfloat16, x - max and exp each round (14 %
    # relative error measured); computed in float32 and rounded once to bfloat16 the
    # error is at most one rounding of bfloat16 (2**-8 relative) plus float32's own.
    logits = np.random.default_rng(0).normal(size=(64, 500)) * 5
    x = jnp.asarray(logits, jnp.bfloat16)
    exact = np.asarray(x, np.float64)
    exact = exact - exact.max(-1, keepdims=True)
    log_p = exact - np.log(np.exp(exact).sum(-1, keepdims=True))
    p, lp = jax.jit(lambda x: (F.softmax(x), F.log_softmax(x)))(x)
    assert p.dtype == lp.dtype == BF16
    assert np.max(np.abs(np.asarray(p, np.float64) / np.exp(log_p) - 1)) < 2**-8
    assert np.max(np.abs(np.asarray(lp, np.float64) / log_p - 1)) < 2**-8


# ------------------------------------------------------------------------------ steps
def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


class _TokenConv(nn.Module):
    """Embedding -> Conv1d -> Linear: dots and convolutions in the forward and backward."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, ctx, ids):
        return self.fc(ctx, jax.nn.relu(self.conv(ctx, self.emb(ctx, ids))).mean(axis=1))


_OP = re.compile(r"stablehlo\.(dot_general|convolution).*: \((tensor<[^>]*>), (tensor<[^>]*>)\)")


def test_bf16_step_runs_dots_and_convolutions_in_bfloat16_over_float32_parameters(key):
    state = train.TrainState.create(_TokenConv(), optim.adam(1e-3), key)
    batch = (jnp.zeros((4, 6), jnp.int32), jnp.zeros((4,), jnp.int32))
    step = train.make_train_step(losses.cross_entropy, precision="bf16")
    # The lowered program (before XLA's CPU passes, which may compute a bfloat16 dot in
    # float32 internally) holds the operands' dtypes as written.
    text = step.lower(state, batch).as_text()
    ops = _OP.findall(text)
    assert len(ops) == 6  # forward and both gradients of the convolution and the Linear
    assert all(lhs.endswith("xbf16>") and rhs.endswith("xbf16>") for _, lhs, rhs in ops), ops
    main = next(line for line in text.splitlines() if "func.func public @main" in line)
    assert "x8xf32>" in main and "bf16" not in main  # float32 parameters and state


def test_float32_policy_compiles_the_same_program_as_no_policy(key):
    state = train.TrainState.create(_mlp(), optim.adam(1e-3), key)
    batch = (jnp.zeros((8, 8, 8, 1)), jnp.zeros((8,), jnp.int32))

    def lowered(build, precision):
        kwargs = {} if precision is None else {"precision": precision}
        return build(losses.cross_entropy, **kwargs).lower(state, batch).as_text()

    for build in (train.make_train_step, train.make_eval_step):
        plain = lowered(build, None)
        assert lowered(build, "float32") == plain
        assert lowered(build, Policy()) == plain
    assert "bf16" in lowered(train.make_train_step, "bf16")


def test_steps_check_parameter_dtypes_and_that_float16_has_a_loss_scale(key):
    batch = (jnp.zeros((8, 8, 8, 1)), jnp.zeros((8,), jnp.int32))
    state = train.TrainState.create(_mlp(), optim.adam(1e-3), key)
    with pytest.raises(ValueError, match="underflow without loss scaling: wrap the optimizer"):
        train.make_train_step(losses.cross_entropy, precision="fp16").lower(state, batch)
    half = state.replace(params=Policy(jnp.float16).cast_to_param(state.params))
    with pytest.raises(ValueError, match=r"parameter \['1'\]\['bias'\] is float16, not"):
        train.make_train_step(losses.cross_entropy, precision="bf16").lower(half, batch)
    with pytest.raises(ValueError, match="precision='bf16' applies to the steps fit"):
        train.fit(state, [batch], train_step=lambda s, b: (s, {}), precision="bf16")


@pytest.mark.one_version
def test_bf16_digits_mlp_reaches_the_float32_test_accuracy():
    to_float = ToFloat(scale=1 / 16)
    test_loader = DataLoader(load_digits("test"), batch_size=359, transform=to_float)
    results = {}
    for precision in (None, "bf16"):
        loader = DataLoader(load_digits("train"), 32, shuffle=True, seed=0, transform=to_float)
        state = train.TrainState.create(_mlp(), optim.adam(lr=3e-3), jax.random.key(0))
        state, history = train.fit(
            state, loader, epochs=4, loss_fn=losses.cross_entropy, progress="quiet",
            log_every=500, precision=precision,
        )  # fmt: skip
        accuracy = train.evaluate(
            state, test_loader, metrics={"accuracy": metrics.accuracy}, precision=precision
        )["accuracy"]
        results[precision] = (accuracy, history.epochs[-1]["loss"])
    assert results[None][0] > 0.94  # 0.953 (seeds 1-4 of loader and init: 0.953-0.961)
    assert abs(results["bf16"][0] - results[None][0]) <= 0.01
    assert results["bf16"][1] != results[None][1]  # bfloat16 did run


# ----------------------------------------------------------------------- loss scaling
def grad_scaler_scales(found_inf, init_scale, growth_factor, backoff_factor, growth_interval):
    """The scale torch.amp.GradScaler uses at each step, given which steps found an inf:
    its documented update rule (``_amp_update_scale_``) in NumPy float32."""
    scale, tracker, scales = np.float32(init_scale), 0, []
    for inf in found_inf:
        scales.append(float(scale))
        if inf:
            scale, tracker = np.float32(scale * np.float32(backoff_factor)), 0
            continue
        tracker += 1
        if tracker == growth_interval:
            with np.errstate(over="ignore"):
                grown = np.float32(np.float64(scale) * growth_factor)
            scale = grown if np.isfinite(grown) else scale
            tracker = 0
    return scales


def test_dynamic_loss_scale_follows_grad_scalers_rule():
    found_inf = np.random.default_rng(0).random(300) < 0.15
    for rule in (
        DynamicLossScale(growth_interval=3),
        DynamicLossScale(init_scale=2.0**126, growth_factor=4.0, growth_interval=2),  # inf
        DynamicLossScale(init_scale=3.0, growth_factor=1.5, backoff_factor=0.25),
    ):
        adjust = jax.jit(rule.adjust)
        scale, tracker, scales = jnp.float32(rule.init_scale), jnp.int32(0), []
        for inf in found_inf:
            scales.append(float(scale))
            scale, tracker = adjust(scale, tracker, jnp.asarray(not inf))
        expected = grad_scaler_scales(found_inf, *vars(rule).values())
        assert scales == expected
    with pytest.raises(ValueError, match="backoff_factor must be a number in"):
        DynamicLossScale(backoff_factor=1.0)
    with pytest.raises(ValueError, match="growth_interval must be an int >= 1"):
        DynamicLossScale(growth_interval=0)


def _mse(out: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(out - y))


def _regression_batches(overflow_at, steps):
    """Batches of 8 rows; at the steps in ``overflow_at`` the targets are 1e5, so the
    float16 gradient of the (finite, float32) loss overflows at any scale >= 1."""
    rng = np.random.default_rng(1)
    batches = []
    for i in range(steps):
        x = rng.uniform(0.5, 1.0, (8, 4)).astype(np.float32)
        y = (x @ np.full((4, 2), 0.25) + rng.normal(0, 0.1, (8, 2))).astype(np.float32)
        batches.append((x, np.full_like(y, 1e5) if i in overflow_at else y))
    return batches


def test_fp16_loss_scaling_skips_exactly_the_overflowing_steps(key, tmp_path):
    # growth_interval 3 makes the scale grow within a few steps; from 2**10 it reaches
    # 2**12 in the reference run, where these batches' float16 gradients stay below 2**14.
    rule = DynamicLossScale(init_scale=2.0**10, growth_interval=3)
    start = train.TrainState.create(nn.Linear(4, 2), with_loss_scale(optim.adam(1e-2), rule), key)
    step = train.make_train_step(_mse, precision="fp16")
    bad = {4, 8, 9}
    batches = _regression_batches(bad, 12)

    def run(batch_list):
        return train.fit(start, batch_list, train_step=step, progress="quiet")

    state, history = run(batches)
    found_inf = [i in bad for i in range(12)]
    assert [bool(s["skipped"]) for s in history.steps] == found_inf
    expected = grad_scaler_scales([*found_inf, False], *vars(rule).values())  # and after
    assert [s["loss_scale"] for s in history.steps] == expected[:-1]
    assert float(current_loss_scale(state.opt_state)) == expected[-1]
    assert int(state.opt_state.inner_state.num_skipped) == 3
    assert "loss_scale" in history.epochs[0] and np.isfinite(history.epochs[0]["loss"])

    # Parameters and the optimizer's state equal those of the run without those steps:
    # scaling by powers of two is exact, so the unscaled gradients agree bit for bit.
    reference, _ = run([b for i, b in enumerate(batches) if i not in bad])
    jax.tree.map(np.testing.assert_array_equal, state.params, reference.params)
    adam_state = [s.opt_state.inner_state.inner_state for s in (state, reference)]
    jax.tree.map(np.testing.assert_array_equal, *adam_state)

    # The scale is optimizer state: a checkpoint resumes the run bit for bit.
    half, _ = run(batches[:6])
    arrays = {"opt_state": half.opt_state, "params": half.params}
    checkpoint.save(tmp_path, arrays, 6)
    restored = half.replace(**checkpoint.restore(tmp_path, target=arrays))
    resumed, _ = train.fit(restored, batches[6:], train_step=step, progress="quiet")
    jax.tree.map(np.testing.assert_array_equal, resumed.opt_state, state.opt_state)
    jax.tree.map(np.testing.assert_array_equal, resumed.params, state.params)


def test_a_nonfinite_loss_still_stops_fit_under_loss_scaling(key):
    step = train.make_train_step(_mse, precision="fp16", donate=False)
    start = train.TrainState.create(nn.Linear(4, 2), with_loss_scale(optim.adam(1e-2)), key)
    good, nan = _regression_batches(set(), 2)
    nan = (np.full_like(nan[0], np.nan), nan[1])
    after, values = step(start, nan)
    assert not values["finite"] and values["skipped"]
    jax.tree.map(np.testing.assert_array_equal, after.params, start.params)
    with pytest.raises(train.NonFiniteLossError, match="non-finite loss at step 2"):
        train.fit(start, [good, nan], train_step=step, progress="quiet")


# ------------------------------------------------------------------------------- docs
def test_mixed_precision_guide_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = run_page(DOCS / "mixed-precision.md")
    assert namespace["history"].steps[-1]["loss_scale"] > 0
