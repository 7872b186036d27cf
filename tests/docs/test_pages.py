"""Every docs page's ```python blocks run, page by page (conventions: tests/docs/runner.py).

Each page runs in a fresh namespace and a temporary working directory. Some pages are
run differently:

- ``RUN_ELSEWHERE``: pages whose own tests also check what the page prints or computes
  run there, and only there.
- ``FRESH_PROCESS``: pages that set the number of CPU devices, which only a Python
  process that has not started JAX can do, run in a new process.
- ``SMALLER``: substitutions that keep a page's slow part short (a benchmark's
  repetitions); the code run is the page's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.runner import DOCS, parse_blocks, run_page

ROOT = DOCS.parent
PAGES = sorted(page.relative_to(DOCS).as_posix() for page in DOCS.rglob("*.md"))
RUN_ELSEWHERE = {  # pages whose own tests also check what the page prints or computes
    "checkpoints.md": "tests/checkpoint/test_docs.py",
    "compression.md": "tests/test_compress.py",
    "export.md": "tests/test_export.py",
    "layers-conv-pool.md": "tests/nn/test_conv.py",
    "layers-resample.md": "tests/nn/test_resample.py",
    "losses-and-metrics.md": "tests/test_metrics.py",
    "migration-from-pytorch.md": "tests/test_migration_guide.py",
    "mixed-precision.md": "tests/test_mixed_precision.py",
    "models.md": "tests/models/test_docs.py",
    "optim.md": "tests/optim/test_docs.py",
    "pytorch-weights.md": "tests/nn/test_torch_weights.py",
    "quickstart.md": "tests/train/test_docs.py",
    "training.md": "tests/train/test_docs.py",
}
FRESH_PROCESS = {"parallel.md"}
SMALLER = {
    "layers.md": {  # the memory table's models, as tests/nn/test_remat.py makes them
        "depth, batch, length, width = 4, 8, 128, 256": "depth, batch, length, width = 2, 2, 8, 16",
        '(False, True, "dots_saveable", "dots_with_no_batch_dims_saveable")': "(False, True)",
    },
    "sequence.md": {
        "for _ in range(9):": "for _ in range(1):",
        "for _ in range(20):": "for _ in range(2):",
    },
}
LANGUAGES = {"python", "py", "bash", "text"}
_CHILD = """\
import sys
from pathlib import Path
import tests.conftest  # the suite's compilation cache and flags
from tests.docs.runner import run_page
run_page(Path(sys.argv[1]))
"""


def _run_in_fresh_process(page: Path, cwd: Path) -> None:
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", _CHILD, str(page)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.parametrize("name", [page for page in PAGES if page not in RUN_ELSEWHERE])
def test_page_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if name in FRESH_PROCESS:
        _run_in_fresh_process(DOCS / name, tmp_path)
        return
    monkeypatch.chdir(tmp_path)
    run_page(DOCS / name, SMALLER.get(name))


@pytest.mark.parametrize("name", sorted(RUN_ELSEWHERE))
def test_page_runs_in_its_own_test(name: str) -> None:
    test = (ROOT / RUN_ELSEWHERE[name]).read_text()
    assert name in test, f"{RUN_ELSEWHERE[name]} does not run {name}"
    if "run_page" not in test:  # its own runner, which knows no markers
        blocks = parse_blocks((DOCS / name).read_text(), name)
        marked = [b.line for b in blocks if b.skip or b.requires or b.raises]
        assert not marked, f"{name}: markers at lines {marked}, which {RUN_ELSEWHERE[name]} ignores"


@pytest.mark.parametrize("name", PAGES)
def test_page_fences(name: str) -> None:
    """Markers parse, and every block names its language (an untagged block never runs)."""
    text = (DOCS / name).read_text()
    parse_blocks(text, name)
    openings = [line.strip() for line in text.splitlines() if line.lstrip().startswith("```")]
    languages = {fence.removeprefix("```") for fence in openings[::2]}
    assert languages <= LANGUAGES, f"{name}: fences other than {sorted(LANGUAGES)}: {languages}"
