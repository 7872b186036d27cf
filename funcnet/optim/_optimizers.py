"""The optimizers users call: PyTorch's arguments, defaults and update rules.

Each is a short chain of primitives; the order of the primitives is the semantics (L2
weight decay before the preconditioner, decoupled decay after it). Each keeps the
hyper-parameters named in ``in_state`` (default: ``lr``) in a `HyperparamsState`, so
`current_lr` reads the lr and `set_hyperparams` / `ReduceLROnPlateau` change it between
steps without recompiling. ``in_state=()`` gives the bare chain.

``lr`` (and any hyper-parameter named in ``in_state``) may be a schedule ``count -> value``
from `funcnet.optim.schedules`; the stored value is then the one the coming update uses.
``learning_rate=`` is accepted for ``lr=`` (optax's name), and ``maximize=True`` negates
the gradients first, as in PyTorch.

They take hyper-parameters only: the parameters go to ``opt.init(params)``. Passing them
first, as to ``torch.optim.Adam(model.parameters(), lr=1e-3)``, is a ``TypeError`` that
says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from jax.typing import ArrayLike

from ._base import GradientTransformation, identity
from ._hyperparams import with_hyperparams
from ._masking import Selector
from ._recipe import LR, decay, recipe, resolve_lr, steps
from ._transforms import (
    is_static_zero,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_lr,
    scale_by_rms,
    trace,
)
from ._validate import check_args, check_pair


@recipe
def sgd(
    lr: LR | None = None,
    momentum: ArrayLike = 0.0,
    dampening: ArrayLike = 0.0,
    weight_decay: ArrayLike = 0.0,
    nesterov: bool = False,
    *,
    maximize: bool = False,
    learning_rate: LR | None = None,
    weight_decay_mask: Selector | None = None,
    in_state: Sequence[str] | None = None,
) -> GradientTransformation:
    """Stochastic gradient descent with momentum, PyTorch's ``torch.optim.SGD``.

    .. math::
        g_t \\leftarrow g_t + \\lambda \\theta_{t-1}, \\quad
        b_t = \\mu b_{t-1} + (1-\\tau) g_t \\ (b_1 = g_1), \\quad
        \\theta_t = \\theta_{t-1} - \\mathrm{lr} \\cdot
        \\begin{cases} g_t + \\mu b_t & \\text{nesterov} \\\\ b_t & \\text{else} \\end{cases}

    (no buffer when :math:`\\mu = 0`). optax's ``sgd(lr, momentum, nesterov)`` is the same
    without dampening and weight decay.

    Args:
        lr: learning rate, a float or a schedule; ``None``: PyTorch's default, 1e-3.
        momentum: :math:`\\mu`.
        dampening: :math:`\\tau`, not applied to the first step (PyTorch).
        weight_decay: :math:`\\lambda`, L2 penalty added to the gradient.
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0).
        maximize: maximise the objective instead (the gradients are negated first).
        learning_rate: optax's name for ``lr``; giving both is a ``TypeError``.
        weight_decay_mask: which leaves to decay (a selector), e.g. `exclude_bias_and_norm`.
        in_state: hyper-parameters kept in the optimizer state (changeable between steps
            without recompiling): any of ``"lr"``, ``"momentum"``, ``"dampening"``,
            ``"weight_decay"``. A term dropped because its value is 0 is kept when named.
            ``None``: the lr (unless it is a JAX array, which is used as given).

    Returns:
        The optimizer: ``chain(add_weight_decay, trace, scale_by_lr)`` in a
        `HyperparamsState` when ``in_state`` is not empty.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> opt = optim.sgd(0.1, momentum=0.9)
        >>> params = {"w": jnp.array([1.0, -1.0])}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": jnp.array([0.5, 0.5])}, state, params)
        >>> optim.apply_updates(params, updates)["w"].tolist()
        [0.949999988079071, -1.0499999523162842]
    """
    lr, in_state = resolve_lr("sgd", lr, learning_rate, 1e-3, in_state)
    check_args(
        "sgd", in_state, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay
    )
    if nesterov and (is_static_zero(momentum) or not is_static_zero(dampening)):
        raise ValueError("sgd: nesterov momentum requires a momentum > 0 and zero dampening")

    def build(lr, momentum, dampening, weight_decay, nesterov, maximize, weight_decay_mask):
        return steps(
            maximize,
            decay(weight_decay, weight_decay_mask),
            identity() if is_static_zero(momentum) else trace(momentum, dampening, nesterov),
            scale_by_lr(lr),
        )

    values = dict(
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        weight_decay=weight_decay,
        nesterov=nesterov,
        maximize=maximize,
        weight_decay_mask=weight_decay_mask,
    )
    return with_hyperparams(build, values, in_state, "sgd")


def _adam_like(
    name: str,
    decoupled: bool,
    lr: LR,
    betas: tuple[ArrayLike, ArrayLike],
    eps: ArrayLike,
    weight_decay: ArrayLike,
    amsgrad: bool,
    maximize: bool,
    weight_decay_mask: Selector | None,
    in_state: tuple[str, ...],
) -> GradientTransformation:
    betas = check_pair(name, "betas", betas)
    check_args(name, in_state, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def build(lr, betas, eps, weight_decay, amsgrad, maximize, weight_decay_mask):
        wd = decay(weight_decay, weight_decay_mask)
        adam = scale_by_adam(betas, eps, amsgrad)
        if decoupled:
            return steps(maximize, adam, wd, scale_by_lr(lr))
        return steps(maximize, wd, adam, scale_by_lr(lr))

    values = dict(
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        maximize=maximize,
        weight_decay_mask=weight_decay_mask,
    )
    return with_hyperparams(build, values, in_state, name)


@recipe
def adam(
    lr: LR | None = None,
    betas: tuple[ArrayLike, ArrayLike] = (0.9, 0.999),
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike = 0.0,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    learning_rate: LR | None = None,
    weight_decay_mask: Selector | None = None,
    in_state: Sequence[str] | None = None,
) -> GradientTransformation:
    """Adam, PyTorch's ``torch.optim.Adam`` (weight decay as L2 added to the gradient).

    .. math::
        g_t \\leftarrow g_t + \\lambda \\theta_{t-1}, \\quad
        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
        v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2,

    .. math::
        \\theta_t = \\theta_{t-1} - \\frac{\\mathrm{lr}}{1-\\beta_1^t}
        \\frac{m_t}{\\sqrt{\\hat v_t} / \\sqrt{1-\\beta_2^t} + \\epsilon}

    with :math:`\\hat v_t = v_t`, or :math:`\\max(\\hat v_{t-1}, v_t)` with AMSGrad. Equal to
    ``optax.adam(lr, b1, b2, eps)`` without weight decay and AMSGrad (optax's AMSGrad takes
    the maximum of the bias-corrected :math:`v_t`). For decoupled decay use `adamw`.

    Args:
        lr: learning rate, a float or a schedule; ``None``: PyTorch's default, 1e-3.
        betas: :math:`(\\beta_1, \\beta_2)`.
        eps: :math:`\\epsilon`, outside the square root as in PyTorch and optax.
        weight_decay: :math:`\\lambda`, L2 penalty added to the gradient.
        amsgrad: AMSGrad variant.
        maximize: maximise the objective instead (the gradients are negated first).
        learning_rate: optax's name for ``lr``; giving both is a ``TypeError``.
        weight_decay_mask: which leaves to decay (a selector), e.g. `exclude_bias_and_norm`.
        in_state: hyper-parameters kept in the optimizer state: any of ``"lr"``,
            ``"betas"``, ``"eps"``, ``"weight_decay"``; ``None``: the lr (see `sgd`).

    Returns:
        The optimizer: ``chain(add_weight_decay, scale_by_adam, scale_by_lr)``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import optim
        >>> opt = optim.adam(1e-3)
        >>> params = {"w": jnp.zeros(3)}
        >>> state = opt.init(params)
        >>> grads = jax.grad(lambda p: jnp.sum((p["w"] - 1.0) ** 2))(params)
        >>> updates, state = opt.update(grads, state, params)
        >>> params = optim.apply_updates(params, updates)   # each weight moves by +lr
    """
    lr, in_state = resolve_lr("adam", lr, learning_rate, 1e-3, in_state)
    return _adam_like(
        "adam", False, lr, betas, eps, weight_decay, amsgrad, maximize, weight_decay_mask, in_state
    )


@recipe
def adamw(
    lr: LR | None = None,
    betas: tuple[ArrayLike, ArrayLike] = (0.9, 0.999),
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    learning_rate: LR | None = None,
    weight_decay_mask: Selector | None = None,
    in_state: Sequence[str] | None = None,
) -> GradientTransformation:
    """AdamW, PyTorch's ``torch.optim.AdamW`` (decoupled weight decay).

    .. math::
        \\theta_t = \\theta_{t-1} - \\mathrm{lr} \\left( \\frac{m_t/(1-\\beta_1^t)}
        {\\sqrt{\\hat v_t/(1-\\beta_2^t)} + \\epsilon} + \\lambda \\theta_{t-1} \\right)

    with the moments of `adam` on the raw gradient. Equal to ``optax.adamw`` (whose default
    weight decay is 1e-4, PyTorch's and funcnet's 1e-2) without AMSGrad.

    Args:
        lr: learning rate, a float or a schedule; ``None``: PyTorch's default, 1e-3.
        betas: :math:`(\\beta_1, \\beta_2)`.
        eps: :math:`\\epsilon`.
        weight_decay: :math:`\\lambda`, decoupled (multiplied by the lr, as in PyTorch).
        amsgrad: AMSGrad variant (PyTorch's).
        maximize: maximise the objective instead (the gradients are negated first).
        learning_rate: optax's name for ``lr``; giving both is a ``TypeError``.
        weight_decay_mask: which leaves to decay (a selector); `exclude_bias_and_norm`
            is the usual "no decay on biases and norm weights".
        in_state: hyper-parameters kept in the optimizer state: any of ``"lr"``,
            ``"betas"``, ``"eps"``, ``"weight_decay"``; ``None``: the lr (see `sgd`).

    Returns:
        The optimizer: ``chain(scale_by_adam, add_weight_decay, scale_by_lr)``.

    Examples:
        >>> import optax
        >>> from funcnet import optim
        >>> opt = optax.inject_hyperparams(optim.adamw)(learning_rate=1e-3)  # optax's wrapper
    """
    lr, in_state = resolve_lr("adamw", lr, learning_rate, 1e-3, in_state)
    return _adam_like(
        "adamw", True, lr, betas, eps, weight_decay, amsgrad, maximize, weight_decay_mask, in_state
    )


@recipe
def rmsprop(
    lr: LR | None = None,
    alpha: ArrayLike = 0.99,
    eps: ArrayLike = 1e-8,
    weight_decay: ArrayLike = 0.0,
    momentum: ArrayLike = 0.0,
    centered: bool = False,
    *,
    eps_in_sqrt: bool = False,
    maximize: bool = False,
    learning_rate: LR | None = None,
    weight_decay_mask: Selector | None = None,
    in_state: Sequence[str] | None = None,
) -> GradientTransformation:
    """RMSprop, PyTorch's ``torch.optim.RMSprop``.

    .. math::
        g_t \\leftarrow g_t + \\lambda \\theta_{t-1}, \\quad
        v_t = \\alpha v_{t-1} + (1-\\alpha) g_t^2, \\quad
        d_t = \\frac{g_t}{\\sqrt{v_t - \\bar g_t^2} + \\epsilon},

    .. math::
        b_t = \\mu b_{t-1} + d_t, \\quad \\theta_t = \\theta_{t-1} - \\mathrm{lr}\\, b_t

    (:math:`\\bar g_t` the running mean of :math:`g_t` when centered, else 0; no buffer when
    :math:`\\mu = 0`). optax's ``rmsprop`` differs: decay 0.9, :math:`\\epsilon` inside the
    square root by default (``eps_in_sqrt=True`` here), and the lr applied before the
    momentum buffer (the same for a constant lr).

    Args:
        lr: learning rate, a float or a schedule; ``None``: PyTorch's default, 1e-2.
        alpha: smoothing constant :math:`\\alpha`.
        eps: :math:`\\epsilon`, outside the square root (PyTorch).
        weight_decay: :math:`\\lambda`, L2 penalty added to the gradient.
        momentum: :math:`\\mu`.
        centered: normalise by the estimated variance of the gradient.
        eps_in_sqrt: optax's placement of :math:`\\epsilon` (inside the square root).
        maximize: maximise the objective instead (the gradients are negated first).
        learning_rate: optax's name for ``lr``; giving both is a ``TypeError``.
        weight_decay_mask: which leaves to decay (a selector).
        in_state: hyper-parameters kept in the optimizer state: any of ``"lr"``,
            ``"alpha"``, ``"eps"``, ``"weight_decay"``, ``"momentum"``; ``None``: the lr.

    Returns:
        The optimizer: ``chain(add_weight_decay, scale_by_rms, trace, scale_by_lr)``.
    """
    lr, in_state = resolve_lr("rmsprop", lr, learning_rate, 1e-2, in_state)
    check_args(
        "rmsprop",
        in_state,
        lr=lr,
        alpha=alpha,
        eps=eps,
        weight_decay=weight_decay,
        momentum=momentum,
    )

    def build(lr, alpha, eps, weight_decay, momentum, centered, eps_in_sqrt, maximize, mask):
        return steps(
            maximize,
            decay(weight_decay, mask),
            scale_by_rms(alpha, eps, centered, eps_in_sqrt),
            identity() if is_static_zero(momentum) else trace(momentum),
            scale_by_lr(lr),
        )

    values = dict(
        lr=lr,
        alpha=alpha,
        eps=eps,
        weight_decay=weight_decay,
        momentum=momentum,
        centered=centered,
        eps_in_sqrt=eps_in_sqrt,
        maximize=maximize,
        mask=weight_decay_mask,
    )
    return with_hyperparams(build, values, in_state, "rmsprop")


@recipe
def adagrad(
    lr: LR | None = None,
    lr_decay: ArrayLike = 0.0,
    weight_decay: ArrayLike = 0.0,
    initial_accumulator_value: ArrayLike = 0.0,
    eps: ArrayLike = 1e-10,
    *,
    eps_in_sqrt: bool = False,
    maximize: bool = False,
    learning_rate: LR | None = None,
    weight_decay_mask: Selector | None = None,
    in_state: Sequence[str] | None = None,
) -> GradientTransformation:
    """Adagrad, PyTorch's ``torch.optim.Adagrad``.

    .. math::
        g_t \\leftarrow g_t + \\lambda \\theta_{t-1}, \\quad
        s_t = s_{t-1} + g_t^2, \\quad
        \\theta_t = \\theta_{t-1} - \\frac{\\mathrm{lr}}{1 + (t-1)\\,\\mathrm{lr\\_decay}}
        \\frac{g_t}{\\sqrt{s_t} + \\epsilon}

    with :math:`s_0` = ``initial_accumulator_value``. optax's ``adagrad`` differs in its
    defaults (:math:`s_0 = 0.1`, :math:`\\epsilon = 10^{-7}`) and puts :math:`\\epsilon`
    inside the square root: ``adagrad(lr, initial_accumulator_value=0.1, eps=1e-7,
    eps_in_sqrt=True)`` is ``optax.adagrad(lr)``.

    Args:
        lr: learning rate, a float or a schedule; ``None``: PyTorch's default, 1e-2.
        lr_decay: decay of the step size with the step count.
        weight_decay: :math:`\\lambda`, L2 penalty added to the gradient.
        initial_accumulator_value: :math:`s_0`.
        eps: :math:`\\epsilon`.
        eps_in_sqrt: optax's placement of :math:`\\epsilon` (inside the square root).
        maximize: maximise the objective instead (the gradients are negated first).
        learning_rate: optax's name for ``lr``; giving both is a ``TypeError``.
        weight_decay_mask: which leaves to decay (a selector).
        in_state: hyper-parameters kept in the optimizer state: any of ``"lr"``,
            ``"lr_decay"``, ``"weight_decay"``, ``"eps"``; ``None``: the lr.

    Returns:
        The optimizer: ``chain(add_weight_decay, scale_by_adagrad, scale_by_lr)``.
    """
    lr, in_state = resolve_lr("adagrad", lr, learning_rate, 1e-2, in_state)
    check_args(
        "adagrad",
        in_state,
        lr=lr,
        lr_decay=lr_decay,
        weight_decay=weight_decay,
        initial_accumulator_value=initial_accumulator_value,
        eps=eps,
    )
    if "initial_accumulator_value" in in_state:
        raise ValueError("adagrad: initial_accumulator_value only matters at init; keep it static")

    def build(lr, lr_decay, weight_decay, initial, eps, eps_in_sqrt, maximize, mask):
        return steps(
            maximize,
            decay(weight_decay, mask),
            scale_by_adagrad(lr_decay, initial, eps, eps_in_sqrt),
            scale_by_lr(lr),
        )

    values = dict(
        lr=lr,
        lr_decay=lr_decay,
        weight_decay=weight_decay,
        initial=initial_accumulator_value,
        eps=eps,
        eps_in_sqrt=eps_in_sqrt,
        maximize=maximize,
        mask=weight_decay_mask,
    )
    return with_hyperparams(build, values, in_state, "adagrad")
