"""Pruning and int8 weight quantisation: ``torch.nn.utils.prune`` and
``torch.ao.quantization``'s weight half, on plain parameter trees.

``prune(params, sparsity)`` returns the pruned parameters and their masks;
``keep_pruned(masks)`` is the optimizer transform that keeps pruned entries at exactly
zero while fine-tuning; ``quantize(params)`` stores weights as int8 with a float32 scale
per output channel and ``dequantize(qparams)``, called inside the jitted apply, turns
them back into float32. ``sparsity_report`` and ``size_report`` print what was done.
See docs/compression.md.
"""

from funcnet.compress._keep_pruned import KeepPrunedState as KeepPrunedState
from funcnet.compress._keep_pruned import keep_pruned as keep_pruned
from funcnet.compress._prune import Masks as Masks
from funcnet.compress._prune import prune as prune
from funcnet.compress._quantize import QuantizedWeight as QuantizedWeight
from funcnet.compress._quantize import dequantize as dequantize
from funcnet.compress._quantize import is_quantized as is_quantized
from funcnet.compress._quantize import quantize as quantize
from funcnet.compress._report import Report as Report
from funcnet.compress._report import size_report as size_report
from funcnet.compress._report import sparsity_report as sparsity_report
from funcnet.compress._select import WEIGHTS as WEIGHTS

__all__ = [
    "WEIGHTS",
    "KeepPrunedState",
    "Masks",
    "QuantizedWeight",
    "Report",
    "dequantize",
    "is_quantized",
    "keep_pruned",
    "prune",
    "quantize",
    "size_report",
    "sparsity_report",
]
