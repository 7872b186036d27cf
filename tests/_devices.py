"""Run a script in a child process that sees several simulated CPU devices.

The device count is fixed when JAX starts, so tests that need a mesh run their script in
a fresh interpreter with ``JAX_NUM_CPU_DEVICES`` set.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def run_with_cpu_devices(script: str, devices: int = 4, timeout: float = 120) -> str:
    """Runs ``script`` with ``devices`` CPU devices; returns its stdout, fails on an error."""
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(devices), "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
