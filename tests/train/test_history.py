"""History: Keras' dict view and plot (a Figure, the backend left alone)."""

import sys

import pytest

from funcnet.train._history import History


@pytest.fixture
def history():
    record = {"lr": 0.1, "time": 1.0, "samples_per_s": 10.0}
    return History(
        epochs=[
            {
                "epoch": 0,
                "loss": 1.0,
                "accuracy": 0.5,
                "val_loss": 1.2,
                "val_accuracy": 0.4,
                **record,
            },
            {
                "epoch": 1,
                "loss": 0.8,
                "accuracy": 0.7,
                "val_loss": 0.9,
                "val_accuracy": 0.6,
                **record,
            },
        ],
        steps=[
            {"step": s, "epoch": (s - 1) // 2, "loss": loss}
            for s, loss in enumerate([1.5, 1.1, 0.9, 0.7], start=1)
        ],
    )


def lines(axes):
    return {
        line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
        for line in axes.get_lines()
    }


def test_plot_returns_a_figure_and_leaves_the_backend_and_pyplot_alone(history):
    matplotlib = pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # any backend but Agg: plot must not switch it
    try:
        import matplotlib.pyplot as plt

        figures = plt.get_fignums()
        fig = history.plot()
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == figures  # not registered with pyplot
    finally:
        matplotlib.use(before)
    assert isinstance(fig, Figure)


def test_plot_draws_the_recorded_values(history):
    pytest.importorskip("matplotlib")
    fig = history.plot()
    loss_axes, metric_axes = fig.axes
    assert lines(loss_axes) == {
        "loss (steps)": ([0.5, 1.0, 1.5, 2.0], [1.5, 1.1, 0.9, 0.7]),
        "loss": ([1, 2], [1.0, 0.8]),
        "val_loss": ([1, 2], [1.2, 0.9]),
    }
    assert lines(metric_axes) == {
        "accuracy": ([1, 2], [0.5, 0.7]),
        "val_accuracy": ([1, 2], [0.4, 0.6]),
    }


def test_plot_keys_chooses_the_series(history):
    pytest.importorskip("matplotlib")
    fig = history.plot(keys=["val_loss"])
    assert len(fig.axes) == 1 and set(lines(fig.axes[0])) == {"loss (steps)", "val_loss"}
    with pytest.raises(KeyError, match="top5"):
        history.plot(keys=["top5"])


def test_plot_saves_to_a_path(history, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    fig = history.plot(path)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert fig.axes  # the figure is returned as well


def test_plot_figure_has_a_png_repr_for_jupyter(history):
    pytest.importorskip("matplotlib")
    # IPython shows a Figure as PNG only once pyplot has loaded the inline backend;
    # the figure's own _repr_png_ shows it in a notebook that never imported pyplot.
    assert history.plot()._repr_png_().startswith(b"\x89PNG\r\n\x1a\n")


def test_plot_without_records_is_an_error():
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="no epoch"):
        History().plot()


def test_plot_without_matplotlib_names_the_extra(history, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "funcnet\[plot\]"'):
        history.plot()
