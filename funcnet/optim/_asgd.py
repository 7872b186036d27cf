"""ASGD (averaged SGD), PyTorch's rule, and `asgd_averaged_params` to read its average."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ._base import GradientTransformation, OptState, Params, Updates, require_params
from ._base import safe_increment as _inc
from ._hyperparams import with_hyperparams
from ._masking import Selector
from ._recipe import LR, decay, recipe, resolve_lr, steps
from ._transforms import _zeros_like
from ._validate import check_args


class AsgdState(NamedTuple):
    """State of `asgd`, PyTorch's names.

    Attributes:
        count: int32 ``()``, updates so far (PyTorch's ``step``).
        eta: float ``()``, the step size of the coming update.
        mu: float ``()``, the averaging coefficient of the coming update.
        ax: the averaged parameters, like the parameters (read them with
            `asgd_averaged_params`).
    """

    count: jax.Array
    eta: jax.Array
    mu: jax.Array
    ax: Params


def _scale_by_asgd(
    lr: ArrayLike, lambd: ArrayLike, alpha: ArrayLike, t0: ArrayLike
) -> GradientTransformation:
    """ASGD's update and average (the updates already carry the step size)."""

    def init(params: Params) -> AsgdState:
        dtype = jnp.result_type(float)
        count = jnp.zeros((), jnp.int32)
        return AsgdState(count, jnp.array(lr, dtype), jnp.ones((), dtype), _zeros_like(params))

    def update(
        updates: Updates, state: AsgdState, params: Params | None = None
    ) -> tuple[Updates, AsgdState]:
        params = require_params(params, "asgd")
        eta, mu = state.eta, state.mu
        new = jax.tree.map(
            lambda g, p: (p * (1 - lambd * eta) - eta * g).astype(p.dtype), updates, params
        )
        out = jax.tree.map(lambda g, p, n: (n - p).astype(g.dtype), updates, params, new)
        ax = jax.tree.map(
            lambda a, n: jnp.where(mu == 1, n, a + (n - a) * mu).astype(a.dtype), state.ax, new
        )
        count = _inc(state.count)
        step = count.astype(eta.dtype)
        new_eta = (lr / (1 + lambd * lr * step) ** alpha).astype(eta.dtype)
        new_mu = (1 / jnp.maximum(1.0, step - t0)).astype(mu.dtype)
        return out, AsgdState(count, new_eta, new_mu, ax)

    return GradientTransformation(init, update)


@recipe
def asgd(
    lr: LR | None = None,
    lambd: ArrayLike = 1e-4,
    alpha: ArrayLike = 0.75,
    t0: ArrayLike = 1e6,
    weight_decay: ArrayLike = 0.0,
    *,
    maximize: bool = False,
    learning_rate: LR | None = None,
    weight_decay_mask: Selector | None = None,
    in_state: Sequence[str] | None = None,
) -> GradientTransformation:
    """Averaged SGD, PyTorch's ``torch.optim.ASGD``.

    .. math::
        g_t \\leftarrow g_t + \\lambda_{wd} \\theta_{t-1}, \\quad
        \\theta_t = \\theta_{t-1} (1 - \\lambda \\eta_t) - \\eta_t g_t, \\quad
        \\bar\\theta_t = \\bar\\theta_{t-1} + \\mu_t (\\theta_t - \\bar\\theta_{t-1})

    with :math:`\\eta_1 = \\mathrm{lr}`, :math:`\\mu_1 = 1`, and after step :math:`t`:
    :math:`\\eta_{t+1} = \\mathrm{lr} / (1 + \\lambda\\, \\mathrm{lr}\\, t)^\\alpha`,
    :math:`\\mu_{t+1} = 1 / \\max(1, t - t_0)` (so the average is the last iterate until
    step :math:`t_0`, then the mean of the iterates since). The step size of an update is
    computed from the lr of the update before it, as in PyTorch. The average
    :math:`\\bar\\theta` (PyTorch's ``state["ax"]``) lives in the state: evaluate with
    ``asgd_averaged_params(opt_state)``.

    Args:
        lr: learning rate, a float or a schedule (a schedule needs ``"lr"`` in
            ``in_state``); ``None``: PyTorch's default, 1e-2.
        lambd: :math:`\\lambda`, the decay term.
        alpha: :math:`\\alpha`, the power of the step-size decay.
        t0: :math:`t_0`, the step at which averaging starts.
        weight_decay: :math:`\\lambda_{wd}`, L2 penalty added to the gradient.
        maximize: maximise the objective instead (the gradients are negated first).
        learning_rate: optax's name for ``lr``; giving both is a ``TypeError``.
        weight_decay_mask: which leaves to decay (a selector).
        in_state: hyper-parameters kept in the optimizer state: any of ``"lr"``,
            ``"lambd"``, ``"alpha"``, ``"t0"``, ``"weight_decay"``; ``None``: the lr.

    Returns:
        The optimizer; its ``update`` needs ``params``. Its state holds an `AsgdState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> opt = optim.asgd(0.1, t0=1)  # average the iterates from the 4th update on
        >>> params = {"w": jnp.zeros(1)}
        >>> state = opt.init(params)
        >>> for _ in range(4):
        ...     updates, state = opt.update({"w": jnp.array([-1.0])}, state, params)
        ...     params = optim.apply_updates(params, updates)
        >>> round(float(params["w"][0]), 2), round(float(optim.asgd_averaged_params(state)["w"][0]), 2)
        (0.4, 0.35)
    """
    lr, in_state = resolve_lr("asgd", lr, learning_rate, 1e-2, in_state)
    check_args("asgd", in_state, lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay)
    if callable(lr) and "lr" not in in_state:
        raise ValueError("asgd: a schedule lr needs 'lr' in in_state")

    def build(lr, lambd, alpha, t0, weight_decay, maximize, mask):
        wd = decay(weight_decay, mask)
        return steps(maximize, wd, _scale_by_asgd(lr, lambd, alpha, t0))

    values = dict(
        lr=lr,
        lambd=lambd,
        alpha=alpha,
        t0=t0,
        weight_decay=weight_decay,
        maximize=maximize,
        mask=weight_decay_mask,
    )
    return with_hyperparams(build, values, in_state, "asgd")


def _is_asgd(x: Any) -> bool:
    return isinstance(x, AsgdState)


def asgd_averaged_params(opt_state: OptState) -> Params:
    """The averaged parameters that `asgd` keeps, found anywhere in the optimizer state.

    PyTorch's ``optimizer.state[p]["ax"]`` for every parameter: evaluate with
    ``model.apply(optim.asgd_averaged_params(opt_state), ...)``. It finds the `AsgdState`
    at any depth (inside `chain`, `accumulate`, `with_ema`, optax wrappers). Usable inside
    ``jax.jit``. Before the first update it holds zeros, as in PyTorch.

    Args:
        opt_state: the optimizer state.

    Returns:
        A tree like the parameters given to `asgd`'s ``init``, in their dtypes (inside
        `param_groups`, the other groups' leaves are `MaskedNode` placeholders).

    Raises:
        ValueError: the state holds no ASGD state, or more than one.
    """
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=_is_asgd) if _is_asgd(x)]
    if len(found) != 1:
        raise ValueError(
            f"this optimizer state holds {len(found)} ASGD states; asgd_averaged_params "
            "reads the one that optim.asgd(...) keeps (build the optimizer with it, and "
            "use one asgd for all the parameters)."
        )
    return found[0].ax
