"""Recurrent layers: RNN, LSTM, GRU and their cells, with PyTorch's arguments and names.

Parameters are named as PyTorch's (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``,
``bias_hh_l0``, ``…_reverse`` for the backward direction; cells ``weight_ih`` …), so
``state_dict`` keys match. Weights are stored ``(in, gates * hidden)``, the transposes of
PyTorch's, with the gates in PyTorch's order along the last axis (LSTM i, f, g, o;
GRU r, z, n): a PyTorch weight imports as ``w.T``; biases import unchanged. An LSTM with
``proj_size > 0`` adds ``weight_hr_l{k}`` (hidden_size, proj_size), PyTorch's
(proj_size, hidden_size) transposed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from funcnet import functional as F
from funcnet.errors import ShapeError, check_dtype, check_input_dtype, check_last_dim, check_ndim
from funcnet.functional._recurrent import _cell, _rnn_mode, resolve_projection, scan_layer
from funcnet.nn import init as init_lib
from funcnet.nn._linear import compute_dtype
from funcnet.nn._module import Context, Module, Parameter

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNCell"]


def _declare(module: Any, name: str, shape: tuple[int, ...]) -> None:
    """Declares parameter ``name`` with PyTorch's init for every recurrent weight and
    bias, U(−1/√hidden_size, 1/√hidden_size)."""
    bound = 1.0 / math.sqrt(module.hidden_size)
    init = functools.partial(init_lib.uniform, a=-bound, b=bound)
    setattr(module, name, Parameter(shape, init, module.dtype))


def _where(ctx: Context) -> str:
    return f"{ctx.path} ({type(ctx.module).__name__})"


class _RNNBase(Module):
    """What RNN, LSTM and GRU share; the fields are declared by each (PyTorch's order)."""

    _gates: ClassVar[int]
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    input_projection: str
    dtype: Any

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.input_size <= 0 or self.hidden_size <= 0 or self.num_layers <= 0:
            raise ValueError(
                f"{name}: input_size, hidden_size and num_layers must be positive, got "
                f"{self.input_size}, {self.hidden_size}, {self.num_layers}"
            )
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1], got {self.dropout}")
        resolve_projection(self.input_projection)
        gates = self._gates * self.hidden_size
        out = self._out_size
        for layer in range(self.num_layers):
            n_in = self.input_size if layer == 0 else out * self._directions
            for direction in range(self._directions):
                w_ih, w_hh, b_ih, b_hh, w_hr = self._names(layer, direction)
                _declare(self, w_ih, (n_in, gates))
                _declare(self, w_hh, (out, gates))
                if self.bias:
                    _declare(self, b_ih, (gates,))
                    _declare(self, b_hh, (gates,))
                if self._proj:
                    _declare(self, w_hr, (self.hidden_size, self._proj))

    @property
    def _mode(self) -> str:
        raise NotImplementedError

    @property
    def _proj(self) -> int:
        """The projection size (LSTM's ``proj_size``); 0 for none."""
        return 0

    @property
    def _out_size(self) -> int:
        """Features of h and of each direction's output."""
        return self._proj or self.hidden_size

    @property
    def _directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _names(self, layer: int, direction: int) -> tuple[str, ...]:
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
        return tuple(f"{w}{suffix}" for w in kinds)

    def _initial_state(self, ctx: Context, hx: Any, batch: int, dtype: Any, batched: bool):
        """hx as a tuple of (L*D, B, ·) arrays (zeros when None): h has ``_out_size``
        features, c hidden_size."""
        n_state = 2 if self._mode == "lstm" else 1
        rows = self.num_layers * self._directions
        h_size = (self._out_size, "proj_size" if self._proj else "hidden_size")
        sizes = (h_size, (self.hidden_size, "hidden_size"))[:n_state]
        if hx is None:
            return tuple(jnp.zeros((rows, batch, size), dtype) for size, _ in sizes)
        parts = tuple(hx) if n_state == 2 else (hx,)
        if len(parts) != n_state:
            raise ShapeError(f"{_where(ctx)}: expected hx = (h_0, c_0), got {len(parts)} arrays")
        out = []
        for name, part, (size, what) in zip(("h_0", "c_0"), parts, sizes):
            want = (rows, batch, size) if batched else (rows, size)
            if jnp.shape(part) != want:
                raise ShapeError(
                    f"{_where(ctx)}: expected {name} of shape {want} "
                    f"(num_layers * num_directions, batch, {what}), got {jnp.shape(part)}"
                )
            part = jnp.asarray(part, dtype)
            out.append(part if batched else part[:, None, :])
        return tuple(out)

    def _lengths(self, ctx: Context, lengths: Any, batch: int, batched: bool) -> jax.Array | None:
        if lengths is None:
            return None
        check_dtype(ctx, lengths, "integer", "lengths")
        want = (batch,) if batched else ()
        if jnp.shape(lengths) != want:
            raise ShapeError(
                f"{_where(ctx)}: expected lengths of shape {want}, got {jnp.shape(lengths)}"
            )
        return jnp.reshape(lengths, (batch,))

    def forward(
        self, ctx: Context, x: jax.Array, hx: Any = None, lengths: jax.Array | None = None
    ) -> tuple[jax.Array, Any]:
        layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
        check_ndim(ctx, x, (2, 3), layout=f"{layout} or unbatched (T, input_size)")
        check_last_dim(ctx, x, self.input_size)
        check_input_dtype(ctx, x)
        dtype = compute_dtype(x)
        batched = jnp.ndim(x) == 3
        batch_first = self.batch_first and batched
        if not batched:
            x = x[:, None, :]
        batch = jnp.shape(x)[0] if batch_first else jnp.shape(x)[1]
        state0 = self._initial_state(ctx, hx, batch, dtype, batched)
        lengths = self._lengths(ctx, lengths, batch, batched)

        finals = []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self._directions):
                names = self._names(layer, direction)
                w_ih, w_hh = (ctx.param(n, dtype) for n in names[:2])
                b_ih, b_hh = (ctx.param(n, dtype) if self.bias else None for n in names[2:4])
                w_hr = ctx.param(names[4], dtype) if self._proj else None
                row = layer * self._directions + direction
                ys, final = scan_layer(
                    self._mode,
                    x,
                    tuple(s[row] for s in state0),
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                    lengths=lengths,
                    reverse=direction == 1,
                    batch_first=batch_first and layer == 0,
                    input_projection=self.input_projection,
                    weight_hr=w_hr,
                )
                outputs.append(ys)
                finals.append(final)
            x = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-1)
            if ctx.train and self.dropout > 0 and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, ctx.next_key())

        if batch_first:
            x = jnp.swapaxes(x, 0, 1)
        elif not batched:
            x = x[:, 0, :]
        states = tuple(jnp.stack([f[i] for f in finals]) for i in range(len(state0)))
        if not batched:
            states = tuple(s[:, 0, :] for s in states)
        return x, (states if self._mode == "lstm" else states[0])


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class RNN(_RNNBase):
    """Elman RNN, h_t = act(x_t W_ih + b_ih + h_{t−1} W_hh + b_hh) (``torch.nn.RNN``).

    Returns ``(output, h_n)``: output (T, B, D · hidden_size) (batch-first if set), h_n
    (num_layers · D, B, hidden_size); ``hx`` is an optional h_0 of h_n's shape. Weights
    ``weight_ih_l{k}`` (in, hidden) and ``weight_hh_l{k}`` (hidden, hidden) are PyTorch's
    transposed; every weight and bias starts U(−1/√hidden, 1/√hidden), as PyTorch.

    Args:
        input_size: features per time step. Input (T, B, input_size), or (B, T, input_size)
            with ``batch_first``, or unbatched (T, input_size); floating.
        hidden_size: features of the hidden state.
        num_layers: stacked layers; layer k > 0 reads layer k − 1's output.
        nonlinearity: ``"tanh"`` or ``"relu"`` (the 4th positional argument, as PyTorch).
        bias: whether to learn ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
        batch_first: input and output are (B, T, ·) instead of PyTorch's default (T, B, ·);
            ``h_n`` keeps (num_layers · D, B, hidden_size) either way, as PyTorch.
        dropout: dropout on each layer's output except the last, in training mode only.
        bidirectional: add a reverse-direction pass per layer (D = 2); outputs concatenate
            the forward then the reverse features.
        input_projection: ``"auto"`` (default), ``"hoisted"`` or ``"per_step"``: where the
            input's share of the gates is computed (docs/sequence.md); same numerics.
        dtype: dtype of the parameters.

    ``forward(ctx, x, hx=None, lengths=None)``: ``lengths`` (B,) integers are the valid
    lengths of right-padded sequences (PyTorch's ``pack_padded_sequence`` use case):
    padded steps do not update the state, so ``h_n`` holds each sequence's state at its
    last valid step (the reverse direction starts there), and the output is zero at padded
    steps.
    """

    _gates: ClassVar[int] = 1
    input_size: int
    hidden_size: int
    num_layers: int = 1
    nonlinearity: str = "tanh"
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    input_projection: str = "auto"
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        _rnn_mode(self.nonlinearity)
        super().__post_init__()

    @property
    def _mode(self) -> str:
        return _rnn_mode(self.nonlinearity)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class LSTM(_RNNBase):
    """Long short-term memory (``torch.nn.LSTM``), PyTorch's gate order i, f, g, o::

        i, f, g, o = split(x W_ih + b_ih + h W_hh + b_hh, 4)
        c' = σ(f) c + σ(i) tanh(g);   h' = σ(o) tanh(c')

    Returns ``(output, (h_n, c_n))``: output (T, B, D · hidden_size) (batch-first if set),
    h_n and c_n (num_layers · D, B, hidden_size); ``hx`` is an optional ``(h_0, c_0)`` of
    those shapes. Weights ``weight_ih_l{k}`` (in, 4·hidden) and ``weight_hh_l{k}``
    (hidden, 4·hidden) are PyTorch's transposed; every weight and bias starts
    U(−1/√hidden, 1/√hidden), as PyTorch.

    With ``proj_size`` P > 0 (PyTorch's LSTM with projections), each step's hidden state is
    projected, ``h' = (σ(o) tanh(c')) W_hr``: output is (T, B, D · P), h_n and h_0
    (num_layers · D, B, P), c_n and c_0 keep hidden_size; ``weight_hh_l{k}`` is
    (P, 4·hidden), layer k > 0 reads D · P features, and ``weight_hr_l{k}[_reverse]``
    (hidden, P) is PyTorch's (P, hidden) transposed, initialised as the other weights.

    Args:
        input_size: features per time step. Input (T, B, input_size), or (B, T, input_size)
            with ``batch_first``, or unbatched (T, input_size); floating.
        hidden_size: features of the hidden state.
        num_layers: stacked layers; layer k > 0 reads layer k − 1's output.
        bias: whether to learn ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
        batch_first: input and output are (B, T, ·) instead of PyTorch's default (T, B, ·);
            ``h_n`` keeps (num_layers · D, B, hidden_size) either way, as PyTorch.
        dropout: dropout on each layer's output except the last, in training mode only.
        bidirectional: add a reverse-direction pass per layer (D = 2); outputs concatenate
            the forward then the reverse features.
        proj_size: if > 0, project h to this many features (must be < hidden_size).
        input_projection: ``"auto"`` (default), ``"hoisted"`` or ``"per_step"``: where the
            input's share of the gates is computed (docs/sequence.md); same numerics.
        dtype: dtype of the parameters.

    ``forward(ctx, x, hx=None, lengths=None)``: ``lengths`` (B,) integers are the valid
    lengths of right-padded sequences (PyTorch's ``pack_padded_sequence`` use case):
    padded steps do not update the state, so ``h_n`` holds each sequence's state at its
    last valid step (the reverse direction starts there), and the output is zero at padded
    steps.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> lstm = nn.LSTM(4, 16, num_layers=2, batch_first=True, bidirectional=True)
        >>> params, state = lstm.init(jax.random.key(0))
        >>> params["weight_ih_l1_reverse"].shape  # (in, 4 * hidden): PyTorch's transposed
        (32, 64)
        >>> x = jnp.ones((3, 7, 4))  # (B, T, input_size)
        >>> (out, (h_n, c_n)), _ = lstm.apply(params, state, x, lengths=jnp.array([7, 5, 2]))
        >>> out.shape, h_n.shape
        ((3, 7, 32), (4, 3, 16))
    """

    _gates: ClassVar[int] = 4
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    proj_size: int = 0
    input_projection: str = "auto"
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        if self.proj_size < 0:
            raise ValueError(
                f"LSTM: proj_size must be a positive integer or zero (no projection), got "
                f"{self.proj_size}"
            )
        if self.proj_size > 0 and self.proj_size >= self.hidden_size:
            raise ValueError(
                f"LSTM: proj_size must be smaller than hidden_size, got {self.proj_size} and "
                f"{self.hidden_size}"
            )
        super().__post_init__()

    @property
    def _mode(self) -> str:
        return "lstm"

    @property
    def _proj(self) -> int:
        return self.proj_size


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class GRU(_RNNBase):
    """Gated recurrent unit (``torch.nn.GRU``), PyTorch's gate order r, z, n and its
    placement of the reset gate::

        r = σ(x W_ir + b_ir + h W_hr + b_hr);   z = σ(x W_iz + b_iz + h W_hz + b_hz)
        n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn));   h' = (1 − z) ⊙ n + z ⊙ h

    Returns ``(output, h_n)`` as :class:`RNN`. Weights ``weight_ih_l{k}`` (in, 3·hidden)
    and ``weight_hh_l{k}`` (hidden, 3·hidden) are PyTorch's transposed; every weight and
    bias starts U(−1/√hidden, 1/√hidden), as PyTorch.

    Args:
        input_size: features per time step. Input (T, B, input_size), or (B, T, input_size)
            with ``batch_first``, or unbatched (T, input_size); floating.
        hidden_size: features of the hidden state.
        num_layers: stacked layers; layer k > 0 reads layer k − 1's output.
        bias: whether to learn ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
        batch_first: input and output are (B, T, ·) instead of PyTorch's default (T, B, ·);
            ``h_n`` keeps (num_layers · D, B, hidden_size) either way, as PyTorch.
        dropout: dropout on each layer's output except the last, in training mode only.
        bidirectional: add a reverse-direction pass per layer (D = 2); outputs concatenate
            the forward then the reverse features.
        input_projection: ``"auto"`` (default), ``"hoisted"`` or ``"per_step"``: where the
            input's share of the gates is computed (docs/sequence.md); same numerics.
        dtype: dtype of the parameters.

    ``forward(ctx, x, hx=None, lengths=None)``: ``lengths`` (B,) integers are the valid
    lengths of right-padded sequences (PyTorch's ``pack_padded_sequence`` use case):
    padded steps do not update the state, so ``h_n`` holds each sequence's state at its
    last valid step (the reverse direction starts there), and the output is zero at padded
    steps.
    """

    _gates: ClassVar[int] = 3
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    input_projection: str = "auto"
    dtype: Any = jnp.float32

    @property
    def _mode(self) -> str:
        return "gru"


class _CellBase(Module):
    """What the cells share: PyTorch's parameter names and init, batched or unbatched input."""

    _gates: ClassVar[int]
    input_size: int
    hidden_size: int
    bias: bool
    dtype: Any

    @property
    def _mode(self) -> str:
        raise NotImplementedError

    def __post_init__(self) -> None:
        if self.input_size <= 0 or self.hidden_size <= 0:
            raise ValueError(
                f"{type(self).__name__}: input_size and hidden_size must be positive, got "
                f"{self.input_size} and {self.hidden_size}"
            )
        gates = self._gates * self.hidden_size
        _declare(self, "weight_ih", (self.input_size, gates))
        _declare(self, "weight_hh", (self.hidden_size, gates))
        if self.bias:
            _declare(self, "bias_ih", (gates,))
            _declare(self, "bias_hh", (gates,))

    def forward(self, ctx: Context, x: jax.Array, hx: Any = None) -> Any:
        check_ndim(ctx, x, (1, 2), layout="(B, input_size) or unbatched (input_size,)")
        check_last_dim(ctx, x, self.input_size)
        check_input_dtype(ctx, x)
        dtype = compute_dtype(x)
        want = (*jnp.shape(x)[:-1], self.hidden_size)
        lstm = self._mode == "lstm"
        if hx is None:
            state = (jnp.zeros(want, dtype),) * (2 if lstm else 1)
        else:
            state = tuple(hx) if lstm else (hx,)
            for part in state:
                if jnp.shape(part) != want:
                    raise ShapeError(
                        f"{_where(ctx)}: expected hidden state of shape {want}, got "
                        f"{jnp.shape(part)}"
                    )
            state = tuple(jnp.asarray(s, dtype) for s in state)
        biases = (ctx.param(n, dtype) if self.bias else None for n in ("bias_ih", "bias_hh"))
        new = _cell(
            self._mode,
            x,
            state,
            ctx.param("weight_ih", dtype),
            ctx.param("weight_hh", dtype),
            *biases,
        )
        return new if lstm else new[0]


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class RNNCell(_CellBase):
    """One Elman RNN step (``torch.nn.RNNCell``): h' = act(x W_ih + b_ih + h W_hh + b_hh).

    Args:
        input_size: features of x: (B, input_size) or unbatched (input_size,); floating.
        hidden_size: features of h.
        bias: whether to learn ``bias_ih`` and ``bias_hh`` (hidden,).
        nonlinearity: ``"tanh"`` or ``"relu"``.
        dtype: dtype of the parameters.

    ``forward(ctx, x, hx=None)`` returns h' (B, hidden_size); hx defaults to zeros.
    Weights ``weight_ih`` (input_size, hidden), ``weight_hh`` (hidden, hidden): PyTorch's
    transposed.
    """

    _gates: ClassVar[int] = 1
    input_size: int
    hidden_size: int
    bias: bool = True
    nonlinearity: str = "tanh"
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        _rnn_mode(self.nonlinearity)
        super().__post_init__()

    @property
    def _mode(self) -> str:
        return _rnn_mode(self.nonlinearity)


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class LSTMCell(_CellBase):
    """One LSTM step (``torch.nn.LSTMCell``), gate order i, f, g, o.

    Args:
        input_size: features of x: (B, input_size) or unbatched (input_size,); floating.
        hidden_size: features of h and c.
        bias: whether to learn ``bias_ih`` and ``bias_hh`` (4·hidden,).
        dtype: dtype of the parameters.

    ``forward(ctx, x, hx=None)`` takes ``hx = (h, c)`` (zeros by default) and returns
    ``(h', c')``, each (B, hidden_size). Weights ``weight_ih`` (input_size, 4·hidden),
    ``weight_hh`` (hidden, 4·hidden): PyTorch's transposed.
    """

    _gates: ClassVar[int] = 4
    input_size: int
    hidden_size: int
    bias: bool = True
    dtype: Any = jnp.float32

    @property
    def _mode(self) -> str:
        return "lstm"


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class GRUCell(_CellBase):
    """One GRU step (``torch.nn.GRUCell``), gate order r, z, n, reset gate as PyTorch.

    Args:
        input_size: features of x: (B, input_size) or unbatched (input_size,); floating.
        hidden_size: features of h.
        bias: whether to learn ``bias_ih`` and ``bias_hh`` (3·hidden,).
        dtype: dtype of the parameters.

    ``forward(ctx, x, hx=None)`` returns h' (B, hidden_size); hx defaults to zeros.
    Weights ``weight_ih`` (input_size, 3·hidden), ``weight_hh`` (hidden, 3·hidden):
    PyTorch's transposed.
    """

    _gates: ClassVar[int] = 3
    input_size: int
    hidden_size: int
    bias: bool = True
    dtype: Any = jnp.float32

    @property
    def _mode(self) -> str:
        return "gru"
