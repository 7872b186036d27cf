"""funcnet.checkpoint: save and restore pytrees atomically, in a format NumPy can read.

``save(directory, tree, step)`` writes ``directory/step_000000042/`` (``arrays.npz`` plus a
JSON ``manifest.json``) atomically; ``restore(directory, target=None, step=None)`` reads it
back bit-exactly, verifying a SHA-256 per array and reporting every difference from
``target`` at once. ``CheckpointManager`` keeps the last N and the best by a metric;
``save_params``/``load_params`` export weights as one ``.npz`` file;
``save_safetensors``/``load_safetensors`` read and write ``.safetensors`` files. See
docs/checkpoints.md for the guarantees and the on-disk format.
"""

from funcnet.checkpoint._errors import *
from funcnet.checkpoint._manager import *
from funcnet.checkpoint._restore import *
from funcnet.checkpoint._safetensors import *
from funcnet.checkpoint._save import *
