"""LayerStack: one layer repeated, its parameters stacked, run by one ``lax.scan``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from funcnet.errors import ShapeError
from funcnet.nn._module import Context, Module, Params, State
from funcnet.nn._remat import RematPolicy, check_remat, checkpoint

__all__ = ["LayerStack"]


class LayerStack(Module):
    """``num_layers`` copies of ``layer`` applied in sequence, compiled once.

    What a ``ModuleList`` of identical blocks run in a Python loop computes, with each
    parameter of ``layer`` stacked along a new leading axis of size ``num_layers`` and
    the loop a ``jax.lax.scan``: XLA compiles one block instead of ``num_layers``, so a
    12-layer transformer compiles about as fast as a 1-layer one, and ``remat`` puts
    ``jax.checkpoint`` around each block (the backward pass then recomputes a block's
    activations instead of keeping them; a policy chooses what is kept, as for
    :class:`Remat`). PyTorch has no such container; it is Haiku's ``layer_stack`` and
    Flax's ``nn.scan`` over layers.

    Parameters are ``layer``'s names with a leading axis, e.g. ``weight`` of shape
    ``(num_layers, in, out)`` for a stack of ``Linear``; block ``i``'s are
    ``jax.tree.map(lambda a: a[i], params)``. Each block is initialised with its own key
    (``jax.random.split(key, num_layers)``). State (BatchNorm statistics) is stacked the
    same way and updated block by block. In training mode each block gets its own PRNG
    key (the stack's key folded with the block's index).

    ``forward(ctx, x, *args, **kwargs)`` runs ``x`` through the blocks; ``args`` and
    ``kwargs`` (masks, ``is_causal=True``) go unchanged to every block. Each block must
    return an array of its input's shape and dtype.

    Args:
        layer: the block, a funcnet module whose ``forward`` takes ``x`` first.
        num_layers: how many copies, at least 1.
        remat: ``False`` (keep activations), ``True`` or ``"full"`` (``jax.checkpoint``
            each block, keeping nothing), a policy name (``"dots_saveable"``,
            ``"dots_with_no_batch_dims_saveable"``, …) or a ``jax.checkpoint_policies``
            callable; the same settings as :class:`Remat` and the other containers.
        unroll: ``lax.scan``'s ``unroll`` (blocks per loop iteration).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> block = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
        >>> encoder = nn.LayerStack(block, 6, remat=True)
        >>> params, state = encoder.init(jax.random.key(0))
        >>> params["linear1"]["weight"].shape
        (6, 16, 32)
        >>> y, _ = encoder.apply(params, state, jnp.ones((2, 5, 16)))
        >>> y.shape
        (2, 5, 16)
    """

    def __init__(
        self,
        layer: Module,
        num_layers: int,
        *,
        remat: RematPolicy = False,
        unroll: int = 1,
    ) -> None:
        if not isinstance(layer, Module):
            raise TypeError(f"LayerStack: layer must be a funcnet module, got {layer!r}")
        if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
            raise ValueError(f"LayerStack: num_layers must be an int >= 1, got {num_layers!r}")
        check_remat("LayerStack", remat)
        self._layer = layer
        self.num_layers = num_layers
        self.remat = remat
        self.unroll = unroll

    @property
    def layer(self) -> Module:
        """The repeated block."""
        return self._layer

    def init(self, key: jax.Array) -> tuple[Params, State]:
        """Initialises ``num_layers`` blocks, each with its own key, and stacks them."""
        return jax.vmap(self._layer.init)(jax.random.split(key, self.num_layers))

    def _params_owner(self) -> Module:
        return self._layer._params_owner()

    def forward(self, ctx: Context, x: jax.Array, *args: Any, **kwargs: Any) -> jax.Array:
        key = ctx.next_key() if ctx.has_key else None
        train = ctx.train

        def block(h: jax.Array, inputs: tuple[Params, State, jax.Array]):
            params, state, index = inputs
            k = None if key is None else jax.random.fold_in(key, index)
            out, state = self._layer._run(
                params, state, (h, *args), kwargs, train=train, key=k, path=ctx.path,
                policy=ctx.policy,
            )  # fmt: skip
            if jnp.shape(out) != jnp.shape(h) or jnp.result_type(out) != jnp.result_type(h):
                raise ShapeError(
                    f"{ctx.path} (LayerStack): each block must return its input's shape and "
                    f"dtype to be stacked; {type(self._layer).__name__} turned "
                    f"{jnp.shape(h)} {jnp.result_type(h)} into {jnp.shape(out)} "
                    f"{jnp.result_type(out)}"
                )
            return out, state

        block = checkpoint(block, self.remat)
        state = ctx.state
        for name, leaf in jax.tree_util.tree_leaves_with_path((ctx.params, state)):
            if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != self.num_layers:
                raise ShapeError(
                    f"{ctx.path} (LayerStack): expected every parameter and state entry "
                    f"stacked along a leading axis of {self.num_layers}, got shape "
                    f"{jnp.shape(leaf)} at {jax.tree_util.keystr(name)}; use the params "
                    f"made by this LayerStack's init"
                )
        indices = jnp.arange(self.num_layers)
        x, new_state = jax.lax.scan(block, x, (ctx.params, state, indices), unroll=self.unroll)
        if state:
            ctx._replace_state(new_state)
        return x

    def __repr__(self) -> str:
        options = "".join(
            f", {name}={value!r}"
            for name, value, default in (("remat", self.remat, False), ("unroll", self.unroll, 1))
            if value is not default and value != default
        )
        body = repr(self._layer).replace("\n", "\n  ")
        return f"LayerStack(\n  {body},\n  num_layers={self.num_layers}{options}\n)"
