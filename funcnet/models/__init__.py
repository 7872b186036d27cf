"""funcnet.models: a model zoo built from funcnet.nn, with PyTorch weights.

Every model is a plain funcnet module (``init``/``apply``) whose parameter names are
those of its PyTorch counterpart (torchvision, Hugging Face), so converted weights load
by name. ``weights=PATH`` makes ``init`` return a converted weights file's values;
``python -m funcnet.models.convert`` converts torchvision or Hugging Face state dicts.
See docs/models.md.
"""

from funcnet.models._weights import Pretrainable, load_weights, read_weights, save_weights

__all__ = ["Pretrainable", "load_weights", "read_weights", "save_weights"]
