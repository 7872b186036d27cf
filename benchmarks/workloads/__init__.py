"""The workloads: one module per model, each holding its raw-JAX reference and its funcnet
version (the other libraries' versions live in ``benchmarks.others``).

A workload module provides ``config(quick)``, ``batch(cfg) -> (x, y)`` (NumPy, fixed),
``raw_init``, ``raw_opt_init``, ``raw_step(cfg)`` (one jitted step with the state donated),
``from_funcnet(params)`` (funcnet's parameters in the raw layout, to check that both
compute the same thing), ``funcnet_model(cfg)`` and ``funcnet_optimizer(cfg)``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: CPU workloads, in table order. ``gpt`` is the GPU workload (tiny config with --quick).
CPU_WORKLOADS = ("mlp", "cnn", "lstm", "transformer")
ALL_WORKLOADS = (*CPU_WORKLOADS, "gpt")


def load(name: str) -> ModuleType:
    if name not in ALL_WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; choose from {', '.join(ALL_WORKLOADS)}")
    return importlib.import_module(f"benchmarks.workloads.{name}")
