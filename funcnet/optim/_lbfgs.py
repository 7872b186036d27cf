"""L-BFGS, PyTorch's ``torch.optim.LBFGS``, as one jittable step that calls the loss itself.

PyTorch's ``optimizer.step(closure)`` re-evaluates the loss through a closure up to
``max_eval`` times per step (``max_iter`` L-BFGS iterations, each with an optional strong
Wolfe line search). Here the loss function is an argument of the step, which runs the
same iterations in ``jax.lax.while_loop``s, so the whole step compiles to one program:

    opt = optim.lbfgs(line_search_fn="strong_wolfe")
    opt_state = opt.init(params)
    params, opt_state, loss = opt.step(loss_fn, params, opt_state)

The parameters are flattened into one vector (as PyTorch's ``_gather_flat_grad``), and
the history lives in fixed ``(history_size, n)`` buffers used as a ring, so the state's
shapes never change.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ._base import Params
from ._checks import check_float_params
from ._hyperparams import hyperparameters_only
from ._recipe import resolve_lr
from ._validate import check_value

LossFn = Callable[[Params], jax.Array]
_C1, _C2, _LS_TOLERANCE = 1e-4, 0.9, 1e-9  # PyTorch's _strong_wolfe defaults, always used


class LbfgsState(NamedTuple):
    """State of `lbfgs`, PyTorch's names (``n`` = the number of parameter elements).

    Attributes:
        func_evals: int32 ``()``, loss evaluations so far.
        n_iter: int32 ``()``, L-BFGS iterations so far.
        d: ``(n,)``, the last search direction.
        t: ``()``, the last step length.
        old_dirs: ``(history_size, n)``, gradient differences :math:`y_i` (a ring buffer).
        old_stps: ``(history_size, n)``, steps :math:`s_i` (a ring buffer).
        ro: ``(history_size,)``, :math:`1 / y_i^\\top s_i`.
        start: int32 ``()``, the ring position of the oldest pair.
        num_old: int32 ``()``, pairs in the history.
        h_diag: ``()``, the scale of the initial inverse Hessian (PyTorch's ``H_diag``).
        prev_flat_grad: ``(n,)``, the gradient at the start of the last iteration.
        prev_loss: ``()``, the loss at the start of the last iteration.

    Vectors and scalars have the dtype of the flattened parameters.
    """

    func_evals: jax.Array
    n_iter: jax.Array
    d: jax.Array
    t: jax.Array
    old_dirs: jax.Array
    old_stps: jax.Array
    ro: jax.Array
    start: jax.Array
    num_old: jax.Array
    h_diag: jax.Array
    prev_flat_grad: jax.Array
    prev_loss: jax.Array


class Lbfgs(NamedTuple):
    """The L-BFGS optimizer that `lbfgs` returns: ``init`` and ``step``.

    Attributes:
        init: ``init(params) -> LbfgsState``.
        step: ``step(loss_fn, params, opt_state) -> (params, opt_state, loss)``, PyTorch's
            ``loss = optimizer.step(closure)``: ``loss_fn(params)`` returns a scalar; the
            returned loss is its value at the given parameters.
    """

    init: Callable[[Params], LbfgsState]
    step: Callable[[LossFn, Params, LbfgsState], tuple[Params, LbfgsState, jax.Array]]


class _Config(NamedTuple):
    lr: Any
    max_iter: int
    max_eval: int
    tolerance_grad: float
    tolerance_change: float
    history_size: int
    strong_wolfe: bool


@hyperparameters_only
def lbfgs(
    lr: float | None = None,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    history_size: int = 100,
    line_search_fn: str | None = None,
    *,
    learning_rate: float | None = None,
) -> Lbfgs:
    """L-BFGS, PyTorch's ``torch.optim.LBFGS``: same arguments, iterations and counters.

    One ``step`` runs up to ``max_iter`` iterations (at most ``max_eval`` loss
    evaluations): the two-loop recursion over the last ``history_size`` pairs gives the
    direction, and the step length is ``lr`` (the first iteration ever:
    ``min(1, 1 / |g|_1) * lr``), or the one a strong Wolfe line search finds. It stops
    early, as PyTorch's, when the largest gradient element is ``<= tolerance_grad``, or a
    step or loss change is below ``tolerance_change``. The step is pure and jittable; the
    state keeps the history between steps.

    Args:
        lr: step length factor (a number); ``None``: PyTorch's default, 1.
        max_iter: iterations per step.
        max_eval: loss evaluations per step; ``None``: ``max_iter * 5 // 4`` (PyTorch).
        tolerance_grad: stop when ``max |g|`` is at most this.
        tolerance_change: stop when a step or a loss change is smaller than this.
        history_size: pairs of the limited-memory inverse Hessian (memory:
            ``2 * history_size`` copies of the parameters).
        line_search_fn: ``None`` (fixed step) or ``"strong_wolfe"``.
        learning_rate: optax's name for ``lr``; giving both is a ``TypeError``.

    Returns:
        An `Lbfgs` (``init``, ``step``). It is not a gradient transformation: a step needs
        the loss function, not one gradient, so it does not go in `chain`.

    Raises:
        ValueError: an argument is out of range, or ``line_search_fn`` is unknown.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet import optim
        >>> opt = optim.lbfgs(line_search_fn="strong_wolfe")
        >>> params = {"x": jnp.array([3.0, -2.0])}
        >>> state = opt.init(params)
        >>> loss_fn = lambda p: jnp.sum((p["x"] - 1.0) ** 2)
        >>> params, state, loss = opt.step(loss_fn, params, state)
        >>> float(loss), [round(v, 4) for v in params["x"].tolist()]
        (13.0, [1.0, 1.0])
    """
    lr, _ = resolve_lr("lbfgs", lr, learning_rate, 1.0, ())
    if callable(lr):
        raise ValueError(f"lbfgs: lr must be a number >= 0, got {lr!r}")
    check_value("lbfgs", "lr", lr)
    if line_search_fn not in (None, "strong_wolfe"):
        raise ValueError(
            f"lbfgs: line_search_fn must be None or 'strong_wolfe', got {line_search_fn!r}"
        )
    max_eval = max_iter * 5 // 4 if max_eval is None else max_eval
    for name, value in (
        ("max_iter", max_iter),
        ("max_eval", max_eval),
        ("history_size", history_size),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"lbfgs: {name} must be an int >= 1, got {value!r}")
    config = _Config(
        lr,
        max_iter,
        max_eval,
        tolerance_grad,
        tolerance_change,
        history_size,
        line_search_fn == "strong_wolfe",
    )
    return Lbfgs(functools.partial(_init, config), functools.partial(_step, config))


def _init(config: _Config, params: Params) -> LbfgsState:
    check_float_params("lbfgs", params)
    x, _ = ravel_pytree(params)
    n, size, dtype = x.size, config.history_size, x.dtype

    def zeros(*shape: int) -> jax.Array:  # a fresh buffer each: a donated state never aliases
        return jnp.zeros(shape, dtype)

    def count() -> jax.Array:
        return jnp.zeros((), jnp.int32)

    return LbfgsState(
        func_evals=count(),
        n_iter=count(),
        d=zeros(n),
        t=zeros(),
        old_dirs=zeros(size, n),
        old_stps=zeros(size, n),
        ro=zeros(size),
        start=count(),
        num_old=count(),
        h_diag=jnp.ones((), dtype),
        prev_flat_grad=zeros(n),
        prev_loss=zeros(),
    )


def _evaluator(loss_fn: LossFn, unravel: Callable, dtype: Any) -> Callable:
    """``x -> (loss, gradient)`` on the flat parameter vector, in its dtype."""
    value_and_grad = jax.value_and_grad(lambda x: loss_fn(unravel(x)))

    def evaluate(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        loss, grad = value_and_grad(x)
        return jnp.asarray(loss).astype(dtype), grad.astype(dtype)

    return evaluate


class _Loop(NamedTuple):
    x: jax.Array
    loss: jax.Array
    grad: jax.Array
    opt_cond: jax.Array
    n_iter: jax.Array  # iterations in this step
    evals: jax.Array  # evaluations in this step
    done: jax.Array
    state: LbfgsState


def _step(
    config: _Config, loss_fn: LossFn, params: Params, state: LbfgsState
) -> tuple[Params, LbfgsState, jax.Array]:
    x, unravel = ravel_pytree(params)
    evaluate = _evaluator(loss_fn, unravel, x.dtype)
    orig_loss, grad = evaluate(x)
    opt_cond = jnp.max(jnp.abs(grad), initial=0.0) <= config.tolerance_grad
    zero = jnp.zeros((), jnp.int32)
    state = state._replace(func_evals=state.func_evals + 1)
    loop = _Loop(x, orig_loss, grad, opt_cond, zero, zero + 1, opt_cond, state)
    loop = jax.lax.while_loop(lambda c: ~c.done, lambda c: _iteration(config, evaluate, c), loop)
    return unravel(loop.x), loop.state, orig_loss


def _iteration(config: _Config, evaluate: Callable, c: _Loop) -> _Loop:
    """One iteration of PyTorch's ``while n_iter < max_iter`` loop."""
    st = c.state
    n_iter, total = c.n_iter + 1, st.n_iter + 1
    first = total == 1
    st = jax.lax.cond(first, _first_direction, _lbfgs_direction, st, c.grad)
    sum_abs = jnp.sum(jnp.abs(c.grad))
    t = jnp.where(first, jnp.minimum(1.0, 1.0 / sum_abs) * config.lr, config.lr).astype(st.t.dtype)
    gtd = c.grad @ st.d
    stop_gtd = gtd > -config.tolerance_change

    def move(_: None) -> tuple[jax.Array, ...]:
        if config.strong_wolfe:
            loss, grad, t_new, evals = _strong_wolfe(
                evaluate, c.x, t, st.d, c.loss, c.grad, gtd, config.max_eval - c.evals
            )
            opt_cond = jnp.max(jnp.abs(grad), initial=0.0) <= config.tolerance_grad
            return c.x + t_new * st.d, loss, grad, t_new, opt_cond, evals
        x = c.x + t * st.d
        last = n_iter == config.max_iter  # PyTorch does not re-evaluate after the last one

        def reevaluate(_: None) -> tuple[jax.Array, ...]:
            loss, grad = evaluate(x)
            return loss, grad, jnp.max(jnp.abs(grad), initial=0.0) <= config.tolerance_grad

        keep = (c.loss, c.grad, c.opt_cond)
        loss, grad, opt_cond = jax.lax.cond(last, lambda _: keep, reevaluate, None)
        return x, loss, grad, t, opt_cond, jnp.where(last, 0, 1).astype(jnp.int32)

    def stay(_: None) -> tuple[jax.Array, ...]:
        return c.x, c.loss, c.grad, t, c.opt_cond, jnp.zeros((), jnp.int32)

    x, loss, grad, t, opt_cond, ls_evals = jax.lax.cond(stop_gtd, stay, move, None)
    evals = c.evals + ls_evals
    done = (
        stop_gtd
        | (n_iter == config.max_iter)
        | (evals >= config.max_eval)
        | opt_cond
        | (jnp.max(jnp.abs(st.d * t), initial=0.0) <= config.tolerance_change)
        | (jnp.abs(loss - c.loss) < config.tolerance_change)
    )
    st = st._replace(
        func_evals=st.func_evals + ls_evals,
        n_iter=total,
        t=t,
        prev_flat_grad=c.grad,
        prev_loss=c.loss,
    )
    return _Loop(x, loss, grad, opt_cond, n_iter, evals, done, st)


def _first_direction(st: LbfgsState, grad: jax.Array) -> LbfgsState:
    zero = jnp.zeros((), jnp.int32)
    return st._replace(d=-grad, start=zero, num_old=zero, h_diag=jnp.ones_like(st.h_diag))


def _lbfgs_direction(st: LbfgsState, grad: jax.Array) -> LbfgsState:
    """Update the history with the last step, then the two-loop recursion."""
    y = grad - st.prev_flat_grad
    s = st.d * st.t
    ys = y @ s
    st = jax.lax.cond(ys > 1e-10, _push, lambda st, *_: st, st, y, s, ys)
    return st._replace(d=_two_loop(st, grad))


def _push(st: LbfgsState, y: jax.Array, s: jax.Array, ys: jax.Array) -> LbfgsState:
    """Append a pair, dropping the oldest when the history is full (PyTorch's pop(0))."""
    size = st.ro.shape[0]
    full = st.num_old == size
    pos = jnp.where(full, st.start, (st.start + st.num_old) % size)
    return st._replace(
        old_dirs=st.old_dirs.at[pos].set(y),
        old_stps=st.old_stps.at[pos].set(s),
        ro=st.ro.at[pos].set(1.0 / ys),
        start=jnp.where(full, (st.start + 1) % size, st.start),
        num_old=jnp.minimum(st.num_old + 1, size),
        h_diag=ys / (y @ y),
    )


def _two_loop(st: LbfgsState, grad: jax.Array) -> jax.Array:
    """The L-BFGS direction ``-H g`` from the history, oldest pair first (PyTorch's order)."""
    size = st.ro.shape[0]

    def backward(k: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, ...]:
        q, al = carry
        i = st.num_old - 1 - k
        j = (st.start + i) % size
        a = (st.old_stps[j] @ q) * st.ro[j]
        return q - a * st.old_dirs[j], al.at[i].set(a)

    al = jnp.zeros(size, grad.dtype)
    q, al = jax.lax.fori_loop(0, st.num_old, backward, (-grad, al))

    def forward(i: jax.Array, r: jax.Array) -> jax.Array:
        j = (st.start + i) % size
        be = (st.old_dirs[j] @ r) * st.ro[j]
        return r + (al[i] - be) * st.old_stps[j]

    return jax.lax.fori_loop(0, st.num_old, forward, q * st.h_diag)


def _cubic_interpolate(
    x1: jax.Array,
    f1: jax.Array,
    g1: jax.Array,
    x2: jax.Array,
    f2: jax.Array,
    g2: jax.Array,
    bounds: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """The minimiser of the cubic through two points with slopes, PyTorch's rule."""
    lo, hi = bounds if bounds is not None else (jnp.minimum(x1, x2), jnp.maximum(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    d2 = jnp.sqrt(jnp.maximum(d2_square, 0.0))
    min_pos = jnp.where(
        x1 <= x2,
        x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2)),
        x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2)),
    )
    return jnp.where(d2_square >= 0, jnp.minimum(jnp.maximum(min_pos, lo), hi), (lo + hi) / 2.0)


class _Bracket(NamedTuple):
    t: jax.Array  # (2,)
    f: jax.Array  # (2,)
    g: jax.Array  # (2, n)
    gtd: jax.Array  # (2,)


def _pair(*points: jax.Array) -> _Bracket:
    """The bracket of two points, each given as ``t, f, g, gtd``."""
    first, second = points[:4], points[4:]
    return _Bracket(*(jnp.stack([a, b]) for a, b in zip(first, second)))


class _Search(NamedTuple):
    t: jax.Array
    t_prev: jax.Array
    f_prev: jax.Array
    g_prev: jax.Array
    gtd_prev: jax.Array
    f_new: jax.Array
    g_new: jax.Array
    gtd_new: jax.Array
    ls_iter: jax.Array
    evals: jax.Array
    stop: jax.Array
    done: jax.Array
    bracket: _Bracket


def _strong_wolfe(
    evaluate: Callable,
    x: jax.Array,
    t: jax.Array,
    d: jax.Array,
    f: jax.Array,
    g: jax.Array,
    gtd: jax.Array,
    max_ls: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """PyTorch's ``_strong_wolfe``: bracketing, then zoom. Returns (f, g, t, evaluations)."""
    f_new, g_new = evaluate(x + t * d)
    zero, false = jnp.zeros((), jnp.int32), jnp.zeros((), bool)
    t0 = jnp.zeros_like(t)
    bracket = _pair(t0, f, g, gtd, t, f_new, g_new, g_new @ d)
    search = _Search(
        t, t0, f, g, gtd, f_new, g_new, g_new @ d, zero, zero + 1, false, false, bracket
    )
    search = jax.lax.while_loop(
        lambda s: ~s.stop & (s.ls_iter < max_ls),
        lambda s: _bracket_step(evaluate, x, d, f, gtd, s),
        search,
    )
    ran_out = _pair(t0, f, g, gtd, search.t, search.f_new, search.g_new, search.gtd_new)
    bracket = jax.tree.map(lambda a, b: jnp.where(search.stop, a, b), search.bracket, ran_out)
    return _zoom(evaluate, x, d, f, gtd, jnp.max(jnp.abs(d)), max_ls, search, bracket)


def _bracket_step(
    evaluate: Callable, x: jax.Array, d: jax.Array, f: jax.Array, gtd: jax.Array, s: _Search
) -> _Search:
    """One pass of the bracketing loop: stop with a bracket, or extrapolate and evaluate."""
    too_high = (s.f_new > f + _C1 * s.t * gtd) | ((s.ls_iter > 1) & (s.f_new >= s.f_prev))
    wolfe = ~too_high & (jnp.abs(s.gtd_new) <= -_C2 * gtd)
    found = too_high | (~wolfe & (s.gtd_new >= 0))

    def finish(s: _Search) -> _Search:
        pair = _pair(s.t_prev, s.f_prev, s.g_prev, s.gtd_prev, s.t, s.f_new, s.g_new, s.gtd_new)
        single = _pair(s.t, s.f_new, s.g_new, s.gtd_new, s.t, s.f_new, s.g_new, s.gtd_new)
        bracket = jax.tree.map(lambda a, b: jnp.where(wolfe, a, b), single, pair)
        return s._replace(stop=jnp.ones((), bool), done=wolfe, bracket=bracket)

    def extend(s: _Search) -> _Search:
        bounds = (s.t + 0.01 * (s.t - s.t_prev), s.t * 10)
        t = _cubic_interpolate(s.t_prev, s.f_prev, s.gtd_prev, s.t, s.f_new, s.gtd_new, bounds)
        f_new, g_new = evaluate(x + t * d)
        return s._replace(
            t=t,
            t_prev=s.t,
            f_prev=s.f_new,
            g_prev=s.g_new,
            gtd_prev=s.gtd_new,
            f_new=f_new,
            g_new=g_new,
            gtd_new=g_new @ d,
            ls_iter=s.ls_iter + 1,
            evals=s.evals + 1,
        )

    return jax.lax.cond(found | wolfe, finish, extend, s)


class _Zoom(NamedTuple):
    bracket: _Bracket
    low: jax.Array
    done: jax.Array
    stop: jax.Array
    insuf_progress: jax.Array
    ls_iter: jax.Array
    evals: jax.Array


def _zoom(
    evaluate: Callable,
    x: jax.Array,
    d: jax.Array,
    f: jax.Array,
    gtd: jax.Array,
    d_norm: jax.Array,
    max_ls: jax.Array,
    search: _Search,
    bracket: _Bracket,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The zoom phase: shrink the bracket until the strong Wolfe conditions hold."""
    low = jnp.where(bracket.f[0] <= bracket.f[1], 0, 1)
    false = jnp.zeros((), bool)
    zoom = _Zoom(bracket, low, search.done, false, false, search.ls_iter, search.evals)

    def body(z: _Zoom) -> _Zoom:
        small = jnp.abs(z.bracket.t[1] - z.bracket.t[0]) * d_norm < _LS_TOLERANCE
        return jax.lax.cond(
            small,
            lambda z: z._replace(stop=jnp.ones((), bool)),
            lambda z: _zoom_step(evaluate, x, d, f, gtd, z),
            z,
        )

    zoom = jax.lax.while_loop(lambda z: ~z.done & ~z.stop & (z.ls_iter < max_ls), body, zoom)
    b, i = zoom.bracket, zoom.low
    return b.f[i], b.g[i], b.t[i], zoom.evals


def _zoom_step(
    evaluate: Callable, x: jax.Array, d: jax.Array, f: jax.Array, gtd: jax.Array, z: _Zoom
) -> _Zoom:
    b, low = z.bracket, z.low
    high = 1 - low
    t = _cubic_interpolate(b.t[0], b.f[0], b.gtd[0], b.t[1], b.f[1], b.gtd[1])
    top, bottom = jnp.max(b.t), jnp.min(b.t)
    eps = 0.1 * (top - bottom)
    near = jnp.minimum(top - t, t - bottom) < eps
    jump = near & (z.insuf_progress | (t >= top) | (t <= bottom))
    t = jnp.where(
        jump, jnp.where(jnp.abs(t - top) < jnp.abs(t - bottom), top - eps, bottom + eps), t
    )
    f_new, g_new = evaluate(x + t * d)
    gtd_new = g_new @ d
    point = (t, f_new, g_new, gtd_new)

    def put(bracket: _Bracket, i: jax.Array, values: tuple) -> _Bracket:
        return _Bracket(*(a.at[i].set(v) for a, v in zip(bracket, values)))

    fail = (f_new > f + _C1 * t * gtd) | (f_new >= b.f[low])
    wolfe = jnp.abs(gtd_new) <= -_C2 * gtd
    flip = ~wolfe & (gtd_new * (b.t[high] - b.t[low]) >= 0)
    old_low = tuple(a[low] for a in b)
    kept = jax.tree.map(lambda a, o: jnp.where(flip, a, o), put(b, high, old_low), b)
    kept = put(kept, low, point)
    failed = put(b, high, point)
    bracket = jax.tree.map(lambda a, o: jnp.where(fail, a, o), failed, kept)
    new_low = jnp.where(fail, jnp.where(bracket.f[0] <= bracket.f[1], 0, 1), low)
    return _Zoom(bracket, new_low, ~fail & wolfe, z.stop, near & ~jump, z.ls_iter + 1, z.evals + 1)
