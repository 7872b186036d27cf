"""Bad input to the optimizers gets a clear error when the optimizer is built or traced.

Hyper-parameters are checked as PyTorch checks them (NaN included); gradients and states
are compared with the parameters at trace time (``jax.eval_shape``: nothing compiles), and
the compiled program is the same with or without the checks.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import nn, optim, train
from funcnet.errors import ShapeError, UsageError
from funcnet.optim import _checks

PARAMS = {"fc1": {"weight": jnp.ones((4, 3)), "bias": jnp.ones(3)}}


def _grads(weight):
    return {"fc1": {"weight": weight, "bias": jnp.ones(3)}}


@pytest.mark.parametrize(
    "make",
    [optim.sgd, optim.adam, optim.adamw, optim.rmsprop, optim.adagrad, optim.nadam, optim.lbfgs],
)
def test_nan_lr_is_refused_as_pytorch_does(make):
    with pytest.raises(ValueError, match=r'lr must be >= 0, got nan \(PyTorch: "Invalid learning'):
        make(float("nan"))


@pytest.mark.parametrize("make", [optim.sgd, optim.adam])
def test_a_negative_concrete_array_lr_is_refused(make):
    with pytest.raises(ValueError, match=r"lr must be >= 0, got an array holding -0.1"):
        make(lr=jnp.array(-0.1))


def test_other_hyperparameters_nan_and_out_of_range():
    with pytest.raises(ValueError, match="adam: eps must be >= 0, got nan"):
        optim.adam(eps=float("nan"))
    with pytest.raises(ValueError, match=r"Invalid beta parameter at index 0: nan"):
        optim.adamw(betas=(float("nan"), 0.999))
    with pytest.raises(ValueError, match="sgd: momentum must be >= 0, got nan"):
        optim.sgd(0.1, momentum=float("nan"))
    with pytest.raises(ValueError, match=r"rmsprop: weight_decay must be >= 0, got an array"):
        optim.rmsprop(weight_decay=jnp.array(-1.0))
    with pytest.raises(ValueError, match=r"adadelta: rho must be in \[0, 1\], got nan"):
        optim.adadelta(rho=float("nan"))
    with pytest.raises(ValueError, match="rprop: etas must satisfy"):
        optim.rprop(etas=(float("nan"), 1.2))


@pytest.mark.parametrize("value", [-1, float("nan")])
def test_set_hyperparams_refuses_what_construction_refuses(value):
    state = optim.adam(1e-3, in_state=("lr", "betas")).init(PARAMS)
    with pytest.raises(ValueError, match=r"set_hyperparams: lr must be >= 0"):
        optim.set_hyperparams(state, lr=value)
    with pytest.raises(ValueError, match=r"set_hyperparams: each of betas must be in \[0, 1\)"):
        optim.set_hyperparams(state, betas=(0.9, value))


@pytest.mark.parametrize("betas", [(0.9,), (0.9, 0.99, 0.999), 0.9])
@pytest.mark.parametrize("make", [optim.adam, optim.adamw, optim.nadam])
def test_betas_must_be_a_pair(make, betas):
    with pytest.raises(ValueError, match=r"betas must be a pair \(beta1, beta2\), got"):
        make(betas=betas)


@pytest.mark.parametrize("shape", [(1,), (), (1, 3), (3, 4)])
@pytest.mark.parametrize("with_params", [True, False], ids=["params", "no-params"])
def test_gradients_of_another_shape_are_never_broadcast(shape, with_params):
    opt = optim.adam(1e-3)
    state = opt.init(PARAMS)
    grads = _grads(jnp.ones(shape))
    params = PARAMS if with_params else None
    against = "the parameter" if with_params else "the optimizer state holds"
    message = rf"adam.update: gradient for 'fc1.weight' has shape {re_shape(shape)}, {against}"
    with pytest.raises(ShapeError, match=message):
        jax.eval_shape(lambda g, s: opt.update(g, s, params), grads, state)


def re_shape(shape):
    return str(shape).replace("(", r"\(").replace(")", r"\)")


def test_transposed_gradients_say_so():
    opt = optim.sgd(0.1)
    with pytest.raises(
        ShapeError, match=r"has shape \(3, 4\), the parameter \(4, 3\) \(transposed"
    ):
        opt.update(_grads(jnp.ones((3, 4))), opt.init(PARAMS), PARAMS)


@pytest.mark.parametrize("with_params", [True, False], ids=["params", "no-params"])
def test_a_missing_or_extra_gradient_is_named(with_params):
    opt = optim.adam(1e-3)
    state = opt.init(PARAMS)
    params = PARAMS if with_params else None
    missing = {"fc1": {"weight": jnp.ones((4, 3))}}
    extra = {"fc1": {**PARAMS["fc1"], "scale": jnp.ones(2)}}
    first = "no gradient for 'fc1.bias'" if with_params else "'inner_state.1.exp_avg.fc1.bias'"
    with pytest.raises(ShapeError, match=f"adam.update: .*{first}"):
        jax.eval_shape(lambda g, s: opt.update(g, s, params), missing, state)
    second = "gradient for 'fc1.scale', which is no parameter" if with_params else "state has no"
    with pytest.raises(ShapeError, match=f"adam.update: .*{second}"):
        jax.eval_shape(lambda g, s: opt.update(g, s, params), extra, state)


@pytest.mark.parametrize("name", ["adam", "adamw", "adagrad", "sgd", "rmsprop", "lbfgs"])
def test_integer_parameters_are_refused_at_init(name):
    params = {"fc": {"weight": jnp.ones((2, 2), jnp.int32)}}
    message = rf"{name}.init: parameter 'fc.weight' is int32; .*astype\(jnp.float32\) or freeze"
    with pytest.raises(ShapeError, match=message):
        getattr(optim, name)(1e-2).init(params)


def test_complex_parameters_are_refused_at_init():
    with pytest.raises(ShapeError, match="sgd.init: parameter 'w' is complex64; .*conjugate"):
        optim.sgd(0.1).init({"w": jnp.ones(2, jnp.complex64)})


def test_a_frozen_integer_parameter_is_fine():
    params = {"w": jnp.ones(2), "index": jnp.arange(2)}
    opt = optim.freeze(optim.adam(0.1), "index")
    updates, _ = opt.update(jax.tree.map(jnp.ones_like, params), opt.init(params), params)
    assert optim.apply_updates(params, updates)["index"].tolist() == [0, 1]


def test_a_state_from_another_optimizer_is_named():
    sgd_state = optim.sgd(0.1, momentum=0.9).init(PARAMS)
    with pytest.raises(ShapeError, match="adam.update got a state made by sgd's init"):
        optim.adam(1e-3).update(PARAMS, sgd_state, PARAMS)
    adam_state = optim.adam(1e-3).init(PARAMS)
    with pytest.raises(ShapeError, match="sgd.update got a state made by adam's init"):
        optim.sgd(0.1, momentum=0.9).update(PARAMS, adam_state, PARAMS)


def test_a_state_for_other_parameters_is_named():
    opt = optim.adam(1e-3)
    state = opt.init({"fc1": {"weight": jnp.ones((4, 2)), "bias": jnp.ones(3)}})
    with pytest.raises(ShapeError, match=r"entry 'inner_state.1.exp_avg.fc1.weight' has shape"):
        opt.update(PARAMS, state, PARAMS)


@pytest.mark.parametrize(
    "name, opt",
    [
        ("chain", optim.chain(optim.clip_grad_norm(1.0), optim.adam(1e-3))),
        ("param_groups", optim.param_groups([("*.bias", optim.sgd(0.1))], optim.adam(1e-3))),
        ("param_groups", optim.freeze(optim.adam(1e-3), "fc1.bias")),
        ("masked", optim.masked(optim.adam(1e-3), "*.weight")),
        ("accumulate", optim.accumulate(2, optim.adam(1e-3))),
        ("skip_nonfinite", optim.skip_nonfinite(optim.adam(1e-3))),
        ("with_ema", optim.with_ema(optim.adam(1e-3))),
    ],
)
def test_wrappers_check_once_and_name_themselves(name, opt):
    state = opt.init(PARAMS)
    grads = _grads(jnp.ones((1, 3)))
    with pytest.raises(ShapeError, match=rf"^{name}.update: gradient for 'fc1.weight'"):
        jax.eval_shape(lambda g, s: opt.update(g, s, PARAMS), grads, state)


def test_train_state_needs_an_optimizer(key):
    model = nn.Linear(3, 2)
    with pytest.raises(
        UsageError, match=r"needs an optimizer, e.g. .*optim.adam\(1e-3\).*got None"
    ):
        train.TrainState.create(model, None, key)
    with pytest.raises(UsageError, match="got a str, which has no init and update"):
        train.TrainState.create(model, "adam", key)
    with pytest.raises(UsageError, match=r"got adam, an optimizer factory: call it"):
        train.TrainState.create(model, optim.adam, key)


@pytest.mark.parametrize(
    "make",
    [
        lambda: optim.adam(1e-2, weight_decay=0.1),
        lambda: optim.sgd(0.1, momentum=0.9),
        lambda: optim.freeze(optim.adamw(1e-2), "fc1.bias"),
    ],
)
def test_correct_use_runs_under_jit(make):
    opt = make()
    state = opt.init(PARAMS)
    step = jax.jit(lambda g, s, p: opt.update(g, s, p))
    for _ in range(2):
        updates, state = step(PARAMS, state, PARAMS)
    assert np.all(np.isfinite(updates["fc1"]["weight"]))


def _program(opt, disable=False):
    state = opt.init(PARAMS)

    def step(g, s, p):
        updates, s = opt.update(g, s, p)
        return optim.apply_updates(p, updates), s

    if disable:  # as if inside an outer checked optimizer: the checks do not run
        with _checks._inner():
            return str(jax.make_jaxpr(step)(PARAMS, state, PARAMS))
    return str(jax.make_jaxpr(step)(PARAMS, state, PARAMS))


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop"])
def test_the_checks_do_not_change_the_program(name):
    raw = inspect.unwrap(getattr(optim, name))  # the recipe without its checked wrapper
    checked = _program(getattr(optim, name)(1e-2, weight_decay=0.1))
    assert checked == _program(raw(1e-2, weight_decay=0.1), disable=True)
    wrapped = optim.freeze(optim.adam(1e-2), "fc1.bias")
    assert _program(wrapped) == _program(wrapped, disable=True)
