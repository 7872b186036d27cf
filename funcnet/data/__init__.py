"""Input pipelines: datasets, a resumable prefetching DataLoader, transforms, readers.

PyTorch's ``torch.utils.data`` names, for NumPy and JAX: ``Dataset``, ``ArrayDataset``
(``TensorDataset``), ``Subset``, ``ConcatDataset``, ``random_split``, ``DataLoader``,
``default_collate``; ``to_numpy`` and ``pad_batch`` for batches from anywhere. Batch transforms live in :mod:`funcnet.data.transforms`, dataset
readers (the embedded digits, MNIST, Fashion-MNIST, CIFAR-10) in
:mod:`funcnet.data.datasets`.
"""

from . import datasets as datasets
from . import transforms as transforms
from ._collate import default_collate as default_collate
from ._collate import pad_batch as pad_batch
from ._collate import to_numpy as to_numpy
from ._dataset import ArrayDataset as ArrayDataset
from ._dataset import ConcatDataset as ConcatDataset
from ._dataset import Dataset as Dataset
from ._dataset import Subset as Subset
from ._dataset import random_split as random_split
from ._loader import DataLoader as DataLoader

__all__ = [
    "ArrayDataset",
    "ConcatDataset",
    "DataLoader",
    "Dataset",
    "Subset",
    "datasets",
    "default_collate",
    "pad_batch",
    "random_split",
    "to_numpy",
    "transforms",
]
