"""funcnet.models: a model zoo built from funcnet.nn, with PyTorch weights.

Every model is a plain funcnet module (``init``/``apply``) whose parameter names are
those of its PyTorch counterpart (torchvision, Hugging Face), so converted weights load
by name. ``weights=PATH`` makes ``init`` return a converted weights file's values;
``funcnet-convert`` (``python -m funcnet.models.convert``) converts torchvision or
Hugging Face files, ``from_torch`` converts a state dict in memory. See docs/models.md.
"""

from funcnet.models import (
    _classic,
    _generative,
    _gpt,
    _mobilenet,
    _multitask,
    _resnet,
    _sequence,
    _vgg,
    _vit,
)
from funcnet.models._classic import *
from funcnet.models._convert import convert_file, from_torch, to_torch
from funcnet.models._generative import *
from funcnet.models._gpt import *
from funcnet.models._mobilenet import *
from funcnet.models._multitask import *
from funcnet.models._resnet import *
from funcnet.models._sequence import *
from funcnet.models._vgg import *
from funcnet.models._vit import *
from funcnet.models._weights import Pretrainable, load_weights, read_weights, save_weights

__all__ = [
    *_classic.__all__,
    *_generative.__all__,
    *_gpt.__all__,
    *_mobilenet.__all__,
    *_multitask.__all__,
    *_resnet.__all__,
    *_sequence.__all__,
    *_vgg.__all__,
    *_vit.__all__,
    "Pretrainable",
    "convert_file",
    "from_torch",
    "load_weights",
    "read_weights",
    "save_weights",
    "to_torch",
]
