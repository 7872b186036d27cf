"""PyTorch's optimizer update rules re-implemented in NumPy, one parameter at a time.

Ported from ``torch/optim/{sgd,adam,adamw,rmsprop,adagrad}.py`` (``_single_tensor_*``),
independently of funcnet's code. Each rule takes the parameter ``p``, its gradient ``g``,
a per-parameter state dict ``st`` (filled on the first call), the 1-based step ``t`` and
the lr of this step, and returns the new parameter.
"""

from __future__ import annotations

import math

import numpy as np


def np_sgd(p, g, st, t, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        buf = g.copy() if "buf" not in st else momentum * st["buf"] + (1 - dampening) * g
        st["buf"] = buf
        g = g + momentum * buf if nesterov else buf
    return p - lr * g


def np_adam(p, g, st, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
            decoupled=False):  # fmt: skip
    b1, b2 = betas
    if decoupled:
        p = p * (1 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * p
    st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
    st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g * g
    v = st["v"]
    if amsgrad:
        st["vmax"] = v = np.maximum(st.get("vmax", 0.0), v)
    denom = np.sqrt(v) / math.sqrt(1 - b2**t) + eps
    return p - lr / (1 - b1**t) * st["m"] / denom


def np_adamw(p, g, st, t, lr, weight_decay=0.01, **kw):
    return np_adam(p, g, st, t, lr, weight_decay=weight_decay, decoupled=True, **kw)


def np_rmsprop(p, g, st, t, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
               centered=False, eps_in_sqrt=False):  # fmt: skip
    if weight_decay:
        g = g + weight_decay * p
    st["sq"] = alpha * st.get("sq", 0.0) + (1 - alpha) * g * g
    var = st["sq"]
    if centered:
        st["ga"] = alpha * st.get("ga", 0.0) + (1 - alpha) * g
        var = var - st["ga"] ** 2
    avg = np.sqrt(var + eps) if eps_in_sqrt else np.sqrt(var) + eps
    if momentum > 0:
        st["buf"] = momentum * st.get("buf", 0.0) + g / avg
        return p - lr * st["buf"]
    return p - lr * g / avg


def np_adagrad(p, g, st, t, lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
               eps=1e-10, eps_in_sqrt=False):  # fmt: skip
    if weight_decay:
        g = g + weight_decay * p
    clr = lr / (1 + (t - 1) * lr_decay)
    st["sum"] = st.get("sum", initial_accumulator_value) + g * g
    std = np.sqrt(st["sum"] + eps) if eps_in_sqrt else np.sqrt(st["sum"]) + eps
    return p - clr * g / std
