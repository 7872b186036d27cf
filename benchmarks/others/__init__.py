"""The same workloads in other libraries, each written the way that library's users write
it (its own layers, its own idiomatic jit and optax), with the raw reference's sizes and
parameter counts. Each module imports its library at import time: ``run_one`` reports a
missing library as skipped. Install them with ``pip install flax equinox dm-haiku torch``
in a separate environment (see benchmarks/README.md)."""
