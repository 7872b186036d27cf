"""Test configuration shared by the whole suite.

The persistent compilation cache makes a warm run of the suite several times faster
(XLA compilation dominates small tests; see shared/reference/jax-facts.md).
"""

import os

import jax
import pytest

_CACHE = os.environ.get(
    "FUNCNET_TEST_CACHE", os.path.join(os.path.dirname(__file__), "..", ".jax_cache")
)
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
