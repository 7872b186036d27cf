"""Griffe extension: Sphinx cross-reference roles in docstrings become API links.

funcnet's docstrings are Google style but cross-reference with Sphinx roles
(``:func:`conv2d```, ``:class:`~funcnet.data.DataLoader```), which mkdocstrings does not
read. This extension rewrites each role into a link to the object it names, resolved in
the docstring's own scope as Python would; a name that does not resolve stays code.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):`(?P<tilde>~?)(?P<name>[\w.]+)`")


def _resolve(obj: griffe.Object, name: str) -> str | None:
    """The full path that ``name`` denotes in ``obj``'s scope, or None."""
    if name.startswith("funcnet."):
        return name
    head, _, rest = name.partition(".")
    for scope in (obj, *_parents(obj)):
        try:
            path = scope.resolve(head)
        except (griffe.NameResolutionError, AttributeError, KeyError):
            continue
        return f"{path}.{rest}" if rest else path
    return None


def _parents(obj: griffe.Object) -> list[griffe.Object]:
    parents = []
    while obj.parent is not None:
        obj = obj.parent
        parents.append(obj)
    return parents


def _rewrite(obj: griffe.Object, text: str) -> str:
    def link(match: re.Match[str]) -> str:
        name = match["name"]
        shown = name.rsplit(".", 1)[-1] if match["tilde"] else name
        path = _resolve(obj, name)
        if path is None:
            return f"`{shown}`"
        return f'<autoref identifier="{html.escape(path)}" optional><code>{shown}</code></autoref>'

    return _ROLE.sub(link, text)


class SphinxRoles(griffe.Extension):
    """Rewrites ``:func:`x```-style roles in every docstring of the loaded package."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrites the object's docstring, once the whole package is loaded."""
        if obj.is_alias or obj.docstring is None or ":`" not in obj.docstring.value:
            return
        obj.docstring.value = _rewrite(obj, obj.docstring.value)
