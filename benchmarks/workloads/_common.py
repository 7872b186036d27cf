"""What the workloads share: fixed data, hand-written optimizers and loss, Bench adapters.

The hand-written pieces are the raw-JAX reference's: each is the fastest formulation
measured on XLA:CPU, not the most literal one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.harness import Bench

SEED = 0


# --------------------------------------------------------------------------- data
def images(batch: int, shape: tuple[int, ...], classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed batch of float32 images ``(batch, *shape)`` in [0, 1) and int32 labels."""
    rng = np.random.default_rng(SEED)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = rng.integers(0, classes, size=(batch,), dtype=np.int32)
    return x, y


def token_ids(
    batch: int, seq: int, vocab: int, classes: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed int32 ids ``(batch, seq)``; labels ``(batch,)`` for classification, else the
    ids shifted by one position (next-token targets, ``(batch, seq)``)."""
    rng = np.random.default_rng(SEED)
    ids = rng.integers(0, vocab, size=(batch, seq + (classes is None)), dtype=np.int32)
    if classes is None:
        return ids[:, :-1], ids[:, 1:]
    return ids, rng.integers(0, classes, size=(batch,), dtype=np.int32)


def count_params(tree: Any) -> int:
    return int(sum(np.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


# ---------------------------------------------------------------- loss (raw JAX)
def cross_entropy_terms(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-row softmax cross-entropy over integer labels, computed in float32.

    ``logsumexp - logit[label]`` with the label's logit picked by ``take_along_axis``
    (0.88x the step time of a one-hot mask on the MLP).
    """
    logits = logits.astype(jnp.float32)
    picked = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    return jax.nn.logsumexp(logits, axis=-1) - picked


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy over integer labels (see `cross_entropy_terms`)."""
    return jnp.mean(cross_entropy_terms(logits, labels))


# -------------------------------------------------------- optimizers (raw JAX)
# PyTorch's update rules, each leaf updated in one fused expression. The state is a plain
# tuple so that the whole train state is donated with the parameters.


def adam_init(params: Any) -> tuple[jax.Array, Any, Any]:
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return jnp.zeros((), jnp.int32), zeros, jax.tree_util.tree_map(jnp.zeros_like, params)


def adam_update(
    params: Any,
    grads: Any,
    opt: tuple[jax.Array, Any, Any],
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> tuple[Any, tuple[jax.Array, Any, Any]]:
    """Adam (``weight_decay=0``) or AdamW (decoupled decay, PyTorch's ``AdamW``).

    ``p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)``, rewritten with the bias
    corrections folded into two scalars so each leaf costs one fused loop.
    """
    b1, b2 = betas
    count, mu, nu = opt
    t = (count + 1).astype(jnp.float32)
    c2 = jnp.sqrt(1.0 - b2**t)
    step_size = lr * c2 / (1.0 - b1**t)
    eps_hat = eps * c2
    decay = 1.0 - lr * weight_decay

    def leaf(p, g, m, v):
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * (g * g)
        p = p * decay if weight_decay else p
        return p - step_size * m / (jnp.sqrt(v) + eps_hat), m, v

    leaves, treedef = jax.tree_util.tree_flatten(params)
    rest = (treedef.flatten_up_to(tree) for tree in (grads, mu, nu))
    out = [leaf(*args) for args in zip(leaves, *rest)]
    p, m, v = (treedef.unflatten(list(x)) for x in zip(*out))
    return p, (count + 1, m, v)


def sgd_init(params: Any) -> Any:
    return jax.tree_util.tree_map(jnp.zeros_like, params)


def sgd_update(params: Any, grads: Any, buf: Any, lr: float, momentum: float) -> tuple[Any, Any]:
    """SGD with momentum as PyTorch (dampening 0): ``b = mu*b + g; p -= lr*b``.

    With ``b`` starting at zero the first step gives ``b = g``, PyTorch's rule.
    """
    buf = jax.tree_util.tree_map(lambda b, g: momentum * b + g, buf, grads)
    params = jax.tree_util.tree_map(lambda p, b: p - lr * b, params, buf)
    return params, buf


# ----------------------------------------------------------- Bench adapters
def jax_bench(
    step: Callable[[Any, Any], tuple[Any, Any]],
    state: Any,
    batch: Any,
    n_params: int,
    loss_of: Callable[[Any], jax.Array] = lambda out: out,
    **extra: Any,
) -> Bench:
    """A Bench over a jitted ``step(state, batch) -> (state, out)``; ``loss_of(out)`` is
    the loss. The state is threaded through the calls (it is donated)."""
    holder = [state, None]

    def run() -> None:
        holder[0], holder[1] = step(holder[0], batch)

    def sync() -> None:
        jax.block_until_ready(holder)

    def loss() -> float:
        return float(loss_of(holder[1]))

    return Bench(step=run, sync=sync, loss=loss, n_params=n_params, **extra)


def funcnet_loss(workload: Any, cfg: dict[str, Any]) -> Callable[..., jax.Array]:
    """The workload's funcnet loss: its own ``funcnet_loss(cfg)``, else cross-entropy."""
    from funcnet import losses

    return workload.funcnet_loss(cfg) if hasattr(workload, "funcnet_loss") else losses.cross_entropy


def funcnet_bench(
    model: Any,
    optimizer: Any,
    batch: Any,
    on_nonfinite: str,
    loss_fn: Callable[..., jax.Array],
    **extra: Any,
) -> Bench:
    """The funcnet train step exactly as a user writes it."""
    from funcnet import train

    state = train.TrainState.create(model, optimizer, jax.random.key(SEED))
    step = train.make_train_step(loss_fn, on_nonfinite=on_nonfinite)
    return jax_bench(
        step,
        state,
        batch,
        count_params(state.params),
        loss_of=lambda m: m["loss"],
        notes=f"make_train_step({getattr(loss_fn, '__name__', 'loss')}, on_nonfinite={on_nonfinite!r})",
        **extra,
    )


def uniform(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
    """PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def linear_init(key: jax.Array, n_in: int, n_out: int) -> dict[str, jax.Array]:
    kw, kb = jax.random.split(key)
    return {"w": uniform(kw, (n_in, n_out), n_in), "b": uniform(kb, (n_out,), n_in)}
