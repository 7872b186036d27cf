"""The docs runner: its markers, its errors, and what it runs."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from tests.docs.runner import MAX_SKIPS, parse_blocks, run_page


def _page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text)
    return page


def test_blocks_run_in_order_in_one_namespace(tmp_path):
    page = _page(tmp_path, "# T\n\n```python\nx = 1\n```\n\ntext\n\n```python\ny = x + 1\n```\n")
    assert run_page(page)["y"] == 2


def test_only_python_blocks_run_and_indented_fences_are_dedented(tmp_path):
    text = (
        "```py\nraise SystemExit\n```\n```bash\nexit 1\n```\n```text\nout\n```\n"
        "- item\n\n  ```python\n  if True:\n      z = 3\n  ```\n"
    )
    assert run_page(_page(tmp_path, text))["z"] == 3


def test_a_failure_names_the_page_line_and_exception(tmp_path):
    page = _page(tmp_path, "intro\n\n```python\nx = 1\n\nundefined_name\n```\n")
    with pytest.raises(AssertionError, match=r"page\.md, block at line 3: NameError") as info:
        run_page(page)
    cause = info.value.__cause__
    frame = traceback.extract_tb(cause.__traceback__)[-1]
    assert (frame.filename, frame.lineno) == (str(page), 6)  # the page's own line


def test_skip_marker(tmp_path):
    text = "<!-- skip: needs a GPU -->\n```python\nraise RuntimeError\n```\n```python\nx = 1\n```\n"
    assert parse_blocks(text)[0].skip == "needs a GPU"
    assert run_page(_page(tmp_path, text))["x"] == 1


def test_requires_marker_skips_the_rest_of_its_section(tmp_path):
    text = (
        "```python\nx = 1\n```\n## Optional\n<!-- requires: json no_such_package_xyz -->\n"
        "```python\ny = 2\n```\n```python\nraise RuntimeError\n```\n"
        "## Next\n```python\nz = x + 1\n```\n"
    )
    blocks = parse_blocks(text)
    assert blocks[1].requires == ("json", "no_such_package_xyz")
    assert [b.section for b in blocks] == [0, 1, 1, 2]
    namespace = run_page(_page(tmp_path, text))
    assert namespace["z"] == 2 and "y" not in namespace  # the section skipped, the page went on


def test_requires_marker_runs_when_installed(tmp_path):
    text = "<!-- requires: json -->\n```python\nimport json\nx = json.dumps(1)\n```\n"
    assert run_page(_page(tmp_path, text))["x"] == "1"


def test_raises_marker(tmp_path):
    expected = "<!-- raises: LookupError -->\n```python\n{}['a']\n```\n```python\nx = 1\n```\n"
    assert run_page(_page(tmp_path, expected))["x"] == 1  # KeyError is a LookupError
    nothing = "<!-- raises: KeyError -->\n```python\nx = 1\n```\n"
    with pytest.raises(AssertionError, match="line 2: expected KeyError, nothing was raised"):
        run_page(_page(tmp_path, nothing))
    other = "<!-- raises: KeyError -->\n```python\n1 / 0\n```\n"
    with pytest.raises(AssertionError, match="ZeroDivisionError"):
        run_page(_page(tmp_path, other))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- skip: -->\n```python\n```\n", "needs a value"),
        ("<!-- skipped: why -->\n```python\n```\n", "unknown marker"),
        ("<!-- skip: why -->\n\n```python\n```\n", "not just before"),
        ("<!-- skip: why -->\n```text\n```\n", "before a ```text fence"),
        ("```python\nx = 1\n", "never closed"),
        ("<!-- skip: why -->\n```python\n```\n" * (MAX_SKIPS + 1), "skipped blocks"),
    ],
)
def test_bad_pages_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_blocks(text)


def test_replacements_must_match(tmp_path):
    page = _page(tmp_path, "```python\nn = 100\n```\n")
    assert run_page(page, {"n = 100": "n = 2"})["n"] == 2
    with pytest.raises(AssertionError, match="no longer holds"):
        run_page(page, {"n = 5": "n = 2"})


def test_classes_of_a_page_are_dataclasses_and_picklable(tmp_path):
    text = (
        "```python\nimport dataclasses, pickle\n\n@dataclasses.dataclass\nclass P:\n"
        "    x: int = 1\n\np = pickle.loads(pickle.dumps(P(2)))\n```\n"
    )
    assert run_page(_page(tmp_path, text))["p"].x == 2
