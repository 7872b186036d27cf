"""Recurrent maths: one step of an RNN/LSTM/GRU cell, and one layer scanned over time.

Weights are JAX-native ``(in, gates * hidden)``: the transposes of PyTorch's
``weight_ih`` ``(gates * hidden, in)`` and ``weight_hh`` ``(gates * hidden, hidden)``,
with the gate blocks in PyTorch's order along the last axis (LSTM i, f, g, o; GRU r, z, n),
so a PyTorch weight imports as ``w.T``. Biases are PyTorch's ``(gates * hidden,)``.

The time loop is one ``lax.scan`` (no unrolling), so compile time does not grow with the
sequence length. Each step does one fused gate matmul. Two ways to get the input's share
(``input_projection``):

- ``"hoisted"``: ``x @ weight_ih`` for all time steps as one matmul before the loop; each
  step adds ``h @ weight_hh``. The usual win on GPU.
- ``"per_step"``: each step multiplies ``concat([x_t, h])`` by ``concat([weight_ih,
  weight_hh])``, an ``(in + hidden, gates * hidden)`` matrix built once per call. The
  faster choice on XLA:CPU (docs/performance.md).
- ``"auto"`` (default): ``"per_step"`` on CPU, ``"hoisted"`` elsewhere.

An LSTM with projections (PyTorch's ``proj_size``) multiplies each step's hidden state by
``weight_hr`` (hidden_size, proj_size), PyTorch's ``weight_hr_l{k}`` transposed: the
state is then ``(h (B, proj_size), c (B, hidden_size))`` and ``weight_hh`` is
(proj_size, 4 * hidden_size).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from funcnet.errors import ShapeError
from funcnet.functional._linear import matmul_2d

__all__ = ["gru", "gru_cell", "lstm", "lstm_cell", "rnn", "rnn_cell"]

_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
_PROJECTIONS = ("auto", "hoisted", "per_step")

State = tuple[jax.Array, ...]


# ----------------------------------------------------------------------- cell maths
def _update(
    mode: str, pre: tuple[jax.Array, ...], state: State, weight_hr: jax.Array | None = None
) -> State:
    """New state from gate pre-activations (PyTorch's equations).

    ``pre`` is ``(gates,)`` for RNN and LSTM (all biases included) and for GRU
    ``(rz, n_x, n_h)``: r and z pre-activations, ``W_in x + b_in`` and ``W_hn h + b_hn``.
    ``weight_hr`` (LSTM only) projects the new h: ``h' = (σ(o) tanh(c')) W_hr``.
    """
    if mode == "lstm":
        i, f, g, o = jnp.split(pre[0], 4, axis=-1)
        c = jax.nn.sigmoid(f) * state[1] + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h if weight_hr is None else h @ weight_hr), c
    if mode == "gru":
        rz, n_x, n_h = pre
        r, z = jnp.split(jax.nn.sigmoid(rz), 2, axis=-1)
        n = jnp.tanh(n_x + r * n_h)  # PyTorch: the reset gate scales (W_hn h + b_hn)
        return ((1 - z) * n + z * state[0],)
    act = jnp.tanh if mode == "rnn_tanh" else jax.nn.relu
    return (act(pre[0]),)


def _add(a: jax.Array, b: jax.Array | None) -> jax.Array:
    return a if b is None else a + b


def _cell(
    mode: str,
    x: jax.Array,
    state: State,
    weight_ih: jax.Array,
    weight_hh: jax.Array,
    bias_ih: jax.Array | None,
    bias_hh: jax.Array | None,
) -> State:
    gx = _add(x @ weight_ih, bias_ih)
    gh = _add(state[0] @ weight_hh, bias_hh)
    if mode == "gru":
        hidden = jnp.shape(weight_hh)[0]
        pre = (
            gx[..., : 2 * hidden] + gh[..., : 2 * hidden],
            gx[..., 2 * hidden :],
            gh[..., 2 * hidden :],
        )
        return _update(mode, pre, state)
    return _update(mode, (gx + gh,), state)


def rnn_cell(
    x: jax.Array,
    h: jax.Array,
    weight_ih: jax.Array,
    weight_hh: jax.Array,
    bias_ih: jax.Array | None = None,
    bias_hh: jax.Array | None = None,
    nonlinearity: str = "tanh",
) -> jax.Array:
    """One Elman RNN step: h' = act(x W_ih + b_ih + h W_hh + b_hh).

    Args:
        x: (*, input_size).
        h: (*, hidden_size).
        weight_ih: (input_size, hidden_size) — PyTorch's ``weight_ih`` transposed.
        weight_hh: (hidden_size, hidden_size).
        bias_ih: (hidden_size,) or None.
        bias_hh: (hidden_size,) or None.
        nonlinearity: ``"tanh"`` or ``"relu"``.

    Returns:
        h' of shape (*, hidden_size).
    """
    return _cell(_rnn_mode(nonlinearity), x, (h,), weight_ih, weight_hh, bias_ih, bias_hh)[0]


def lstm_cell(
    x: jax.Array,
    hx: tuple[jax.Array, jax.Array],
    weight_ih: jax.Array,
    weight_hh: jax.Array,
    bias_ih: jax.Array | None = None,
    bias_hh: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """One LSTM step with PyTorch's gate order i, f, g, o along the gate axis::

        i, f, g, o = split(x W_ih + b_ih + h W_hh + b_hh, 4)
        c' = σ(f) c + σ(i) tanh(g);   h' = σ(o) tanh(c')

    Args:
        x: (*, input_size).
        hx: ``(h, c)``, each (*, hidden_size).
        weight_ih: (input_size, 4 * hidden_size) — PyTorch's ``weight_ih`` transposed.
        weight_hh: (hidden_size, 4 * hidden_size).
        bias_ih: (4 * hidden_size,) or None.
        bias_hh: (4 * hidden_size,) or None.

    Returns:
        ``(h', c')``, each (*, hidden_size).
    """
    h, c = _cell("lstm", x, tuple(hx), weight_ih, weight_hh, bias_ih, bias_hh)
    return h, c


def gru_cell(
    x: jax.Array,
    h: jax.Array,
    weight_ih: jax.Array,
    weight_hh: jax.Array,
    bias_ih: jax.Array | None = None,
    bias_hh: jax.Array | None = None,
) -> jax.Array:
    """One GRU step with PyTorch's gate order r, z, n and placement of the reset gate::

        r = σ(x W_ir + b_ir + h W_hr + b_hr);   z = σ(x W_iz + b_iz + h W_hz + b_hz)
        n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn));   h' = (1 − z) ⊙ n + z ⊙ h

    Args:
        x: (*, input_size).
        h: (*, hidden_size).
        weight_ih: (input_size, 3 * hidden_size) — PyTorch's ``weight_ih`` transposed.
        weight_hh: (hidden_size, 3 * hidden_size).
        bias_ih: (3 * hidden_size,) or None.
        bias_hh: (3 * hidden_size,) or None.

    Returns:
        h' of shape (*, hidden_size).
    """
    return _cell("gru", x, (h,), weight_ih, weight_hh, bias_ih, bias_hh)[0]


def _rnn_mode(nonlinearity: str) -> str:
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return f"rnn_{nonlinearity}"


# ------------------------------------------------------------------ one layer in time
def resolve_projection(input_projection: str) -> str:
    """``"hoisted"`` or ``"per_step"`` for ``input_projection`` (``"auto"`` by backend)."""
    if input_projection not in _PROJECTIONS:
        raise ValueError(
            f"input_projection must be one of {_PROJECTIONS}, got {input_projection!r}"
        )
    if input_projection == "auto":
        return "per_step" if jax.default_backend() == "cpu" else "hoisted"
    return input_projection


def _step_fn(
    mode: str,
    hoisted: bool,
    weight_ih: jax.Array,
    weight_hh: jax.Array,
    bias_ih: jax.Array | None,
    bias_hh: jax.Array | None,
    weight_hr: jax.Array | None = None,
) -> tuple[Callable[[jax.Array], jax.Array], Callable[[jax.Array, State], State]]:
    """``(project, step)``: ``project`` maps the (T, B, I) inputs to the scanned sequence
    (the input matmul when hoisted); ``step(p_t, state)`` is one time step."""
    hidden, gates = jnp.shape(weight_hh)
    two = 2 * hidden  # GRU: r and z columns, then n
    zeros = jnp.zeros((gates,), weight_ih.dtype)
    bias_ih = zeros if bias_ih is None else bias_ih
    bias_hh = zeros if bias_hh is None else bias_hh
    gru = mode == "gru"

    if hoisted:
        # The input's share takes every bias but GRU's b_hn, which r scales.
        b_x = bias_ih + (jnp.concatenate([bias_hh[:two], zeros[two:]]) if gru else bias_hh)

        def project(x: jax.Array) -> jax.Array:
            return matmul_2d(x, weight_ih) + b_x

        def step(p: jax.Array, state: State) -> State:
            gh = state[0] @ weight_hh
            if gru:
                pre = (p[..., :two] + gh[..., :two], p[..., two:], gh[..., two:] + bias_hh[two:])
                return _update(mode, pre, state)
            return _update(mode, (p + gh,), state, weight_hr)

        return project, step

    if gru:  # columns [r z | n_x | n_h]; zero blocks keep W_in x and W_hn h apart
        zeros_i = jnp.zeros((jnp.shape(weight_ih)[0], hidden), weight_ih.dtype)
        zeros_h = jnp.zeros((hidden, hidden), weight_hh.dtype)
        top = jnp.concatenate([weight_ih, zeros_i], axis=1)
        bottom = jnp.concatenate([weight_hh[:, :two], zeros_h, weight_hh[:, two:]], axis=1)
        fused = jnp.concatenate([top, bottom], axis=0)
        bias = jnp.concatenate([bias_ih[:two] + bias_hh[:two], bias_ih[two:], bias_hh[two:]])
    else:
        fused = jnp.concatenate([weight_ih, weight_hh], axis=0)
        bias = bias_ih + bias_hh

    def per_step(x_t: jax.Array, state: State) -> State:
        g = jnp.concatenate([x_t, state[0]], axis=-1) @ fused + bias
        if gru:
            return _update(
                mode, (g[..., :two], g[..., two : two + hidden], g[..., two + hidden :]), state
            )
        return _update(mode, (g,), state, weight_hr)

    return (lambda x: x), per_step


def scan_layer(
    mode: str,
    x: jax.Array,
    state: State,
    weight_ih: jax.Array,
    weight_hh: jax.Array,
    bias_ih: jax.Array | None,
    bias_hh: jax.Array | None,
    *,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    batch_first: bool = False,
    input_projection: str = "auto",
    weight_hr: jax.Array | None = None,
) -> tuple[jax.Array, State]:
    """One layer, one direction, over a whole (batched) sequence.

    Args:
        mode: ``"rnn_tanh"``, ``"rnn_relu"``, ``"lstm"`` or ``"gru"``.
        x: (T, B, I), or (B, T, I) when ``batch_first``.
        state: the initial state: ``(h,)`` or ``(h, c)``, each (B, H), in x's dtype.
        weight_ih: as in the cell functions.
        weight_hh: as in the cell functions.
        bias_ih: as in the cell functions.
        bias_hh: as in the cell functions.
        lengths: optional (B,) integers; steps t >= lengths[b] leave the state unchanged
            and output zeros.
        reverse: run from the last valid step backwards (the reverse direction of a
            bidirectional layer; with ``lengths`` it starts at ``lengths[b] - 1``).
        batch_first: the layout of ``x``.
        input_projection: ``"auto"``, ``"hoisted"`` or ``"per_step"`` (module docstring).
        weight_hr: LSTM only, optional (H, P) projection of each step's h (``proj_size``);
            then h and the outputs have P features and ``weight_hh`` is (P, 4H).

    Returns:
        ``(outputs, final_state)``: outputs (T, B, H) (P when projected) time-major
        whatever the input layout.
    """
    hoisted = resolve_projection(input_projection) == "hoisted"
    project, step = _step_fn(mode, hoisted, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr)
    # Hoisted, XLA folds the batch-first transpose into the projection's matmul.
    xs = project(jnp.swapaxes(x, 0, 1) if batch_first else x)
    if lengths is None:

        def body(carry: State, p: jax.Array) -> tuple[State, jax.Array]:
            new = step(p, carry)
            return new, new[0]

        final, ys = lax.scan(body, state, xs, reverse=reverse)
        return ys, final

    steps = jnp.shape(xs)[0]
    valid = (jnp.arange(steps)[:, None] < jnp.asarray(lengths)[None, :])[..., None]

    def masked_body(carry: State, inputs: tuple[jax.Array, jax.Array]) -> tuple[State, jax.Array]:
        p, ok = inputs
        new = step(p, carry)
        kept = tuple(jnp.where(ok, n, c) for n, c in zip(new, carry))
        return kept, jnp.where(ok, new[0], jnp.zeros_like(new[0]))

    final, ys = lax.scan(masked_body, state, (xs, valid), reverse=reverse)
    return ys, final


# ---------------------------------------------------------------- public sequence API
def _initial_state(
    name: str,
    mode: str,
    state: State | None,
    batch: int,
    weight_hh: jax.Array,
    weight_hr: jax.Array | None,
    dtype: jnp.dtype,
) -> State:
    """The initial state, zeros when None, checked: h (B, rows of weight_hh) and for
    LSTM c (B, hidden_size), hidden_size = weight_hh's columns / 4."""
    out_size, gates = jnp.shape(weight_hh)
    shapes = [(batch, out_size)]
    if mode == "lstm":
        shapes.append((batch, gates // 4))
        if weight_hr is not None and jnp.shape(weight_hr) != (gates // 4, out_size):
            raise ShapeError(
                f"{name}: expected weight_hr of shape {(gates // 4, out_size)} (hidden_size, "
                f"proj_size) for weight_hh {jnp.shape(weight_hh)}, got {jnp.shape(weight_hr)}"
            )
    if state is None:
        return tuple(jnp.zeros(s, dtype) for s in shapes)
    state = tuple(jnp.asarray(s, dtype) for s in state)
    for s, want in zip(state, shapes):
        if jnp.shape(s) != want:
            raise ShapeError(f"{name}: expected initial state of shape {want}, got {jnp.shape(s)}")
    return state


def _sequence(
    mode: str,
    name: str,
    x: jax.Array,
    state: State | None,
    weights: tuple[jax.Array | None, ...],
    lengths: jax.Array | None,
    reverse: bool,
    batch_first: bool,
    input_projection: str,
) -> tuple[jax.Array, State]:
    """``weights`` is ``(weight_ih, weight_hh, bias_ih, bias_hh, weight_hr)``."""
    shape = jnp.shape(x)
    if len(shape) != 3:
        layout = "(B, T, input_size)" if batch_first else "(T, B, input_size)"
        raise ShapeError(f"{name}: expected 3-D input {layout}, got shape {tuple(shape)}")
    batch = shape[0] if batch_first else shape[1]
    dtype = jnp.result_type(x)
    state = _initial_state(name, mode, state, batch, weights[1], weights[4], dtype)
    w_ih, w_hh, b_ih, b_hh, w_hr = (None if w is None else w.astype(dtype) for w in weights)
    ys, final = scan_layer(
        mode,
        x,
        state,
        w_ih,
        w_hh,
        b_ih,
        b_hh,
        lengths=lengths,
        reverse=reverse,
        batch_first=batch_first,
        input_projection=input_projection,
        weight_hr=w_hr,
    )
    return (jnp.swapaxes(ys, 0, 1) if batch_first else ys), final


def rnn(
    x: jax.Array,
    h0: jax.Array | None,
    weight_ih: jax.Array,
    weight_hh: jax.Array,
    bias_ih: jax.Array | None = None,
    bias_hh: jax.Array | None = None,
    *,
    nonlinearity: str = "tanh",
    lengths: jax.Array | None = None,
    reverse: bool = False,
    batch_first: bool = False,
    input_projection: str = "auto",
) -> tuple[jax.Array, jax.Array]:
    """One Elman RNN layer in one direction over a sequence (see :func:`rnn_cell`).

    Args:
        x: (T, B, input_size), or (B, T, input_size) when ``batch_first``; floating.
        h0: (B, hidden_size) or None for zeros.
        weight_ih: as in :func:`rnn_cell`.
        weight_hh: as in :func:`rnn_cell`.
        bias_ih: as in :func:`rnn_cell`.
        bias_hh: as in :func:`rnn_cell`.
        nonlinearity: ``"tanh"`` or ``"relu"``.
        lengths: optional (B,) integer valid lengths; padded steps neither update the state
            nor appear in the output (zeros there), as PyTorch's packed sequences.
        reverse: process the sequence from its last valid step backwards.
        batch_first: the layout of ``x`` and of the output.
        input_projection: ``"auto"``, ``"hoisted"`` or ``"per_step"`` (module docstring).

    Returns:
        ``(output, h_n)``: output (T, B, hidden_size) (or batch-first), h_n (B, hidden_size).
    """
    mode = _rnn_mode(nonlinearity)
    state = None if h0 is None else (h0,)
    weights = (weight_ih, weight_hh, bias_ih, bias_hh, None)
    ys, final = _sequence(
        mode, "rnn", x, state, weights, lengths, reverse, batch_first, input_projection
    )
    return ys, final[0]


def lstm(
    x: jax.Array,
    hx: tuple[jax.Array, jax.Array] | None,
    weight_ih: jax.Array,
    weight_hh: jax.Array,
    bias_ih: jax.Array | None = None,
    bias_hh: jax.Array | None = None,
    *,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    batch_first: bool = False,
    input_projection: str = "auto",
    weight_hr: jax.Array | None = None,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """One LSTM layer in one direction over a sequence (see :func:`lstm_cell`).

    With ``weight_hr`` (PyTorch's ``proj_size``), each step's hidden state is projected:
    ``h' = (σ(o) tanh(c')) W_hr``, so h and the output have proj_size features.

    Args:
        x: (T, B, input_size), or (B, T, input_size) when ``batch_first``; floating.
        hx: ``(h0, c0)``, h0 (B, P) and c0 (B, hidden_size), or None for zeros; P is
            proj_size with ``weight_hr``, else hidden_size.
        weight_ih: as in :func:`lstm_cell`.
        bias_ih: as in :func:`lstm_cell`.
        bias_hh: as in :func:`lstm_cell`.
        weight_hh: (P, 4 * hidden_size).
        lengths: as in :func:`rnn`.
        reverse: as in :func:`rnn`.
        batch_first: as in :func:`rnn`.
        input_projection: as in :func:`rnn`.
        weight_hr: optional (hidden_size, proj_size): PyTorch's ``weight_hr_l{k}``
            transposed.

    Returns:
        ``(output, (h_n, c_n))``: output (T, B, P) (or batch-first), h_n (B, P) and c_n
        (B, hidden_size).
    """
    weights = (weight_ih, weight_hh, bias_ih, bias_hh, weight_hr)
    ys, (h, c) = _sequence(
        "lstm", "lstm", x, hx, weights, lengths, reverse, batch_first, input_projection
    )
    return ys, (h, c)


def gru(
    x: jax.Array,
    h0: jax.Array | None,
    weight_ih: jax.Array,
    weight_hh: jax.Array,
    bias_ih: jax.Array | None = None,
    bias_hh: jax.Array | None = None,
    *,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    batch_first: bool = False,
    input_projection: str = "auto",
) -> tuple[jax.Array, jax.Array]:
    """One GRU layer in one direction over a sequence (see :func:`gru_cell`).

    Args:
        x: (T, B, input_size), or (B, T, input_size) when ``batch_first``; floating.
        h0: (B, hidden_size) or None for zeros.
        weight_ih: as in :func:`gru_cell`.
        weight_hh: as in :func:`gru_cell`.
        bias_ih: as in :func:`gru_cell`.
        bias_hh: as in :func:`gru_cell`.
        lengths: as in :func:`rnn`.
        reverse: as in :func:`rnn`.
        batch_first: as in :func:`rnn`.
        input_projection: as in :func:`rnn`.

    Returns:
        ``(output, h_n)``: output (T, B, hidden_size) (or batch-first), h_n (B, hidden_size).
    """
    state = None if h0 is None else (h0,)
    weights = (weight_ih, weight_hh, bias_ih, bias_hh, None)
    ys, final = _sequence(
        "gru", "gru", x, state, weights, lengths, reverse, batch_first, input_projection
    )
    return ys, final[0]
