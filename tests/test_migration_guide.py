"""docs/migration-from-pytorch.md runs top to bottom, as a reader would run it.

The page's conventions, which these tests check:

- ```python blocks are funcnet code. They run in order in one namespace
  (``run_page`` of tests/docs/runner.py, whose markers the page may use) and none may use
  torch: the tests pass on .venv312, which has no torch.
- PyTorch code is in ```py blocks whose first line is ``# PyTorch``; funcnet code that
  needs files on disk, a GPU or several processes is in other ```py blocks; shell commands
  are in ```bash blocks. None of these run.
- DistributedDataParallel: the multi-process script is a ```py block and the launcher a
  ```bash block, not run here. After ``parallel.init_distributed()`` (which does nothing in
  one process) that script is the single-process sharded ``fit`` of the DataParallel
  section, which runs; tests/parallel/test_launch.py and test_distributed.py run the
  launcher and several processes.
- The last section, "A pretrained ResNet-18", runs in its own test. It reads
  ``resnet18.safetensors``: the test writes one with ``models.save_weights`` (random values
  in the architecture's shapes), standing in for the file converted from torchvision's
  checkpoint, and feeds smaller images.
"""

from __future__ import annotations

import re
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.docs.runner import run_page

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "migration-from-pytorch.md"
PRETRAINED = "## A pretrained ResNet-18\n"
FENCE = re.compile(r"^```(.*)$", flags=re.MULTILINE)


def _pretrained_section() -> str:
    """The page's last section, "A pretrained ResNet-18", from its heading to the end."""
    _, heading, section = GUIDE.read_text().partition(PRETRAINED)
    assert heading, f"{GUIDE.name} has no {PRETRAINED.strip()!r} section"
    assert "\n## " not in section, "the pretrained section must stay the last one"
    return heading + section


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_page_conventions():
    text = GUIDE.read_text()
    fences = FENCE.findall(text)
    openings = fences[::2]  # every other fence opens a block
    assert all(closing == "" for closing in fences[1::2]), "unbalanced ``` fences"
    assert set(openings) <= {"python", "py", "bash"}, set(openings)
    assert text.count("```py\n# PyTorch\n") >= 25
    for code in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL):
        uncommented = re.sub(r"#.*$", "", code, flags=re.MULTILINE)
        assert not re.search(r"\btorch\b", uncommented), f"a python block uses torch:\n{code}"
    anchors = {_slug(h) for h in re.findall(r"^## (.+)$", text, flags=re.MULTILINE)}
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        assert anchor in anchors, f"no heading for the link #{anchor}"
    for page in re.findall(r"\]\(([\w-]+\.md)(?:#[^)]*)?\)", text):
        assert (GUIDE.parent / page).exists(), f"link to a missing page {page}"


@pytest.mark.one_version
def test_guide_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = run_page(GUIDE, {_pretrained_section(): ""})

    epoch_losses = ns["epoch_losses"]
    assert epoch_losses[-1] < 0.5 * epoch_losses[0]  # the hand-written SGD loop learns
    assert ns["mlp_accuracy"] > 0.9  # chance is 0.1
    assert ns["cnn_accuracy"] > 0.6 and ns["rnn_accuracy"] > 0.6
    assert ns["ae_history"].epochs[-1]["loss"] < ns["ae_history"].epochs[0]["loss"]
    assert ns["codes"].shape == (359, 8)
    assert "(4, 10)" in ns["cifar_model"].summary(ns["images"].astype(np.float32))
    assert "(16, 10)" in ns["attention_net"].summary(ns["rows"](ns["x_test"][:16]))
    assert np.isfinite(float(ns["d_loss"])) and np.isfinite(float(ns["g_loss"]))
    assert ns["sweep"][0.03] < ns["sweep"][0.003]  # too small a rate has not learnt yet
    assert ns["bn_history"].epochs[-1]["val_accuracy"] > 0.8
    assert ns["int8_accuracy"] > 0.8
    assert int(ns["sharded"].step) == int(ns["dp_state"].step) == len(ns["train_loader"])
    assert ns["fp16_history"].steps[-1]["loss_scale"] > 0
    for name in ("mlp.npz", "mlp.safetensors", "mlp.fnx"):
        assert (tmp_path / name).exists()


@pytest.mark.one_version
def test_pretrained_section_runs(tmp_path, monkeypatch):
    from funcnet import models

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(models.resnet18().init, jax.random.key(0))
    weights = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)
    models.save_weights("resnet18.safetensors", *weights)
    page = tmp_path / "pretrained.md"
    page.write_text(_pretrained_section())
    ns = run_page(page, {"(2, 224, 224, 3)": "(2, 64, 64, 3)"})
    assert ns["logits"].shape == (2, 1000)
    assert ns["tuned"].params["fc"]["weight"].shape == (512, 10)
    # the body holds the file's values, not a fresh init
    conv1 = ns["tuned"].params["conv1"]["weight"]
    assert np.array_equal(conv1, weights[0]["conv1"]["weight"])
