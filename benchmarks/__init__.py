"""funcnet's speed suite: funcnet against hand-written JAX and other libraries.

Run ``python -m benchmarks.run`` (see benchmarks/README.md and docs/performance.md).
"""
