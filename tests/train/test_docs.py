"""docs/quickstart.md and docs/training.md run top to bottom, as a reader would run them."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def run_python_blocks(path: Path, replace: dict[str, str] | None = None) -> dict:
    """Executes a page's python blocks in order in one namespace; returns the namespace."""
    text = path.read_text()
    for old, new in (replace or {}).items():
        assert old in text, f"{path.name} no longer holds {old!r}"
        text = text.replace(old, new)
    namespace: dict = {}
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    for code in blocks:
        exec(compile(code, str(path), "exec"), namespace)
    assert blocks
    return namespace


def test_quickstart_runs_top_to_bottom_and_again(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    first = run_python_blocks(DOCS / "quickstart.md")
    assert first["history"].epochs[-1]["val_accuracy"] > 0.9
    # a second run in the same directory (its checkpoints are there): fewer epochs suffice
    second = run_python_blocks(DOCS / "quickstart.md", {"epochs=40": "epochs=1"})
    assert len(second["history"].epochs) == 1
    assert "accuracy" in capsys.readouterr().out


def test_training_guide_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = run_python_blocks(DOCS / "training.md")
    assert namespace["multi"].step > 0 and namespace["g"].step == namespace["d"].step
