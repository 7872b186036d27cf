"""PyTorch eager (CPU), as its users write a training loop; threads = the cores this process
may run on (so ``taskset -c 0`` gives one thread, not two competing for one core)."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.harness import Bench
from benchmarks.others._shared import unsupported
from benchmarks.workloads import cnn as cnn_wl
from benchmarks.workloads import lstm as lstm_wl
from benchmarks.workloads import mlp as mlp_wl
from benchmarks.workloads import transformer as tr_wl


class LSTMClassifier(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.lstm = nn.LSTM(cfg["input"], cfg["hidden"], cfg["layers"], batch_first=True)
        self.fc = nn.Linear(cfg["hidden"], cfg["classes"])

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


class TransformerClassifier(nn.Module):
    def __init__(self, c: dict[str, Any]) -> None:
        super().__init__()
        self.embed = nn.Embedding(c["vocab"], c["d_model"])
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                c["d_model"], c["heads"], c["ff"], dropout=0.0, batch_first=True, norm_first=True
            )
            for _ in range(c["layers"])
        )
        self.fc = nn.Linear(c["d_model"], c["classes"])

    def forward(self, ids):
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        return self.fc(x.mean(dim=1))


def model_and_optimizer(name: str, cfg: dict[str, Any]):
    if name == "mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
        return model, torch.optim.Adam(model.parameters(), lr=mlp_wl.LR)
    if name == "cnn":
        model = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(4096, 128), nn.ReLU(), nn.Linear(128, 10),
        )  # fmt: skip
        opt = torch.optim.SGD(model.parameters(), lr=cnn_wl.LR, momentum=cnn_wl.MOMENTUM)
        return model, opt
    if name == "lstm":
        model = LSTMClassifier(cfg)
        return model, torch.optim.Adam(model.parameters(), lr=lstm_wl.LR)
    if name == "transformer":
        model = TransformerClassifier(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=tr_wl.LR, weight_decay=tr_wl.WEIGHT_DECAY)
        return model, opt
    raise unsupported("torch", name)


def build(name: str, cfg: dict[str, Any], x, y, **extra: Any) -> Bench:
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else ()
    torch.set_num_threads(len(cores) or os.cpu_count() or 1)
    torch.manual_seed(0)
    model, opt = model_and_optimizer(name, cfg)
    if name == "cnn":
        x = x.transpose(0, 3, 1, 2)  # NCHW, PyTorch's layout
    x, y = torch.from_numpy(x.copy()), torch.from_numpy(y.astype("int64"))
    holder = [None]

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        holder[0] = loss

    return Bench(
        step=run, sync=lambda: None, loss=lambda: float(holder[0].item()),
        n_params=sum(p.numel() for p in model.parameters()),
        notes=f"torch {torch.__version__} eager, {torch.get_num_threads()} threads", **extra,
    )  # fmt: skip
