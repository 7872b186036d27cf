"""Parallel and distributed training on JAX's own runtime.

One script runs on one CPU, on several GPUs and on a multi-host cluster:

- data parallelism with ``jax.jit`` and shardings over a :func:`make_mesh` (recommended),
  or :class:`DataParallel` (``jax.pmap`` / ``jax.shard_map``, PyTorch's habit);
- sharded parameters and optimizer state (FSDP) and tensor parallelism by parameter path
  (:func:`shard_state` with rules);
- several processes: :func:`init_distributed` and ``python -m funcnet.launch``.

See docs/parallel.md.
"""

from funcnet.parallel._data_parallel import *
from funcnet.parallel._distributed import *
from funcnet.parallel._mesh import *
from funcnet.parallel._sharding import *
