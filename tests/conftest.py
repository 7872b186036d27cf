"""Test configuration shared by the whole suite.

The persistent compilation cache makes a warm run of the suite several times faster
(XLA compilation dominates small tests). ``FUNCNET_TEST_CACHE`` names its directory;
``FUNCNET_TEST_CACHE=off`` runs without it.
"""

import importlib.metadata
import os

import jax
import pytest

# Compile for speed of compilation: the suite compiles thousands of small programs, each run
# a few times, and LLVM's optimisations were most of its time (measured: 42% less time for
# tests/nn/test_conv.py and test_normalization.py). The programs' meaning is unchanged.
# (XLA reads the flags when the first computation creates its backend, after this file.)
_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
# jaxlib 0.10's XLA:CPU still has its older fusion emitters, which compile the suite's
# programs about a third faster (tests/nn/test_conv.py, test_normalization.py, tests/train
# and tests/optim: 58 s instead of 87 s cold); jaxlib 0.12 has only the new ones and
# aborts on the flag.
if importlib.metadata.version("jaxlib").startswith("0.10."):
    _FAST_COMPILE += " --xla_cpu_use_fusion_emitters=false"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()

_CACHE = os.environ.get(
    "FUNCNET_TEST_CACHE", os.path.join(os.path.dirname(__file__), "..", ".jax_cache")
)
if _CACHE != "off":
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(_CACHE))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture
def key():
    """A fresh PRNG key; tests derive sub-keys from it explicitly."""
    return jax.random.key(0)


def torch_or_skip():
    """Import torch for a parity test, or skip the test when it is not installed."""
    return pytest.importorskip("torch")
