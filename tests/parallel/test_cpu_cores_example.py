"""``examples/cifar_cnn.py --cpu-cores``: the CNN trained data-parallel over the CPU's cores
(the setting docs/performance.md recommends for convolutional networks on a CPU) trains
the same model as on one device."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Two example runs in fresh processes (about 10 s); the data-parallel step itself is tested
# on every jax version in test_data_parallel.py and test_sharding.py.
pytestmark = pytest.mark.one_version

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cifar_cnn.py"


def _run(*flags: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--smoke", *flags],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _test_loss(out: str) -> float:
    return float(re.search(r"test loss ([\d.]+)", out).group(1))


def test_cpu_cores_example_splits_batches_over_every_core_and_trains_the_same():
    cores = _run("--cpu-cores")
    devices = int(re.search(r"^(\d+) CPU devices", cores, re.M).group(1))
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert devices == usable
    # The same three steps from the same parameters: the losses agree to the printed digits
    # (the all-reduce sums the gradient in another order).
    assert abs(_test_loss(cores) - _test_loss(_run())) <= 2e-4
