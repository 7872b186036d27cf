"""funcnet.functional: the maths the layers call, as plain functions (import as F).

Like ``torch.nn.functional``: every function takes arrays (and, for layers with
weights, the weights) and is pure, so it composes with ``jax.jit``, ``jax.grad`` and
``jax.vmap``. Images are channels-last (N, H, W, C).
"""

from funcnet.functional._activation import *
from funcnet.functional._attention import *
from funcnet.functional._conv import *
from funcnet.functional._distance import *
from funcnet.functional._dropout import *
from funcnet.functional._embedding import *
from funcnet.functional._linear import *
from funcnet.functional._normalization import *
from funcnet.functional._pooling import *
from funcnet.functional._recurrent import *
from funcnet.functional._resample import *
