"""funcnet.export: a model as one file of StableHLO that runs without its Python code.

``export(model, params, state, *inputs, path=...)`` traces ``model.apply(params, state,
*inputs, train=False)`` with ``jax.export`` (a symbolic batch dimension, several
platforms) and writes the serialised program with JSON metadata; ``load(path)`` returns a
callable that runs it with jax and funcnet alone: the model's module is never imported.
Weights are either baked into the program or read from a ``save_params`` file beside it,
so new weights (``save_weights``) need no new export. See docs/export.md for the file
format and what ``jax.export`` can and cannot do.
"""

from funcnet.export._export import *
from funcnet.export._format import *
from funcnet.export._load import *
