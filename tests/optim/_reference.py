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


def np_adamax(p, g, st, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    b1, b2 = betas
    if weight_decay:
        g = g + weight_decay * p
    st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
    st["u"] = np.maximum(b2 * st.get("u", 0.0), np.abs(g) + eps)
    return p - lr / (1 - b1**t) * st["m"] / st["u"]


def np_nadam(p, g, st, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
             momentum_decay=4e-3, decoupled_weight_decay=False):  # fmt: skip
    b1, b2 = betas
    if decoupled_weight_decay:
        p = p * (1 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * p
    mu = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
    mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
    st["mu_product"] = st.get("mu_product", 1.0) * mu
    st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
    st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g * g
    denom = np.sqrt(st["v"] / (1 - b2**t)) + eps
    p = p - lr * (1 - mu) / (1 - st["mu_product"]) * g / denom
    return p - lr * mu_next / (1 - st["mu_product"] * mu_next) * st["m"] / denom


def np_radam(p, g, st, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
             decoupled_weight_decay=False):  # fmt: skip
    b1, b2 = betas
    if decoupled_weight_decay:
        p = p * (1 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * p
    st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
    st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g * g
    m_hat = st["m"] / (1 - b1**t)
    rho_inf = 2 / (1 - b2) - 1
    rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
    if rho <= 5:
        return p - lr * m_hat
    rect = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
    return p - lr * m_hat * rect * math.sqrt(1 - b2**t) / (np.sqrt(st["v"]) + eps)


def np_adadelta(p, g, st, t, lr, rho=0.9, eps=1e-6, weight_decay=0.0):
    if weight_decay:
        g = g + weight_decay * p
    st["v"] = rho * st.get("v", 0.0) + (1 - rho) * g * g
    delta = np.sqrt(st.get("u", 0.0) + eps) / np.sqrt(st["v"] + eps) * g
    st["u"] = rho * st.get("u", 0.0) + (1 - rho) * delta * delta
    return p - lr * delta


def np_rprop(p, g, st, t, lr, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0)):
    prev = st.get("prev", np.zeros_like(p))
    size = st.get("size", np.full_like(p, lr))
    sign = np.sign(g * prev)
    size = np.clip(size * np.where(sign > 0, etas[1], np.where(sign < 0, etas[0], 1.0)),
                   *step_sizes)  # fmt: skip
    g = np.where(sign < 0, 0.0, g)
    st["prev"], st["size"] = g, size
    return p - np.sign(g) * size


def np_asgd(p, g, st, t, lr, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0):
    """ASGD; the average is kept in ``st["ax"]``."""
    if weight_decay:
        g = g + weight_decay * p
    eta, mu = st.get("eta", lr), st.get("mu", 1.0)
    p = p * (1 - lambd * eta) - eta * g
    st["ax"] = p.copy() if mu == 1 else st["ax"] + (p - st["ax"]) * mu
    st["eta"] = lr / (1 + lambd * lr * t) ** alpha
    st["mu"] = 1 / max(1, t - t0)
    return p
