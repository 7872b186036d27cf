"""Policy: the dtypes of a mixed-precision run (parameters, computation, outputs)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Policy", "cast_floating", "get_policy", "has_floating"]

_FIELDS = ("param_dtype", "compute_dtype", "output_dtype")


@dataclasses.dataclass(frozen=True, repr=False)
class Policy:
    """The dtypes of a mixed-precision run: one policy for the whole model.

    ``model.apply(..., precision=policy)`` (and the train and eval steps, and ``fit``,
    which pass it on) casts the floating inputs to ``compute_dtype``, runs the layers in
    it (they cast their ``param_dtype`` parameters at use), casts the floating outputs
    to ``output_dtype``. Integer and boolean inputs (token ids, masks) are left alone.
    The floating outputs of a layer that takes no floating input (``nn.Embedding``) are
    cast to ``compute_dtype``, so activations start in it. What stays float32 whatever
    the policy: normalisation statistics, softmax, attention logits, losses.

    Keras' ``mixed_precision.Policy`` and jmp's ``Policy`` with PyTorch's autocast
    replaced by one rule: where autocast keeps per-op lists, every layer here computes in
    its input's dtype.

    Args:
        param_dtype: the dtype of the stored (master) parameters and therefore of the
            gradients and the optimizer state. A train step checks it (trace time).
        compute_dtype: the dtype activations and matmuls run in.
        output_dtype: the dtype of the model's floating outputs (what the loss sees).

    Raises:
        ValueError: a dtype that is not a floating dtype.

    Examples:
        >>> import jax.numpy as jnp
        >>> from funcnet.mixed_precision import Policy
        >>> Policy.parse("bf16") == Policy(jnp.float32, jnp.bfloat16, jnp.float32)
        True
        >>> Policy.parse("bf16").cast_to_compute({"x": jnp.ones(2), "ids": jnp.arange(2)})["x"].dtype
        dtype(bfloat16)
    """

    param_dtype: Any = jnp.float32
    compute_dtype: Any = jnp.float32
    output_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        for name in _FIELDS:
            object.__setattr__(self, name, _floating_dtype(name, getattr(self, name)))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name).name}" for name in _FIELDS)
        return f"Policy({fields})"

    @classmethod
    def parse(cls, precision: str) -> Policy:
        """The policy a ``precision=`` string names.

        Args:
            precision: ``"float32"`` (alias ``"f32"``): everything float32;
                ``"bf16"`` (aliases ``"mixed_bf16"``, ``"mixed_bfloat16"``): float32
                parameters, bfloat16 computation, float32 outputs; ``"fp16"`` (aliases
                ``"mixed_fp16"``, ``"mixed_float16"``): the same with float16
                computation, which a train step runs with dynamic loss scaling
                (:func:`with_loss_scale`).

        Returns:
            The Policy.

        Raises:
            ValueError: an unknown name (the message lists the choices).
        """
        policy = _PRESETS.get(precision) if isinstance(precision, str) else None
        if policy is None:
            raise ValueError(
                f"unknown precision {precision!r}: choose 'float32' (or 'f32'), 'bf16' (or "
                "'mixed_bf16', 'mixed_bfloat16'), 'fp16' (or 'mixed_fp16', 'mixed_float16'), "
                "or pass a funcnet.mixed_precision.Policy(param_dtype, compute_dtype, "
                "output_dtype)"
            )
        return policy

    @property
    def needs_loss_scale(self) -> bool:
        """Whether training computes in float16, whose gradients underflow without a
        loss scale (bfloat16 has float32's exponent range and needs none)."""
        return self.compute_dtype == jnp.float16

    def cast_to_compute(self, tree: Any) -> Any:
        """``tree`` with its floating array leaves cast to ``compute_dtype``; other leaves
        (integer and boolean arrays, Python numbers, strings, None) unchanged."""
        return cast_floating(tree, self.compute_dtype)

    def cast_to_output(self, tree: Any) -> Any:
        """``tree`` with its floating array leaves cast to ``output_dtype``."""
        return cast_floating(tree, self.output_dtype)

    def cast_to_param(self, tree: Any) -> Any:
        """``tree`` with its floating array leaves cast to ``param_dtype``: parameters
        made in another dtype, before ``TrainState.create(..., params=...)``."""
        return cast_floating(tree, self.param_dtype)


def _floating_dtype(name: str, value: Any) -> jnp.dtype:
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"Policy: {name} must be a floating dtype such as jnp.float32 or jnp.bfloat16, "
            f"got {value!r}"
        )
    return dtype


def cast_floating(tree: Any, dtype: jnp.dtype) -> Any:
    """``tree`` with every floating array leaf of another dtype cast to ``dtype``.

    Leaves already in ``dtype`` are returned as they are, so a policy that changes no
    dtype adds nothing to a traced program.
    """

    def cast(leaf: Any) -> Any:
        if not _is_floating_array(leaf) or leaf.dtype == dtype:
            return leaf
        return jnp.asarray(leaf, dtype)

    return jax.tree_util.tree_map(cast, tree)


def _is_floating_array(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array | np.ndarray | np.generic) and jnp.issubdtype(
        leaf.dtype, jnp.floating
    )


def has_floating(tree: Any) -> bool:
    """Whether ``tree`` holds a floating array leaf."""
    return any(_is_floating_array(leaf) for leaf in jax.tree_util.tree_leaves(tree))


def get_policy(precision: str | Policy | None) -> Policy | None:
    """The Policy that ``precision=`` asks for: None for None (no policy: nothing is
    cast), a Policy as it is, a string through :meth:`Policy.parse`.

    Raises:
        ValueError: an unknown string.
        TypeError: anything else.
    """
    if precision is None or isinstance(precision, Policy):
        return precision
    if isinstance(precision, str):
        return Policy.parse(precision)
    raise TypeError(
        f"precision must be None, a string such as 'bf16', or a "
        f"funcnet.mixed_precision.Policy, got {type(precision).__name__}"
    )


_FLOAT32 = Policy(jnp.float32, jnp.float32, jnp.float32)
_BF16 = Policy(jnp.float32, jnp.bfloat16, jnp.float32)
_FP16 = Policy(jnp.float32, jnp.float16, jnp.float32)
_PRESETS = {
    "float32": _FLOAT32,
    "f32": _FLOAT32,
    "bf16": _BF16,
    "mixed_bf16": _BF16,
    "mixed_bfloat16": _BF16,
    "fp16": _FP16,
    "mixed_fp16": _FP16,
    "mixed_float16": _FP16,
}
