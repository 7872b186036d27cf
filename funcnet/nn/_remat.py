"""Rematerialisation: ``nn.Remat`` and the ``remat=`` option of containers.

One mechanism for every place funcnet recomputes activations: a remat setting (a policy
name, a ``jax.checkpoint_policies`` callable, ``True``) is checked when the module is
built and turned into ``jax.checkpoint(fn, policy=...)`` when it runs. ``nn.Remat``,
``nn.Sequential(..., remat=)``, ``nn.ModuleList(..., remat=)``, ``nn.ModuleDict(...,
remat=)`` and ``nn.LayerStack(..., remat=)`` all go through :func:`checkpoint`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import numpy as np

from funcnet.nn._module import Context, Module, Params, State

__all__ = ["Remat"]

#: What ``remat=`` (containers) and ``policy=`` (``Remat``) accept: ``True``, ``"full"``
#: or ``None`` (save nothing), a name from :data:`POLICY_NAMES`, or a
#: ``jax.checkpoint_policies`` callable; containers also take ``False`` (no remat).
RematPolicy = bool | str | Callable[..., bool] | None

#: The names accepted for a policy: ``"full"`` (recompute everything, as ``True``) and
#: the ``jax.checkpoint_policies`` that take no arguments.
POLICY_NAMES = (
    "full",
    "nothing_saveable",
    "dots_saveable",
    "dots_with_no_batch_dims_saveable",
    "everything_saveable",
)

Fn = TypeVar("Fn", bound=Callable[..., Any])


def jax_policy(owner: str, policy: RematPolicy) -> Callable[..., bool] | None:
    """The ``policy=`` argument of ``jax.checkpoint`` for a funcnet remat setting.

    Args:
        owner: who asks, for error messages (e.g. ``"Sequential"``).
        policy: ``None``, ``True`` or ``"full"`` (save nothing: ``jax.checkpoint``'s
            default), a name from :data:`POLICY_NAMES`, or a callable policy.

    Returns:
        ``None`` for a full recomputation, else the ``jax.checkpoint_policies`` policy.

    Raises:
        ValueError: for an unknown name (the message lists the names).
        TypeError: for anything else that is not a policy (``False`` included).
    """
    if policy is None or policy is True or (isinstance(policy, str) and policy == "full"):
        return None
    if isinstance(policy, str):
        if policy not in POLICY_NAMES:
            raise ValueError(
                f"{owner}: unknown remat policy {policy!r}; choose one of "
                f"{', '.join(map(repr, POLICY_NAMES))}, True, or a jax.checkpoint_policies "
                f"callable such as jax.checkpoint_policies.save_only_these_names('attn')"
            )
        return getattr(jax.checkpoint_policies, policy)
    if callable(policy) and not isinstance(policy, bool):
        return policy
    raise TypeError(
        f"{owner}: a remat policy is True, a name such as 'dots_saveable' or a "
        f"jax.checkpoint_policies callable, got {policy!r}"
    )


def check_remat(owner: str, remat: RematPolicy) -> RematPolicy:
    """Validates a container's ``remat=`` when it is built; returns it unchanged.

    ``False`` turns rematerialisation off; ``None`` is refused, since it would mean "off"
    to some readers and "``jax.checkpoint``'s default policy" to others.

    Raises:
        ValueError, TypeError: as :func:`jax_policy`, and TypeError for ``None``.
    """
    if remat is None:
        raise TypeError(
            f"{owner}: remat=None is ambiguous; pass remat=False to keep activations or "
            f"remat=True (or a policy name) to recompute them"
        )
    if remat is not False:
        jax_policy(owner, remat)
    return remat


def checkpoint(fn: Fn, remat: RematPolicy) -> Fn:
    """``fn`` under ``jax.checkpoint`` with the policy ``remat``; ``fn`` itself for False.

    ``fn`` must be a function of arrays (pytrees of them) returning arrays.
    """
    if remat is False:
        return fn
    return jax.checkpoint(fn, policy=jax_policy("remat", remat))


def rematerialise(module: Any, remat: RematPolicy) -> Any:
    """``module`` wrapped in :class:`Remat` for a container's ``remat=``.

    Functions, and modules that are already a ``Remat`` (they keep their own policy),
    are returned unchanged, as is everything when ``remat`` is False.
    """
    if remat is False or not isinstance(module, Module) or isinstance(module, Remat):
        return module
    return Remat(module, remat)


def _is_array(leaf: Any) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic))


def _split_arrays(tree: Any) -> tuple[list[Any], Callable[[list[Any]], Any]]:
    """The array leaves of ``tree``, and a function rebuilding ``tree`` from new ones.

    Other leaves (``is_causal=True``, a Python float) stay Python values: ``jax.checkpoint``
    would turn them into tracers.
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    arrays = [leaf for leaf in leaves if _is_array(leaf)]

    def rebuild(new: list[Any]) -> Any:
        it = iter(new)
        return treedef.unflatten([next(it) if _is_array(leaf) else leaf for leaf in leaves])

    return arrays, rebuild


def run_checkpointed(
    ctx: Context, module: Module, args: tuple[Any, ...], kwargs: dict[str, Any], remat: RematPolicy
) -> Any:
    """Runs ``module.forward`` in ``ctx``'s place under ``jax.checkpoint``.

    ``module`` sees ``ctx``'s parameters, state, mode, path, PRNG key and mixed-precision
    policy, as if it had been called where ``ctx``'s module stands: parameter names,
    random numbers and error messages are those of the unwrapped module. The state it
    returns replaces ``ctx``'s (it is computed once; the recomputation in the backward
    pass only feeds the gradient).
    """
    arrays, rebuild = _split_arrays((args, kwargs))
    key = ctx._base_key() if ctx.has_key else None
    train, path, recorder, precision = ctx.train, ctx.path, ctx._root.recorder, ctx.policy

    def pure(params: Params, state: State, key: jax.Array | None, arrays: list[Any]):
        call_args, call_kwargs = rebuild(arrays)
        return module._run(
            params, state, call_args, call_kwargs, train=train, key=key, path=path,
            recorder=recorder, policy=precision,
        )  # fmt: skip

    state = ctx.state
    out, new_state = checkpoint(pure, remat)(ctx.params, state, key, arrays)
    if state:
        ctx._replace_state(new_state)
    return out


@dataclasses.dataclass(unsafe_hash=True, repr=False)
class Remat(Module):
    """Runs ``block`` under ``jax.checkpoint`` (``torch.utils.checkpoint.checkpoint``).

    The backward pass recomputes ``block``'s intermediate activations from its inputs
    instead of keeping them from the forward pass: less memory for one more forward of
    ``block``. A ``policy`` chooses what is kept after all (``"dots_saveable"``: the
    matmul outputs, so only the cheap elementwise operations are recomputed).

    Transparent: the parameters and state are ``block``'s, at ``Remat``'s place in the
    tree (no extra level), so wrapping a block changes neither ``state_dict`` keys nor
    checkpoints, and ``init`` gives the unwrapped block's values; ``repr`` and
    ``named_modules`` show the wrapper, with the block as its child ``block``. The block sees the
    same PRNG keys, mode and path as unwrapped: dropout masks, outputs, gradients and
    state updates are those of the block alone. State (BatchNorm statistics) is updated
    once per forward, not again by the recomputation as in PyTorch.

    ``forward(ctx, *args, **kwargs)`` is ``block``'s: arrays (inputs, masks) pass
    through ``jax.checkpoint``; other values (``is_causal=True``) are given as they are.
    ``block`` must return arrays (a pytree of them).

    Args:
        block: the module to rematerialise.
        policy: what to keep: ``None`` (the default), ``True`` or ``"full"`` keep
            nothing; ``"nothing_saveable"``, ``"dots_saveable"``,
            ``"dots_with_no_batch_dims_saveable"``, ``"everything_saveable"`` name
            ``jax.checkpoint_policies``; or pass any policy callable, such as
            ``jax.checkpoint_policies.save_only_these_names("attn")``.

    Raises:
        TypeError: when ``block`` is not a funcnet module or ``policy`` is no policy.
        ValueError: for an unknown policy name (the message lists the names).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from funcnet import nn
        >>> mlp = nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.Linear(32, 8))
        >>> model = nn.Sequential(nn.Remat(mlp), nn.Linear(8, 2))
        >>> params, state = model.init(jax.random.key(0))
        >>> sorted(nn.state_dict(params))  # the names of the unwrapped model
        ['0.0.bias', '0.0.weight', '0.2.bias', '0.2.weight', '1.bias', '1.weight']
        >>> y, _ = model.apply(params, state, jnp.ones((4, 8)))
        >>> y.shape
        (4, 2)
    """

    block: Module
    policy: RematPolicy = None

    def __post_init__(self) -> None:
        if not isinstance(self.block, Module):
            raise TypeError(f"Remat: block must be a funcnet module, got {self.block!r}")
        if self.policy is False:
            raise TypeError(
                "Remat: policy=False would not rematerialise; use the block itself, or "
                "None / True / a policy name to recompute it"
            )
        jax_policy("Remat", self.policy)

    def init(self, key: jax.Array) -> tuple[Params, State]:
        """``block``'s parameters and state, as ``block.init(key)`` gives them."""
        return self.block.init(key)

    def _params_owner(self) -> Module:
        return self.block._params_owner()

    def forward(self, ctx: Context, *args: Any, **kwargs: Any) -> Any:
        return run_checkpointed(ctx, self.block, args, kwargs, self.policy)
