"""Schedules against PyTorch's lr_scheduler: NumPy closed forms here, torch when installed."""

from __future__ import annotations

import bisect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcnet.optim as optim
from funcnet.optim import schedules

from ._problem import single_threaded_torch

N = 60  # steps compared, past every schedule's turning points


def np_warm_restarts(T_0, T_mult, eta_min, base=0.1):
    """PyTorch's step-by-step form: T_cur += 1; restart when it reaches T_i."""
    out, t_cur, t_i = [], 0, T_0
    for _ in range(N):
        out.append(eta_min + (base - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2)
        t_cur += 1
        if t_cur >= t_i:
            t_cur, t_i = t_cur - t_i, t_i * T_mult
    return np.array(out)


def np_one_cycle(t, total, pct, lo, hi, final, three_phase=False, cos=True):
    """PyTorch's OneCycleLR phase walk for one step."""
    if three_phase:
        phases = [(pct * total - 1, lo, hi), (2 * pct * total - 2, hi, lo), (total - 1, lo, final)]
    else:
        phases = [(pct * total - 1, lo, hi), (total - 1, hi, final)]
    start = 0.0
    for i, (end, a, b) in enumerate(phases):
        if t <= end or i == len(phases) - 1:
            p = (t - start) / (end - start)
            return b + (a - b) / 2 * (math.cos(math.pi * p) + 1) if cos else (b - a) * p + a
        start = end
    raise AssertionError


def _sched(name, **kw):
    def make(opt):
        import torch

        return getattr(torch.optim.lr_scheduler, name)(opt, **kw)

    return make


def _torch_sequential(opt):
    import torch

    s = torch.optim.lr_scheduler
    return s.SequentialLR(
        opt, [s.ConstantLR(opt, factor=0.1, total_iters=3), s.ExponentialLR(opt, 0.9)], [5]
    )


THREE_PHASE_LINEAR = dict(anneal_strategy="linear", three_phase=True)

# (id, funcnet schedule, NumPy reference over t = 0..N-1, torch scheduler factory or None)
CASES = [
    (
        "constant",
        schedules.constant(0.1, factor=0.5, total_iters=4),
        lambda t: 0.1 * (0.5 if t < 4 else 1.0),
        _sched("ConstantLR", factor=0.5, total_iters=4),
    ),
    (
        "linear",
        schedules.linear(0.1, 0.25, 1.0, total_iters=8),
        lambda t: 0.1 * (0.25 + 0.75 * min(t, 8) / 8),
        _sched("LinearLR", start_factor=0.25, end_factor=1.0, total_iters=8),
    ),
    (
        "step",
        schedules.step(0.1, step_size=7, gamma=0.5),
        lambda t: 0.1 * 0.5 ** (t // 7),
        _sched("StepLR", step_size=7, gamma=0.5),
    ),
    (
        "multistep",
        schedules.multistep(0.1, [5, 12, 12, 30], gamma=0.3),
        lambda t: 0.1 * 0.3 ** bisect.bisect_right([5, 12, 12, 30], t),
        _sched("MultiStepLR", milestones=[5, 12, 12, 30], gamma=0.3),
    ),
    (
        "exponential",
        schedules.exponential(0.1, 0.95),
        lambda t: 0.1 * 0.95**t,
        _sched("ExponentialLR", gamma=0.95),
    ),
    (
        "cosine_annealing",
        schedules.cosine_annealing(0.1, T_max=20, eta_min=0.001),
        lambda t: 0.001 + 0.099 * (1 + math.cos(math.pi * t / 20)) / 2,
        _sched("CosineAnnealingLR", T_max=20, eta_min=0.001),
    ),
    (
        "warm_restarts",
        schedules.cosine_annealing_warm_restarts(0.1, T_0=5, eta_min=0.01),
        np_warm_restarts(5, 1, 0.01),
        _sched("CosineAnnealingWarmRestarts", T_0=5, eta_min=0.01),
    ),
    (
        "warm_restarts_T_mult",
        schedules.cosine_annealing_warm_restarts(0.1, T_0=3, T_mult=2),
        np_warm_restarts(3, 2, 0.0),
        _sched("CosineAnnealingWarmRestarts", T_0=3, T_mult=2),
    ),
    (
        "polynomial",
        schedules.polynomial(0.1, total_iters=30, power=2.0),
        lambda t: 0.1 * (1 - min(t, 30) / 30) ** 2,
        _sched("PolynomialLR", total_iters=30, power=2.0),
    ),
    (
        "one_cycle",
        schedules.one_cycle(0.1, total_steps=N),
        lambda t: np_one_cycle(t, N, 0.3, 0.004, 0.1, 0.004 / 1e4),
        _sched("OneCycleLR", max_lr=0.1, total_steps=N),
    ),
    (
        "one_cycle_three_phase_linear",
        schedules.one_cycle(0.1, N, pct_start=0.25, anneal_strategy="linear", three_phase=True),
        lambda t: np_one_cycle(t, N, 0.25, 0.004, 0.1, 4e-7, three_phase=True, cos=False),
        _sched("OneCycleLR", max_lr=0.1, total_steps=N, pct_start=0.25, **THREE_PHASE_LINEAR),
    ),
    (
        "sequential",
        schedules.sequential(
            [schedules.constant(0.1, 0.1, 3), schedules.exponential(0.1, 0.9)], [5]
        ),
        lambda t: 0.1 * (0.1 if t < 3 else 1.0) if t < 5 else 0.1 * 0.9 ** (t - 5),
        _torch_sequential,
    ),
    (
        "linear_warmup",
        schedules.linear_warmup(schedules.step(0.1, 10, 0.5), warmup_steps=6),
        lambda t: 0.1 * t / 6 if t < 6 else 0.1 * 0.5 ** ((t - 6) // 10),
        None,  # PyTorch's LinearLR cannot start at 0; its start_factor>0 form is tested in parity
    ),
    (
        "polynomial_end_lr",
        schedules.polynomial(0.1, total_iters=20, power=0.5, end_lr=0.01),
        lambda t: 0.09 * (1 - min(t, 20) / 20) ** 0.5 + 0.01,
        None,  # PyTorch's PolynomialLR always ends at 0
    ),
]
IDS = [c[0] for c in CASES]


def _reference(ref):
    return np.asarray(ref) if isinstance(ref, np.ndarray) else np.array([ref(t) for t in range(N)])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_schedule_matches_numpy_closed_form_in_float64(case):
    _, schedule, ref, _ = case
    with jax.enable_x64(True):
        got = np.asarray(schedule(jnp.arange(N)))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, _reference(ref), rtol=1e-10, atol=1e-15)


def test_schedules_in_float32_and_under_jit():
    """Default float32: a few float32 ulps of the cos/pow arithmetic.

    The bound is relative (1e-6) plus absolute in units of the peak lr (1e-6 · max): near
    the end of a cosine, ``1 + cos(pi t / T)`` cancels, so float32's error there is a few
    ulps of the peak value, not of the small result (jax versions differ in those ulps).
    """
    fns = [c[1] for c in CASES]
    values = jax.jit(lambda t: jnp.stack([f(t) for f in fns]))(jnp.arange(N, dtype=jnp.int32))
    assert values.dtype == jnp.float32
    for (name, _, ref, _), got in zip(CASES, np.asarray(values)):
        expected = _reference(ref)
        np.testing.assert_allclose(
            got, expected, rtol=1e-6, atol=1e-6 * expected.max(), err_msg=name
        )
    assert float(schedules.step(0.1, 7)(14)) == pytest.approx(0.001)  # plain Python ints too


def _torch_lrs(make, key="lr", momentum=0.0):
    torch = pytest.importorskip("torch")
    with single_threaded_torch():
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=momentum)
        sched = make(opt)
        out = []
        for _ in range(N):
            out.append(opt.param_groups[0][key])
            opt.step()
            sched.step()
        return np.array(out)


TORCH_CASES = [c for c in CASES if c[3] is not None]


@pytest.mark.torch
@pytest.mark.parametrize("case", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_schedule_matches_torch_lr_scheduler(case):
    _, schedule, _, make = case
    with jax.enable_x64(True):
        got = np.asarray(schedule(jnp.arange(N)))
    np.testing.assert_allclose(got, _torch_lrs(make), rtol=1e-10, atol=1e-15)


@pytest.mark.torch
def test_one_cycle_momentum_matches_torch():
    schedule = schedules.one_cycle_momentum(N, pct_start=0.25, three_phase=True)
    with jax.enable_x64(True):
        got = np.asarray(schedule(jnp.arange(N)))
    make = _sched("OneCycleLR", max_lr=0.1, total_steps=N, pct_start=0.25, three_phase=True)
    np.testing.assert_allclose(got, _torch_lrs(make, "momentum", 0.9), rtol=1e-10)


@pytest.mark.torch
def test_per_epoch_matches_torch_stepped_once_per_epoch():
    torch = pytest.importorskip("torch")
    steps_per_epoch = 4
    schedule = schedules.per_epoch(schedules.step(0.1, step_size=3, gamma=0.5), steps_per_epoch)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    expected = []
    for _ in range(N // steps_per_epoch):  # epochs
        for _ in range(steps_per_epoch):
            expected.append(opt.param_groups[0]["lr"])
            opt.step()
        sched.step()
    # float32(0.1) times powers of 0.5 (exact): one rounding, < U32 = 6e-8 relative
    np.testing.assert_allclose(schedule(jnp.arange(N)), expected, rtol=1e-6)


def test_schedule_argument_errors():
    with pytest.raises(ValueError, match="T_max must be > 0"):
        schedules.cosine_annealing(0.1, T_max=0)
    with pytest.raises(ValueError, match="an int T_mult >= 1"):
        schedules.cosine_annealing_warm_restarts(0.1, T_0=5, T_mult=1.5)
    with pytest.raises(ValueError, match="len\\(schedules\\) == len\\(milestones\\) \\+ 1"):
        schedules.sequential([0.1, 0.2], [])
    with pytest.raises(ValueError, match="anneal_strategy"):
        schedules.one_cycle(0.1, 10, anneal_strategy="exp")


# --- ReduceLROnPlateau ---------------------------------------------------------------------

METRICS = [1.0, 0.9, 0.9, 0.95, 0.91, 0.9, 0.89, 0.8999, 0.89, 0.89, 0.5, 0.6, 0.6, 0.6, 0.6,
           0.6, 0.45, 0.45, 0.46, 0.47, 0.48, 0.44, 0.44, 0.44, 0.44]  # fmt: skip
PLATEAU_OPTIONS = [
    dict(patience=2),
    dict(mode="max", threshold=0.01, threshold_mode="abs", cooldown=2, patience=1),
    dict(factor=0.5, patience=0, min_lr=0.003),
    dict(threshold=0.2, cooldown=1, patience=1, factor=0.3),
]


def _funcnet_plateau_lrs(options, metrics=METRICS):
    plateau = optim.ReduceLROnPlateau(**options)
    state = optim.sgd(0.1).init({"w": jnp.zeros(2)})
    lrs = []
    for metric in metrics:
        state = plateau.step(metric, state)
        lrs.append(float(optim.current_lr(state)))
        assert plateau.get_last_lr() == [lrs[-1]]
    return np.array(lrs)


def test_reduce_lr_on_plateau_by_hand():
    # patience=2: the 3rd epoch in a row without a 1e-4 relative improvement reduces.
    lrs = _funcnet_plateau_lrs(dict(patience=2), [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.5, 0.5])
    # float32 0.1 and one float32 product by 0.1: < 2 U32 = 1.2e-7 relative
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.01], rtol=1e-6)


@pytest.mark.torch
@pytest.mark.parametrize("options", PLATEAU_OPTIONS, ids=lambda o: ",".join(o))
def test_reduce_lr_on_plateau_matches_torch(options):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **options)
    expected = []
    for metric in METRICS:
        opt.step()
        sched.step(metric)
        expected.append(opt.param_groups[0]["lr"])
    # float32 state: the stored lr is the float64 value rounded once per reduction
    np.testing.assert_allclose(_funcnet_plateau_lrs(options), expected, rtol=1e-6)
    assert len(set(expected)) > 1  # the scenario does reduce


def test_reduce_lr_on_plateau_groups_state_dict_and_errors():
    params = {"trunk": jnp.zeros(2), "head": jnp.zeros(2)}
    opt = optim.param_groups([("trunk", optim.adam(1e-3))], default=optim.adam(1e-2))
    state = opt.init(params)
    plateau = optim.ReduceLROnPlateau(patience=0, min_lr=[5e-4, 0.0], factor=0.1)
    state = plateau.step(1.0, state)
    same = plateau.step(2.0, state)  # worse, patience 0: reduce both groups, floor group 0
    assert [float(g["lr"]) for g in optim.get_hyperparams(same)] == pytest.approx([5e-4, 1e-3])
    assert plateau.step(0.1, same) is same  # improvement: state returned untouched

    resumed = optim.ReduceLROnPlateau(patience=0, min_lr=[5e-4, 0.0])
    resumed.load_state_dict(plateau.state_dict())
    assert resumed.state_dict() == plateau.state_dict() == {
        "best": 0.1, "num_bad_epochs": 0, "cooldown_counter": 0, "last_epoch": 3,
    }  # fmt: skip

    with pytest.raises(ValueError, match="2 min_lr values for 1 lr groups"):
        optim.ReduceLROnPlateau(min_lr=[0.0, 0.0]).step(1.0, optim.adam(1.0).init(params))
    with pytest.raises(ValueError, match="no lr in this optimizer state"):
        optim.ReduceLROnPlateau().step(1.0, optim.adam(1e-3, in_state=()).init(params))
    with pytest.raises(ValueError, match="factor must be < 1"):
        optim.ReduceLROnPlateau(factor=1.0)


# --- CyclicLR, LambdaLR, MultiplicativeLR, ChainedScheduler, over a few hundred steps ---------

LONG = 300


def np_cyclic(t, base, top, up, down, scale=lambda c, t: 1.0):
    """PyTorch's CyclicLR.get_lr for one step, in Python floats."""
    total = up + down
    cycle = math.floor(1 + t / total)
    x = 1.0 + t / total - cycle
    factor = x / (up / total) if x <= up / total else (x - 1) / (up / total - 1)
    return base + (top - base) * factor * scale(cycle, t)


def _np_multiplicative(fn):
    out, lr = [], 0.1
    for t in range(LONG):
        lr = lr if t == 0 else lr * fn(t)
        out.append(lr)
    return np.array(out)


def _torch_chained(*makers):
    def make(opt):
        import torch

        return torch.optim.lr_scheduler.ChainedScheduler([m(opt) for m in makers])

    return make


EVERY_TENTH = lambda t: jnp.where(t % 10 == 0, 0.5, 1.0)
LONG_CASES = [
    (
        "cyclic",
        schedules.cyclic(0.01, 0.1, step_size_up=20, step_size_down=30),
        lambda t: np_cyclic(t, 0.01, 0.1, 20, 30),
        _sched("CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=20, step_size_down=30),
    ),
    (
        "cyclic_triangular2",
        schedules.cyclic(0.01, 0.1, step_size_up=15, mode="triangular2"),
        lambda t: np_cyclic(t, 0.01, 0.1, 15, 15, lambda c, t: 1 / 2.0 ** (c - 1)),
        _sched("CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=15, mode="triangular2"),
    ),
    (
        "cyclic_exp_range",
        schedules.cyclic(0.01, 0.1, step_size_up=10, mode="exp_range", gamma=0.99),
        lambda t: np_cyclic(t, 0.01, 0.1, 10, 10, lambda c, t: 0.99**t),
        _sched("CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=10, mode="exp_range", gamma=0.99),
    ),
    (
        "cyclic_scale_fn_iterations",
        schedules.cyclic(
            0.01, 0.1, 7, 13, scale_fn=lambda x: 1 / (1 + 0.01 * x), scale_mode="iterations"
        ),
        lambda t: np_cyclic(t, 0.01, 0.1, 7, 13, lambda c, t: 1 / (1 + 0.01 * t)),
        _sched(
            "CyclicLR",
            base_lr=0.01,
            max_lr=0.1,
            step_size_up=7,
            step_size_down=13,
            scale_fn=lambda x: 1 / (1 + 0.01 * x),
            scale_mode="iterations",
        ),
    ),
    (
        "lambda_lr",
        schedules.lambda_lr(0.1, lambda t: jnp.minimum(1.0, (t + 1) / 25) * 0.99**t),
        lambda t: 0.1 * min(1.0, (t + 1) / 25) * 0.99**t,
        _sched("LambdaLR", lr_lambda=lambda t: min(1.0, (t + 1) / 25) * 0.99**t),
    ),
    (
        "multiplicative",
        schedules.multiplicative(0.1, EVERY_TENTH),
        _np_multiplicative(lambda t: 0.5 if t % 10 == 0 else 1.0),
        _sched("MultiplicativeLR", lr_lambda=lambda t: 0.5 if t % 10 == 0 else 1.0),
    ),
    (
        "chained",
        schedules.chained(
            [
                schedules.constant(0.1, 0.5, 30),
                schedules.exponential(0.1, 0.99),
                schedules.multiplicative(0.1, lambda t: 0.999),
            ]
        ),
        lambda t: 0.1 * (0.5 if t < 30 else 1.0) * 0.99**t * 0.999**t,
        _torch_chained(
            _sched("ConstantLR", factor=0.5, total_iters=30),
            _sched("ExponentialLR", gamma=0.99),
            _sched("MultiplicativeLR", lr_lambda=lambda t: 0.999),
        ),
    ),
    (
        "chained_linear_step_polynomial",
        schedules.chained(
            [
                schedules.linear(0.1, 0.2, 1.0, 40),
                schedules.step(0.1, 50, 0.5),
                schedules.polynomial(0.1, total_iters=250, power=2.0),
            ]
        ),
        lambda t: (
            0.1 * (0.2 + 0.8 * min(t, 40) / 40) * 0.5 ** (t // 50) * (1 - min(t, 250) / 250) ** 2
        ),
        _torch_chained(
            _sched("LinearLR", start_factor=0.2, end_factor=1.0, total_iters=40),
            _sched("StepLR", step_size=50, gamma=0.5),
            _sched("PolynomialLR", total_iters=250, power=2.0),
        ),
    ),
]


def test_long_schedules_match_numpy_in_float64():
    with jax.enable_x64(True):
        values = jax.jit(lambda t: [fn(t) for _, fn, _, _ in LONG_CASES])(jnp.arange(LONG))
    for (name, _, ref, _), got in zip(LONG_CASES, values):
        expected = ref if isinstance(ref, np.ndarray) else np.array([ref(t) for t in range(LONG)])
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-15, err_msg=name)
        assert len(np.unique(np.round(expected, 12))) > 10, name  # the schedule does move


def _torch_values(make, key="lr", steps=LONG):
    torch = pytest.importorskip("torch")
    with single_threaded_torch():
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
        sched = make(opt)
        out = []
        for _ in range(steps):
            out.append(opt.param_groups[0][key])
            opt.step()
            sched.step()
        return np.array(out)


@pytest.mark.torch
def test_long_schedules_match_torch_lr_scheduler():
    pytest.importorskip("torch")
    with jax.enable_x64(True):
        values = jax.jit(lambda t: [fn(t) for _, fn, _, _ in LONG_CASES])(jnp.arange(LONG))
    for (name, _, _, make), got in zip(LONG_CASES, values):
        np.testing.assert_allclose(got, _torch_values(make), rtol=1e-10, atol=1e-15, err_msg=name)


@pytest.mark.torch
def test_cyclic_momentum_matches_torch():
    pytest.importorskip("torch")
    options = dict(step_size_up=12, step_size_down=8, mode="triangular2")
    schedule = schedules.cyclic_momentum(base_momentum=0.85, max_momentum=0.95, **options)
    with jax.enable_x64(True):
        got = np.asarray(schedule(jnp.arange(LONG)))
    make = _sched("CyclicLR", base_lr=0.01, max_lr=0.1, base_momentum=0.85, max_momentum=0.95,
                  **options)  # fmt: skip
    np.testing.assert_allclose(got, _torch_values(make, "momentum"), rtol=1e-10)


def test_multiplicative_in_the_optimizer_multiplies_the_stored_lr():
    """O(1) per step from the stored lr, as PyTorch: a set_hyperparams change is kept."""
    schedule = schedules.multiplicative(0.1, EVERY_TENTH)
    opt = optim.sgd(schedule)
    params = {"w": jnp.zeros(2)}
    step = jax.jit(lambda s: opt.update({"w": jnp.ones(2)}, s, params)[1])
    state = opt.init(params)
    for _ in range(25):
        state = step(state)
    # 0.1 * 0.5**2 in float32: one rounding per factor (exact halvings)
    np.testing.assert_allclose(optim.current_lr(state), float(schedule(25)), rtol=1e-7)
    state = optim.set_hyperparams(state, lr=1.0)
    for _ in range(5):
        state = step(state)
    assert float(optim.current_lr(state)) == 0.5  # step 30 halves the lr that was set


def test_new_schedule_errors():
    with pytest.raises(ValueError, match=r"chained: schedules\[1\] does not scale the lr"):
        schedules.chained([schedules.step(0.1, 5), schedules.cosine_annealing(0.1, 10)])
    with pytest.raises(ValueError, match="chained: the schedules must start from the same lr"):
        schedules.chained([schedules.step(0.1, 5), schedules.exponential(0.2, 0.9)])
    with pytest.raises(ValueError, match="chained: needs at least one schedule"):
        schedules.chained([])
    with pytest.raises(ValueError, match="cyclic: mode must be one of"):
        schedules.cyclic(0.1, 1.0, mode="sawtooth")
    with pytest.raises(ValueError, match="cyclic: need step_size_up > 0"):
        schedules.cyclic(0.1, 1.0, step_size_up=0)
