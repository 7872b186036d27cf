"""funcnet.nn: layers as immutable descriptions with pure ``init`` and ``apply``.

See docs/layers.md for the mechanism (modules, the per-call context, state and keys).
"""

from funcnet.nn import init as init
from funcnet.nn._activation import *
from funcnet.nn._attention import *
from funcnet.nn._container import *
from funcnet.nn._conv import *
from funcnet.nn._distance import *
from funcnet.nn._dropout import *
from funcnet.nn._embedding import *
from funcnet.nn._linear import *
from funcnet.nn._loss import *
from funcnet.nn._module import *
from funcnet.nn._normalization import *
from funcnet.nn._pooling import *
from funcnet.nn._recurrent import *
from funcnet.nn._remat import *
from funcnet.nn._resample import *
from funcnet.nn._stack import *
from funcnet.nn._state_dict import *
from funcnet.nn._transformer import *
