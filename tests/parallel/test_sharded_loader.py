"""A short last batch on a sharded DataLoader trains with fit, without drop_last or
pad_last (4 simulated CPU devices, in a subprocess)."""

import textwrap

from tests._devices import run_with_cpu_devices

SCRIPT = textwrap.dedent(
    """
    import logging

    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from funcnet import losses, metrics, optim, train
    from funcnet.data import ArrayDataset, DataLoader
    from tests.train._models import MLP, blobs

    compiled = []


    class Compilations(logging.Handler):
        def emit(self, record):
            message = record.getMessage()
            if message.startswith("Compiling jit("):
                compiled.append(message[len("Compiling jit(") :].split(")")[0])


    logging.getLogger("jax").addHandler(Compilations())
    jax.config.update("jax_log_compiles", True)

    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    ds = ArrayDataset(*blobs(90))  # batches of 32, 32, 26: 26 rows do not split over 4 devices
    state = train.TrainState.create(MLP(), optim.adam(1e-2), jax.random.key(0))
    replicated = jax.device_put(state, NamedSharding(mesh, P()))
    masked_loss = losses.cross_entropy
    plain_loss = lambda out, y: losses.cross_entropy(out, y)  # takes no mask=


    def fit(state, device, loss_fn):
        loader = DataLoader(ds, 32, shuffle=True, device=device)
        evaluation = DataLoader(ds, 32, device=device)
        return train.fit(
            state, loader, epochs=2, loss_fn=loss_fn, metrics={"acc": metrics.accuracy},
            eval_loader=evaluation, progress="quiet",
        )


    *_, (x, y) = DataLoader(ds, 32, device=sharding)  # neither drop_last nor pad_last
    assert x.shape == (26, 8) and x.sharding.is_fully_replicated, x.sharding
    assert len(x.sharding.device_set) == 4
    np.testing.assert_array_equal(np.asarray(y), ds.arrays[1][64:])

    compiled.clear()
    masked, masked_history = fit(replicated, sharding, masked_loss)
    # The short batch is padded, then put back with the loader's shardings (the mask too):
    # one program for the train step and one for the eval step, for every batch.
    assert compiled.count("step") == 1 and compiled.count("eval_step") == 1, compiled
    plain, plain_history = fit(replicated, sharding, plain_loss)
    single, single_history = fit(state, None, masked_loss)
    single_plain, _ = fit(state, None, plain_loss)
    assert int(masked.step) == int(plain.step) == 6

    # Float32 on both sides: the 4-device step sums the gradient in another order than one
    # device does, which changes the last bits (measured: 3e-8 after 6 Adam steps).
    close = lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    jax.tree.map(close, masked.params, single.params)
    jax.tree.map(close, plain.params, single_plain.params)
    jax.tree.map(close, plain.params, masked.params)  # padding + mask == the plain mean
    for sharded_record, single_record in zip(masked_history.epochs, single_history.epochs):
        for name in ("loss", "acc", "val_loss", "val_acc"):
            close(sharded_record[name], single_record[name])
    print("ok")
    """
)


def test_short_last_batch_on_a_sharded_loader_trains_with_fit():
    assert run_with_cpu_devices(SCRIPT).strip().endswith("ok")
