"""Split a model too big for one device across several (tensor/model parallelism, as
Megatron-LM does), combined with data parallelism: a transformer classifier on a 2-D mesh.

Each 8x8 digit (shipped in funcnet) is a sequence of 8 row tokens of 8 pixels: a Linear
embedding and learned positions, two TransformerEncoderLayers, mean-pooling, a Linear
classifier. The devices form a ("data", "model") mesh: every batch is split over "data"
(the DataLoader places it), each encoder layer's feed-forward network over "model"
(Megatron's column- and row-parallel Linears, ``parallel.megatron()``); ``train.fit``
runs unchanged and ``jax.jit`` inserts the communication. It prints the parameter bytes
each device holds and the final loss and test accuracy.

On a CPU the cores become JAX devices (``--cpu-devices N``, else ``JAX_NUM_CPU_DEVICES``
from the environment, else 4); on GPUs the same script uses the GPUs, 2-way model
parallel when their number is even.

    python examples/tensor_parallel.py                  # 4 CPU devices: 2 data x 2 model
    python examples/tensor_parallel.py --cpu-devices 8  # 4 data x 2 model
    python examples/tensor_parallel.py --smoke          # a few steps, for CI
"""

from __future__ import annotations

import argparse
import os
import time

import jax

from funcnet import losses, metrics, nn, optim, parallel, train
from funcnet.data import DataLoader
from funcnet.data.datasets import load_digits
from funcnet.data.transforms import ToFloat


class DigitTransformer(nn.Module):
    """Linear(8, d_model) + positions → TransformerEncoder → mean over tokens → Linear."""

    def __init__(self, d_model: int = 64, nhead: int = 4, dim_feedforward: int = 256) -> None:
        super().__init__()
        self.embed = nn.Linear(8, d_model)
        self.positions = nn.LearnedPositionalEmbedding(8, d_model, batch_first=True)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout=0.1, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, norm=nn.LayerNorm(d_model))
        self.head = nn.Linear(d_model, 10)

    def forward(self, ctx: nn.Context, x: jax.Array) -> jax.Array:
        tokens = x[..., 0]  # (N, 8, 8, 1) images -> (N, 8 rows, 8 pixels)
        h = self.positions(ctx, self.embed(ctx, tokens))
        return self.head(ctx, self.encoder(ctx, h).mean(axis=1))


def device_bytes(tree: object) -> dict[jax.Device, int]:
    """Bytes of ``tree``'s arrays held by each device."""
    held: dict[jax.Device, int] = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            held[shard.device] = held.get(shard.device, 0) + shard.data.nbytes
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-devices", type=int, help="CPU cores as JAX devices")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--smoke", action="store_true", help="a few steps only (CI)")
    args = parser.parse_args()
    cpu_devices = args.cpu_devices or int(os.environ.get("JAX_NUM_CPU_DEVICES", 4))
    parallel.use_cpu_devices(cpu_devices)  # before JAX starts; GPUs stay the default

    count = jax.device_count()
    mesh = parallel.make_mesh((-1, 2 if count % 2 == 0 else 1), ("data", "model"))
    print(f"{count} {jax.devices()[0].platform} devices, mesh {dict(mesh.shape)}")
    to_float = ToFloat(scale=1 / 16)  # the digits' pixels are 0..16
    train_loader = DataLoader(
        load_digits("train"),
        args.batch_size,
        shuffle=True,
        drop_last=True,  # every batch splits evenly over "data"
        transform=to_float,
        device=parallel.batch_sharding(mesh),
    )
    test_loader = DataLoader(load_digits("test"), 256, transform=to_float)

    state = train.TrainState.create(DigitTransformer(), optim.adamw(1e-3), jax.random.key(0))
    whole = sum(leaf.nbytes for leaf in jax.tree.leaves(state.params))
    state = parallel.shard_state(state, mesh, [parallel.megatron(axis="model")])
    held = sorted(set(device_bytes(state.params).values()))
    per_device = " or ".join(f"{b:,}" for b in held)
    print(f"parameters: {whole:,} bytes; each device holds {per_device} ({held[-1] / whole:.0%})")

    start = time.perf_counter()
    state, history = train.fit(
        state,
        train_loader,
        epochs=1 if args.smoke else args.epochs,
        loss_fn=losses.cross_entropy,
        progress="quiet" if args.smoke else "auto",
        max_steps=3 if args.smoke else None,
    )
    results = train.evaluate(state, test_loader, metrics={"accuracy": metrics.accuracy})
    print(
        f"trained {int(state.step)} steps in {time.perf_counter() - start:.1f} s; "
        f"final train loss {history.epochs[-1]['loss']:.4f}; "
        f"test accuracy {results['accuracy']:.4f}"
    )


if __name__ == "__main__":
    main()
