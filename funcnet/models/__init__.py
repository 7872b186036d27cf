"""funcnet.models: a model zoo built from funcnet.nn, with PyTorch weights.

Every model is a plain funcnet module (``init``/``apply``) whose parameter names are
those of its PyTorch counterpart (torchvision, Hugging Face), so converted weights load
by name. ``weights=PATH`` makes ``init`` return a converted weights file's values;
``funcnet-convert`` (``python -m funcnet.models.convert``) converts torchvision or
Hugging Face files, ``from_torch`` converts a state dict in memory. See docs/models.md.
"""

from funcnet.models._convert import convert_file, from_torch, read_torch_state_dict
from funcnet.models._weights import Pretrainable, load_weights, read_weights, save_weights

__all__ = [
    "Pretrainable",
    "convert_file",
    "from_torch",
    "load_weights",
    "read_torch_state_dict",
    "read_weights",
    "save_weights",
]
