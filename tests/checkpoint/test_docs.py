"""The docstring examples and docs/checkpoints.md's code run, and print what they show."""

from __future__ import annotations

import contextlib
import doctest
import io
import re
from pathlib import Path

import pytest

from funcnet.checkpoint import _manager, _restore, _save

DOC = Path(__file__).resolve().parents[2] / "docs" / "checkpoints.md"


@pytest.mark.parametrize("module", [_save, _restore, _manager], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_the_guides_code_runs_and_prints_what_it_shows(tmp_path, monkeypatch):
    """Runs the python blocks in order; a text block right after one is its expected output."""
    text = DOC.read_text()
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    output, end, ran, compared = None, -1, 0, 0
    for block in re.finditer(r"```(\w+)\n(.*?)```", text, flags=re.DOTALL):
        language, code = block.groups()
        if language == "python":
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                exec(compile(code, str(DOC), "exec"), namespace)
            output, end, ran = buffer.getvalue(), block.end(), ran + 1
        elif language == "text" and output is not None and not text[end : block.start()].strip():
            assert output.strip() == code.strip()
            compared += 1
    assert ran >= 6 and compared >= 1
