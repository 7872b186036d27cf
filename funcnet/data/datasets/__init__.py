"""Dataset readers: the embedded UCI digits, MNIST, Fashion-MNIST and CIFAR-10.

Every reader returns an :class:`~funcnet.data.ArrayDataset` of channels-last uint8
images ``(N, H, W, C)`` and int32 labels ``(N,)``. Nothing executes code while loading
(no pickle), nothing touches the network unless ``download=True``, and a missing,
truncated or corrupt file gives an error that names it.
"""

from ._cifar import CIFAR10 as CIFAR10
from ._digits import load_digits as load_digits
from ._files import CorruptFileError as CorruptFileError
from ._idx import read_idx as read_idx
from ._mnist import MNIST as MNIST
from ._mnist import FashionMNIST as FashionMNIST

__all__ = ["CIFAR10", "MNIST", "CorruptFileError", "FashionMNIST", "load_digits", "read_idx"]
