"""docs/models.md runs top to bottom, as a reader would run it."""

from __future__ import annotations

import jax
import pytest

from funcnet import models
from tests.docs.runner import DOCS, run_page


@pytest.mark.one_version
def test_models_page_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    models.save_weights("resnet18.safetensors", *models.resnet18().init(jax.random.key(7)))
    # a torchvision model in memory: its state dict is funcnet's, exported to PyTorch's form
    torchvision_sd = (
        "nn.torch_state_dict(models.resnet18(), *models.resnet18().init(jax.random.key(7)))"
    )
    namespace = run_page(DOCS / "models.md", {"torchvision_model.state_dict()": torchvision_sd})
    out = capsys.readouterr().out
    assert "(2, 10) 11,173,962" in out and "(1, 10)" in out
    assert namespace["model"].num_classes == 10
