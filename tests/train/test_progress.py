"""Progress: mode choice (Jupyter, terminal, file), log throttling, bar width, logging."""

import io
import logging
import sys
import types
import warnings

import pytest
import tqdm.std

from funcnet.train import _progress
from funcnet.train._progress import LOGGER_NAME, Progress, make_progress

LOGS = {"loss": 0.123456, "accuracy": 0.9123, "top5_accuracy": 0.99, "samples/s": 12345}
RECORD = {
    "epoch": 0,
    "loss": 0.123456,
    "accuracy": 0.9123,
    "top5_accuracy": 0.99,
    "val_loss": 0.2,
    "val_accuracy": 0.88,
    "lr": 0.001,
    "time": 12.34,
    "samples_per_s": 5432.1,
}


class Clock:
    """A fake monotonic clock that the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_epoch(progress, epoch, total, fetches, clock=None, seconds=0.0, initial=0):
    """Drives ``progress`` as fit does through one epoch of ``fetches`` equal fetches."""
    progress.start_epoch(epoch, total, initial)
    per_fetch = (total - initial) // fetches if total else 5
    for i in range(1, fetches + 1):
        if clock is not None:
            clock.now += seconds
        progress.update(epoch, initial + i * per_fetch, per_fetch, LOGS)
    progress.end_epoch(epoch, {**RECORD, "epoch": epoch})


def frames(text):
    """The bar's frames (tqdm redraws a line after each carriage return)."""
    return [f for f in text.replace("\n", "\r").split("\r") if "|" in f]


def test_make_progress_takes_a_mode_or_an_instance():
    mine = Progress("quiet")
    assert make_progress(mine) is mine
    assert make_progress("log").mode == "log"
    with pytest.raises(ValueError, match="progress must be one of"):
        make_progress("verbose")
    with pytest.raises(TypeError, match="funcnet.train.Progress"):
        make_progress(1)


def test_jupyter_is_detected_from_an_imported_ipython_only(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not _progress._in_jupyter()
    assert "IPython" not in sys.modules  # the check imported nothing
    ipython = types.ModuleType("IPython")
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    for shell, expected in [
        (types.SimpleNamespace(kernel=object()), True),  # ZMQInteractiveShell
        (types.SimpleNamespace(), False),  # terminal IPython
        (None, False),  # IPython imported, no shell running
    ]:
        ipython.get_ipython = lambda shell=shell: shell
        assert _progress._in_jupyter() is expected


def test_auto_in_jupyter_uses_the_notebook_bar(monkeypatch, capsys):
    created = []

    class NotebookBar(tqdm.std.tqdm):
        def __init__(self, **kwargs):
            created.append(kwargs)
            super().__init__(file=io.StringIO(), **kwargs)

    monkeypatch.setattr(_progress, "_in_jupyter", lambda: True)
    monkeypatch.setitem(sys.modules, "ipywidgets", types.ModuleType("ipywidgets"))
    monkeypatch.setitem(sys.modules, "tqdm.notebook", types.SimpleNamespace(tqdm=NotebookBar))
    progress = Progress()
    progress.begin(2)
    run_epoch(progress, 0, 20, 2)
    assert progress.mode == "bar" and [c["desc"] for c in created] == ["epoch 1/2"]
    out, err = capsys.readouterr()
    assert err == "" and out.startswith("epoch 1/2 done  loss 0.1235")


def test_auto_in_jupyter_without_ipywidgets_draws_a_text_bar_without_warning(monkeypatch, capsys):
    def no_notebook_bar(**kwargs):
        raise AssertionError("tqdm.notebook needs ipywidgets")

    monkeypatch.setattr(_progress, "_in_jupyter", lambda: True)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # not installed
    monkeypatch.setitem(sys.modules, "tqdm.notebook", types.SimpleNamespace(tqdm=no_notebook_bar))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        progress = Progress()
        progress.begin(1)
        run_epoch(progress, 0, 20, 2)
    err = capsys.readouterr().err
    assert progress.mode == "bar" and any("20/20" in f for f in frames(err))
    assert "epoch 1/1 done" in err


def test_auto_writes_lines_to_a_file_that_is_no_terminal(monkeypatch):
    monkeypatch.setattr(_progress, "_in_jupyter", lambda: True)  # file= wins over Jupyter
    assert Progress(file=io.StringIO()).mode == "log"


def test_log_lines_are_throttled_by_line_every():
    out, clock = io.StringIO(), Clock()
    progress = Progress("log", file=out, clock=clock)  # line_every=10 s by default
    progress.begin(2)
    for epoch in range(2):  # two quick epochs: 75 fetches in 5 s
        run_epoch(progress, epoch, 75, 75, clock, seconds=5 / 150)
    assert out.getvalue().splitlines() == [
        "epoch 1/2 done  loss 0.1235  accuracy 0.9123  top5_accuracy 0.99  val_loss 0.2  "
        "val_accuracy 0.88  lr 0.001  time 12.3s  samples/s 5432",
        "epoch 2/2 done  loss 0.1235  accuracy 0.9123  top5_accuracy 0.99  val_loss 0.2  "
        "val_accuracy 0.88  lr 0.001  time 12.3s  samples/s 5432",
    ]


def test_a_long_epoch_prints_a_line_every_line_every_seconds():
    out, clock = io.StringIO(), Clock()
    progress = Progress("log", file=out, line_every=10.0, clock=clock)
    progress.begin(1)
    run_epoch(progress, 0, 25, 25, clock, seconds=1.0)  # a fetch a second for 25 s
    lines = out.getvalue().splitlines()
    assert [line.split("  ")[1] for line in lines[:-1]] == ["batch 10/25", "batch 20/25"]
    assert (
        lines[0]
        == "epoch 1/1  batch 10/25  loss 0.1235  accuracy 0.9123  top5_accuracy 0.99  samples/s 12345"
    )
    assert lines[-1].startswith("epoch 1/1 done")


def test_line_every_zero_prints_every_fetch_and_a_loader_without_len():
    out = io.StringIO()
    progress = Progress("log", file=out, line_every=0.0, clock=Clock())
    progress.begin(3)
    run_epoch(progress, 0, None, 3)
    assert [line.split("  ")[1] for line in out.getvalue().splitlines()] == [
        "batch 5",
        "batch 10",
        "batch 15",
        "loss 0.1235",
    ]


@pytest.mark.parametrize(
    "ncols, shown", [(80, ["loss"]), (120, ["loss", "accuracy", "top5_accuracy"])]
)
def test_the_bar_keeps_its_width_and_the_epoch_line_every_metric(monkeypatch, ncols, shown):
    clock = Clock()
    monkeypatch.setattr(tqdm.std, "time", clock)  # tqdm's rate and times
    out = io.StringIO()
    progress = Progress("bar", file=out, ncols=ncols)
    progress.begin(10)
    run_epoch(progress, 0, 469, 10, clock, seconds=2.0)  # 469 batches, 46 per fetch
    drawn = frames(out.getvalue())
    assert len(drawn) == 11 and all(len(f) <= ncols for f in drawn)
    assert all(len(f.split("|")[1]) >= 10 for f in drawn)  # the bar itself
    for frame in drawn[1:]:
        postfix = frame.split("batch/s, ")[1].rstrip("]")
        assert [item.split("=")[0] for item in postfix.split(", ")] == shown
    assert "samples/s" not in "".join(drawn)  # tqdm shows its own rate
    line = out.getvalue().splitlines()[-1]
    assert line == (
        "epoch 1/10 done  loss 0.1235  accuracy 0.9123  top5_accuracy 0.99  val_loss 0.2  "
        "val_accuracy 0.88  lr 0.001  time 12.3s  samples/s 5432"
    )


def test_a_resumed_epoch_starts_its_bar_where_it_stopped():
    out = io.StringIO()
    progress = Progress("bar", file=out)
    progress.begin(1)
    run_epoch(progress, 0, 10, 2, initial=4)
    assert [f.split("| ")[1].split(" ")[0] for f in frames(out.getvalue())] == [
        "4/10",
        "7/10",
        "10/10",
    ]


@pytest.mark.parametrize("mode", ["bar", "log"])
def test_file_receives_all_the_output(mode, capsys):
    out = io.StringIO()
    progress = Progress(mode, file=out, line_every=0.0)
    progress.begin(1)
    run_epoch(progress, 0, 10, 2)
    assert capsys.readouterr() == ("", "")
    assert "epoch 1/1" in out.getvalue() and "epoch 1/1 done" in out.getvalue()


def test_logging_mode_sends_the_lines_to_the_funcnet_train_logger(caplog, capsys):
    clock = Clock()
    progress = Progress("logging", line_every=10.0, clock=clock)
    progress.begin(1)
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        run_epoch(progress, 0, 25, 25, clock, seconds=1.0)
    assert [(r.name, r.levelno) for r in caplog.records] == [(LOGGER_NAME, logging.INFO)] * 3
    assert [r.getMessage().split("  ")[1] for r in caplog.records] == [
        "batch 10/25",
        "batch 20/25",
        "loss 0.1235",
    ]
    assert capsys.readouterr() == ("", "")


def test_quiet_shows_nothing(capsys, caplog):
    progress = Progress("quiet")
    progress.begin(1)
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        run_epoch(progress, 0, 10, 2)
    assert capsys.readouterr() == ("", "") and not caplog.records


def test_close_is_idempotent_and_begin_starts_a_new_fit():
    out = io.StringIO()
    progress = Progress("bar", file=out)
    progress.begin(2)
    progress.start_epoch(0, 10, 0)
    progress.close()  # fit failed mid-epoch
    progress.close()
    progress.begin(3)  # the same Progress, another fit
    run_epoch(progress, 0, 10, 2)
    assert out.getvalue().splitlines()[-1].startswith("epoch 1/3 done")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="line_every"):
        Progress("log", line_every=-1)
