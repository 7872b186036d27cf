"""Runs the ```python blocks of a docs page in order, as a reader would.

The conventions of docs/*.md that this runner enforces:

- A page's ```python blocks run top to bottom in one namespace: the first block imports
  what the page uses and later blocks use only names defined earlier on the page. Blocks
  fenced otherwise do not run: ```py for PyTorch code or code that needs files, devices
  or processes a test cannot provide, ```bash for shell commands, ```text for output.
- A fence may be indented (a block inside a list item); its indentation is removed.
- A marker, an HTML comment on the line just before a ```python fence (the site does
  not show it), changes how that block runs:

  - ``<!-- skip: REASON -->``: the block does not run. The reason is required, and a
    page has few of these (a multi-process launch, a download).
  - ``<!-- requires: flax equinox -->``: the block needs these importable packages;
    when one is missing, the block and the rest of its section (up to the next Markdown
    heading) do not run, and the page goes on. So give each optional library's section
    its own marker, and let no later section use names such a section defines.
  - ``<!-- raises: ShapeError -->``: the block must raise an exception of that class
    name (or one derived from it); the page goes on after it.

- A block that fails stops the page with an ``AssertionError`` naming the page, the
  fence's line and the exception; the traceback's lines are the page's lines.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import sys
import types
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
MAX_SKIPS = 3  # a page with more skipped blocks than this is not tested: rewrite it

_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>\S*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<kind>[a-z]+):(?P<value>.*?)-->\s*$")
_KINDS = ("skip", "requires", "raises")


@dataclasses.dataclass(frozen=True)
class Block:
    """One ```python block of a page.

    Attributes:
        line: 1-based line of the opening fence in the page.
        code: the block's source, its fence's indentation removed.
        skip: the reason given by a ``skip`` marker, or None.
        requires: the packages named by a ``requires`` marker.
        raises: the exception class named by a ``raises`` marker, or None.
        section: how many Markdown headings precede the block.
    """

    line: int
    code: str
    skip: str | None = None
    requires: tuple[str, ...] = ()
    raises: str | None = None
    section: int = 0


def _marker(page: str, line: int, text: str) -> dict[str, object]:
    """The ``Block`` fields that the marker comment ``text`` (page line ``line``) sets."""
    found = _MARKER.match(text)
    if found is None:
        return {}
    kind, value = found["kind"], found["value"].strip()
    if kind not in _KINDS:
        raise ValueError(f"{page}:{line}: unknown marker {kind!r}; known: {_KINDS}")
    if not value:
        raise ValueError(f"{page}:{line}: the {kind!r} marker needs a value")
    if kind == "requires":
        return {"requires": tuple(value.split())}
    return {kind: value}


def parse_blocks(text: str, page: str = "<page>") -> list[Block]:
    """The ```python blocks of a Markdown page, in order.

    Args:
        text: the page's Markdown.
        page: the page's name, for error messages.

    Returns:
        One ``Block`` per ```python fence, markers applied.

    Raises:
        ValueError: an unclosed fence, a marker that is unknown, has no value or precedes
            no ```python fence, or more than ``MAX_SKIPS`` skipped blocks.
    """
    lines = text.splitlines()
    blocks, pending, index, section = [], {}, 0, 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            section += lines[index].startswith("#")
            if pending:
                raise ValueError(f"{page}:{index}: a marker not just before a ``` fence")
            pending = _marker(page, index + 1, lines[index])
            index += 1
            continue
        closing = f"{fence['indent']}```"
        end = next((j for j in range(index + 1, len(lines)) if lines[j] == closing), None)
        if end is None:
            raise ValueError(f"{page}:{index + 1}: the ``` fence is never closed")
        if fence["lang"] == "python":
            body = [line.removeprefix(fence["indent"]) for line in lines[index + 1 : end]]
            blocks.append(Block(index + 1, "\n".join(body) + "\n", section=section, **pending))
        elif pending:
            raise ValueError(f"{page}:{index}: a marker before a ```{fence['lang']} fence")
        pending, index = {}, end + 1
    if sum(block.skip is not None for block in blocks) > MAX_SKIPS:
        raise ValueError(f"{page}: more than {MAX_SKIPS} skipped blocks")
    return blocks


def _importable(package: str) -> bool:
    """Whether ``package`` (dotted names too) imports."""
    try:
        importlib.import_module(package)
    except ImportError:
        return False
    return True


def _raised(error: BaseException, name: str) -> bool:
    """Whether ``error`` is an instance of a class called ``name``."""
    return any(cls.__name__ == name for cls in type(error).__mro__)


def _run_block(block: Block, page: Path, namespace: dict) -> None:
    """Executes one block in ``namespace``; raises AssertionError naming its line."""
    # Leading newlines put the block at its own lines of the page in tracebacks.
    code = compile("\n" * block.line + block.code, str(page), "exec")
    where = f"{page.name}, block at line {block.line}"
    try:
        exec(code, namespace)
    except Exception as error:
        if block.raises is not None and _raised(error, block.raises):
            return
        raise AssertionError(f"{where}: {type(error).__name__}: {error}") from error
    if block.raises is not None:
        raise AssertionError(f"{where}: expected {block.raises}, nothing was raised")


def run_page(page: Path, replace: dict[str, str] | None = None) -> dict:
    """Runs a page's ```python blocks in order in one namespace.

    Run it in a temporary working directory: blocks write files.

    Args:
        page: the Markdown file.
        replace: ``{old: new}`` substitutions made in the page's text first (a test's
            stand-in for a download, smaller sizes); each ``old`` must occur.

    Returns:
        The namespace after the last block, for a test's assertions.

    Raises:
        AssertionError: a block failed, or a ``raises`` block raised nothing.
    """
    text = page.read_text()
    for old, new in (replace or {}).items():
        assert old in text, f"{page.name} no longer holds {old!r}"
        text = text.replace(old, new)
    blocks = parse_blocks(text, page.name)
    # A real module, so that dataclasses and pickle find the classes a page defines.
    module = types.ModuleType("docs_" + re.sub(r"\W", "_", page.stem))
    sys.modules[module.__name__] = module
    missing: set[int] = set()  # the sections a missing package turned off
    try:
        for block in blocks:
            if block.skip is not None or block.section in missing:
                continue
            if not all(map(_importable, block.requires)):
                missing.add(block.section)
                continue
            _run_block(block, page, module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module.__dict__
