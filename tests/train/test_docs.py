"""docs/quickstart.md and docs/training.md run top to bottom, as a reader would run them."""

from __future__ import annotations

from tests.docs.runner import DOCS, run_page


def test_quickstart_runs_top_to_bottom_and_again(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    first = run_page(DOCS / "quickstart.md")
    assert first["history"].epochs[-1]["val_accuracy"] > 0.9
    # a second run in the same directory (its checkpoints are there): fewer epochs suffice
    second = run_page(DOCS / "quickstart.md", {"epochs=40": "epochs=1"})
    assert len(second["history"].epochs) == 1
    assert "accuracy" in capsys.readouterr().out


def test_training_guide_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = run_page(DOCS / "training.md")
    assert namespace["multi"].step > 0 and namespace["g"].step == namespace["d"].step
