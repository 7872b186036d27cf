"""Adamax, NAdam, RAdam, Adadelta, Rprop, ASGD and ``maximize``: parity with PyTorch's rules.

Each case is checked against PyTorch's rule re-implemented in NumPy (`_reference`, always),
optax where it defines the same update, and ``torch.optim`` itself (``-m torch``), over
60 float64 steps: past ~80 steps the NAdam trajectories of this problem amplify rounding
differences (1e-16) by ~1.3 per step, so a longer run would test the problem, not the rule.
Also: ``learning_rate=`` (and optax's ``inject_hyperparams``), `current_lr` with parameter
groups, jit and vmap, the ASGD average, and argument errors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcnet.optim as optim
from funcnet.optim import schedules

from . import _reference as ref
from ._problem import (
    B0,
    W0,
    X,
    Y,
    assert_close,
    flat,
    init_params,
    loss,
    numpy_grads,
    single_threaded_torch,
    torch_trajectory,
)

STEPS = 60
NEW = ["adadelta", "adamax", "asgd", "nadam", "radam", "rprop"]
RECIPES = ["adagrad", "adam", "adamw", "rmsprop", "sgd", *NEW]
TORCH_NAMES = {"adamax": "Adamax", "nadam": "NAdam", "radam": "RAdam", "adadelta": "Adadelta",
               "rprop": "Rprop", "asgd": "ASGD", "sgd": "SGD", "adam": "Adam", "adamw": "AdamW",
               "rmsprop": "RMSprop", "adagrad": "Adagrad"}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Case:
    """One configuration; ``lr`` = (funcnet schedule, NumPy lr of step t, torch scheduler)."""

    id: str
    kind: str
    kwargs: dict[str, Any]
    optax: Callable[[], Any] | None = None
    lr: tuple[Callable, Callable, Callable] | None = None

    def funcnet(self) -> optim.GradientTransformation:
        kwargs = dict(self.kwargs)
        if self.lr is not None:
            kwargs["lr"] = self.lr[0]
        return getattr(optim, self.kind)(**kwargs)


def _torch_step_lr(opt):
    import torch

    return torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5)


STEP_LR = (schedules.step(0.1, 7, 0.5), lambda t: 0.1 * 0.5 ** (t // 7), _torch_step_lr)

CASES = [
    Case("adamax", "adamax", dict(lr=0.01), optax=lambda: optax.adamax(0.01)),
    Case(
        "adamax-all",
        "adamax",
        dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, maximize=True),
    ),
    Case("nadam", "nadam", dict(lr=0.01)),
    Case(
        "nadam-all",
        "nadam",
        dict(
            lr=0.01,
            betas=(0.8, 0.99),
            eps=1e-6,
            weight_decay=0.05,
            momentum_decay=0.01,
            maximize=True,
        ),
    ),
    Case("nadamw", "nadam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    Case("radam", "radam", dict(lr=0.01)),
    Case(
        "radamw-all",
        "radam",
        dict(
            lr=0.01,
            betas=(0.8, 0.99),
            eps=1e-6,
            weight_decay=0.1,
            decoupled_weight_decay=True,
            maximize=True,
        ),
    ),
    Case("adadelta", "adadelta", dict(lr=1.0), optax=lambda: optax.adadelta(1.0)),
    Case(
        "adadelta-all",
        "adadelta",
        dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.01, maximize=True),
    ),
    Case("rprop", "rprop", dict(lr=0.01)),
    Case(
        "rprop-all", "rprop", dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-4, 0.2), maximize=True)
    ),
    Case("asgd", "asgd", dict(lr=0.1)),
    # PyTorch computes an update's ASGD step size from the lr of the update before it.
    Case(
        "asgd-all-step-lr",
        "asgd",
        dict(lambd=0.05, alpha=0.5, t0=10, weight_decay=0.01, maximize=True, in_state=("lr",)),
        lr=STEP_LR,
    ),
    Case("sgd-maximize", "sgd", dict(lr=0.1, momentum=0.9, weight_decay=0.01, maximize=True)),
    Case("adam-maximize", "adam", dict(lr=0.01, weight_decay=0.01, maximize=True)),
]


@functools.cache
def trajectories() -> dict[str, np.ndarray]:
    """Every case's funcnet trajectory in float64, from one scan in one jitted program
    (XLA compiles one program of all the updates faster than one program each)."""
    runs = [(c.id, c.funcnet()) for c in CASES]
    runs += [(f"{c.id}/optax", c.optax()) for c in CASES if c.optax is not None]
    opts = [opt for _, opt in runs]

    def run(params):
        def body(carry, _):
            carry = [(p, *opt.update(jax.grad(loss)(p), s, p)) for opt, (p, s) in zip(opts, carry)]
            carry = [(optim.apply_updates(p, u), s) for p, u, s in carry]
            return carry, [flat(p) for p, _ in carry]

        return jax.lax.scan(body, [(params, o.init(params)) for o in opts], length=STEPS)[1]

    with jax.enable_x64(True):
        return {name: np.asarray(t) for (name, _), t in zip(runs, jax.jit(run)(init_params()))}


def numpy_trajectory(case: Case) -> np.ndarray:
    rule = getattr(ref, f"np_{case.kind}")
    options = {k: v for k, v in case.kwargs.items() if k not in ("lr", "maximize", "in_state")}
    sign = -1.0 if case.kwargs.get("maximize") else 1.0
    params, states, out = [W0.copy(), B0.copy()], [{}, {}], []
    for t in range(1, STEPS + 1):
        lr = case.lr[1](t - 1) if case.lr is not None else case.kwargs["lr"]
        for i, g in enumerate(numpy_grads(*params)):
            params[i] = rule(params[i], sign * g, states[i], t, lr, **options)
        out.append(np.concatenate([params[0].ravel(), params[1]]))
    return np.stack(out)


def test_matches_numpy_reference_of_pytorch_rule_and_optax():
    start = np.concatenate([W0.ravel(), B0])
    for case in CASES:
        got = trajectories()[case.id]
        assert_close(got, numpy_trajectory(case))
        assert np.abs(got[-1] - start).max() > 1e-2, case.id  # the case does move
    for case in [c for c in CASES if c.optax is not None]:
        assert_close(trajectories()[case.id], trajectories()[f"{case.id}/optax"])


@contextlib.contextmanager
def torch_float64():
    """PyTorch keeps NAdam's ``mu_product`` and ASGD's ``eta``, ``mu`` in the default dtype."""
    import torch

    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield torch
    finally:
        torch.set_default_dtype(dtype)


@pytest.mark.torch
def test_matches_torch_optim():
    pytest.importorskip("torch")
    with torch_float64() as torch:
        for case in CASES:
            cls = getattr(torch.optim, TORCH_NAMES[case.kind])
            kwargs = {k: v for k, v in case.kwargs.items() if k != "in_state"}
            if case.lr is not None:
                kwargs["lr"] = case.lr[1](0)
            schedule = case.lr[2] if case.lr is not None else None
            make = functools.partial(cls, **kwargs)
            expected = torch_trajectory(make, STEPS, schedule)
            assert_close(trajectories()[case.id], expected)


ASGD = dict(lr=0.1, lambd=0.01, t0=20)


@functools.cache
def asgd_average() -> dict:
    """``asgd_averaged_params`` after 40 float64 steps, from the state of a jitted scan."""
    opt = optim.asgd(**ASGD)
    with jax.enable_x64(True):

        @jax.jit
        def run(params):
            def body(carry, _):
                p, s = carry
                u, s = opt.update(jax.grad(loss)(p), s, p)
                return (optim.apply_updates(p, u), s), None

            state = jax.lax.scan(body, (params, opt.init(params)), length=40)[0][1]
            return optim.asgd_averaged_params(state)

        return jax.tree.map(np.asarray, run(init_params()))


def test_asgd_averaged_params_match_numpy():
    params, states = [W0.copy(), B0.copy()], [{}, {}]
    for t in range(1, 41):
        for i, g in enumerate(numpy_grads(*params)):
            params[i] = ref.np_asgd(params[i], g, states[i], t, **ASGD)
    ax = asgd_average()
    np.testing.assert_allclose(ax["fc"]["weight"], states[0]["ax"], rtol=1e-10)
    np.testing.assert_allclose(ax["fc"]["bias"], states[1]["ax"], rtol=1e-10)
    # past t0 the average is the mean of the iterates since, no longer the last iterate
    assert np.abs(states[0]["ax"] - params[0]).max() > 1e-3


@pytest.mark.torch
def test_asgd_averaged_params_match_torch():
    pytest.importorskip("torch")
    with torch_float64() as torch, single_threaded_torch():
        weight, bias = torch.tensor(W0, requires_grad=True), torch.tensor(B0, requires_grad=True)
        opt = torch.optim.ASGD([weight, bias], **ASGD)
        for _ in range(40):
            opt.zero_grad()
            logits = torch.tensor(X) @ weight + bias
            torch.nn.functional.cross_entropy(logits, torch.tensor(Y)).backward()
            opt.step()
        expected = [opt.state[p]["ax"].numpy() for p in (weight, bias)]
    ax = asgd_average()
    np.testing.assert_allclose(ax["fc"]["weight"], expected[0], rtol=1e-10)
    np.testing.assert_allclose(ax["fc"]["bias"], expected[1], rtol=1e-10)


def test_asgd_averaged_params_errors():
    params = {"w": jnp.zeros(2)}
    with pytest.raises(ValueError, match="holds 0 ASGD states"):
        optim.asgd_averaged_params(optim.sgd(0.1).init(params))
    both = optim.param_groups([("w", optim.asgd())], default=optim.asgd())
    with pytest.raises(ValueError, match="holds 2 ASGD states"):
        optim.asgd_averaged_params(both.init({"w": jnp.zeros(2), "v": jnp.zeros(2)}))
    state = optim.chain(optim.clip_grad_norm(1.0), optim.asgd()).init(params)
    np.testing.assert_array_equal(optim.asgd_averaged_params(state)["w"], [0.0, 0.0])


PARAMS = {"fc": {"weight": jnp.full((2, 3), 0.5), "bias": jnp.full(3, -0.25)}}
GRADS = {"fc": {"weight": jnp.array([[0.5, -1.0, 2.0], [0.1, 0.2, -0.3]]),
                "bias": jnp.array([1.0, -0.5, 0.25])}}  # fmt: skip


def _run(opt, params, grads, steps):
    """``steps`` updates with fixed gradients (traceable): the updates and the last state."""
    state, out = opt.init(params), []
    for _ in range(steps):
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
        out.append(updates)
    return out, state


def test_maximize_is_a_descent_on_the_negated_gradient():
    """adamw, rmsprop and adagrad (the others are in the trajectories): NumPy's rule on -g."""
    cases = [("adamw", dict(weight_decay=0.1)), ("rmsprop", dict(momentum=0.5)),
             ("adagrad", dict(weight_decay=0.1))]  # fmt: skip
    with jax.enable_x64(True):
        params, grads = jax.tree.map(lambda x: x.astype(jnp.float64), (PARAMS, GRADS))
        opts = [getattr(optim, name)(0.1, maximize=True, **kw) for name, kw in cases]
        runs = jax.jit(lambda p, g: [_run(opt, p, g, 3)[0] for opt in opts])(params, grads)
    g = -np.asarray(GRADS["fc"]["weight"], np.float64)
    for (name, kw), updates in zip(cases, runs):
        p, st = np.asarray(PARAMS["fc"]["weight"], np.float64), {}
        for t in range(1, 4):
            new = getattr(ref, f"np_{name}")(p, g, st, t, 0.1, **kw)
            np.testing.assert_allclose(updates[t - 1]["fc"]["weight"], new - p, rtol=1e-10)
            p = new


def test_learning_rate_is_an_alias_of_lr_on_every_optimizer():
    for name in RECIPES:
        factory = getattr(optim, name)
        by_lr, by_alias = factory(lr=0.05), factory(learning_rate=0.05)
        state = by_alias.init(PARAMS)
        jax.tree.map(np.testing.assert_array_equal, state, by_lr.init(PARAMS))
        np.testing.assert_allclose(optim.current_lr(state), 0.05)
        with pytest.raises(TypeError, match=f"{name}: got both lr and learning_rate"):
            factory(0.05, learning_rate=0.05)
    with pytest.raises(TypeError, match="Got a dict as learning_rate"):
        optim.adam(learning_rate=PARAMS)


def test_optax_inject_hyperparams_drives_every_optimizer():
    """optax keeps the lr in its state and rebuilds the optimizer with it at every update:
    the update is the optimizer's own, and the lr optax stores is the one used."""
    for name in RECIPES:  # every numeric default arrives as an array: it must trace
        wrapped = optax.inject_hyperparams(getattr(optim, name))(learning_rate=0.05)
        state = wrapped.init(PARAMS)
        np.testing.assert_allclose(optim.current_lr(state), 0.05)
        jax.eval_shape(wrapped.update, GRADS, state, PARAMS)
    schedule = schedules.step(0.1, step_size=1, gamma=0.5)
    pairs = [(optim.adamw(schedule), optax.inject_hyperparams(optim.adamw)(learning_rate=schedule)),
             (optim.nadam(0.05), optax.inject_hyperparams(optim.nadam)(learning_rate=0.05)),
             (optim.asgd(0.05), optax.inject_hyperparams(optim.asgd)(learning_rate=0.05))]  # fmt: skip
    runs = jax.jit(lambda p, g: [(_run(a, p, g, 3), _run(b, p, g, 3)) for a, b in pairs])
    for (expected, _), (got, _) in runs(PARAMS, GRADS):
        # float32, the hyper-parameters folded as constants or not: a few roundings
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), got, expected)
    # optax's stored lr is the last one used (the schedule at count 2); funcnet's the next one
    np.testing.assert_allclose(optim.current_lr(runs(PARAMS, GRADS)[0][1][1]), 0.1 * 0.5**2)

    sgd = optax.inject_hyperparams(optim.sgd)(learning_rate=0.1, momentum=0.9)
    state = sgd.init(PARAMS)
    state.hyperparams["learning_rate"] = jnp.asarray(0.0)  # optax's way to change it
    updates, _ = sgd.update(GRADS, state, PARAMS)
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))


def test_funcnet_inject_hyperparams_drives_a_funcnet_optimizer():
    opt = optim.inject_hyperparams(lambda lr: optim.adam(lr))(1e-2)
    state = optim.set_hyperparams(opt.init(PARAMS), lr=0.0)
    updates, state = opt.update(GRADS, state, PARAMS)
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))
    assert float(optim.current_lr(state)) == 0.0


def test_current_lr_reads_the_first_parameter_group():
    """PyTorch's param_groups[0]["lr"]: never another group's lr in its place."""
    params = {"a": jnp.zeros(2), "b": jnp.zeros(2)}
    plain = optim.param_groups([("a", optax.adam(1e-3))], default=optim.sgd(0.5))
    # Before the fix this returned 0.5, the second group's lr.
    with pytest.raises(ValueError, match="first parameter group keeps no learning rate"):
        optim.current_lr(plain.init(params))
    injected = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    for opt, lr in [
        (optim.param_groups([("a", injected)], default=optim.sgd(0.5)), 1e-3),
        (optim.param_groups([("a", optim.sgd(0.25))], default=optax.adam(1e-3)), 0.25),
        (optim.freeze(optim.adamw(1e-3), "a"), 1e-3),  # frozen parameters are no group
        (optim.chain(optim.clip_grad_norm(1.0), optim.freeze(optim.sgd(0.5), "b")), 0.5),
    ]:
        np.testing.assert_allclose(optim.current_lr(opt.init(params)), lr)


def test_jit_and_vmap_over_the_update():
    """A batch of 3 problems under jit(vmap(update)) = each problem alone (scalar states:
    NAdam's mu_product, ASGD's eta and mu; Rprop's per-element step sizes)."""
    opts = [optim.nadam(0.1), optim.asgd(0.1, t0=0), optim.rprop(0.1)]
    batch = (
        jax.tree.map(lambda x: jnp.stack([x, 2 * x, -x]), PARAMS),
        jax.tree.map(lambda g: jnp.stack([g, g * g - 0.1, -g]), GRADS),
    )

    def both(p, g):
        batched = [jax.vmap(lambda p, g, o=o: _run(o, p, g, 2)[0])(p, g) for o in opts]
        one = [_run(o, *jax.tree.map(lambda x: x[1], (p, g)), 2)[0] for o in opts]
        return batched, one

    batched, one = jax.jit(both)(*batch)
    # float32, vectorised or not: a few roundings
    jax.tree.map(lambda b, o: np.testing.assert_allclose(b[1], o, rtol=1e-6), batched, one)
    for updates in batched:  # the three problems do differ
        assert not np.allclose(updates[1]["fc"]["weight"][0], updates[1]["fc"]["weight"][1])


def test_argument_errors():
    with pytest.raises(ValueError, match=r"rprop: etas must satisfy 0 < etas\[0\] < 1 < etas"):
        optim.rprop(etas=(0.5, 0.9))
    with pytest.raises(ValueError, match="rprop: the lr only sets the initial step sizes"):
        optim.rprop(schedules.exponential(0.1, 0.9))
    with pytest.raises(ValueError, match="asgd: a schedule lr needs 'lr' in in_state"):
        optim.asgd(schedules.exponential(0.1, 0.9), in_state=())
    with pytest.raises(ValueError, match=r"adadelta: rho must be in \[0, 1\], got 1.5"):
        optim.adadelta(rho=1.5)
    with pytest.raises(ValueError, match=r"nadam: each of betas must be in \[0, 1\)"):
        optim.nadam(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="nadam: momentum_decay must be >= 0"):
        optim.nadam(momentum_decay=-1e-3)
    with pytest.raises(ValueError, match="radam: betas is a schedule, which needs 'betas'"):
        optim.radam(betas=(schedules.exponential(0.9, 0.99), 0.999))
    with pytest.raises(ValueError, match="asgd reads the parameters"):
        opt = optim.asgd()
        opt.update(GRADS, opt.init(PARAMS))
    with pytest.raises(TypeError, match="adamax: funcnet optimizers take hyper-parameters"):
        optim.adamax(PARAMS)


def test_pytorch_defaults():
    defaults = {"adamax": 2e-3, "nadam": 2e-3, "radam": 1e-3, "adadelta": 1.0, "rprop": 1e-2,
                "asgd": 1e-2, "sgd": 1e-3, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-2,
                "adagrad": 1e-2}  # fmt: skip
    for name, lr in defaults.items():
        state = getattr(optim, name)().init(PARAMS)
        np.testing.assert_allclose(optim.current_lr(state), lr, err_msg=name)
