"""MkDocs hook: an API page whose module renders no public member fails the build.

mkdocstrings renders a module whose members it does not see as public (for instance
names imported without ``__all__`` or an ``as`` alias) as an empty page, silently. This
hook logs a warning for such a page, which ``mkdocs build --strict`` turns into an error.
"""

from __future__ import annotations

import logging
import re
from typing import Any

log = logging.getLogger("mkdocs.hooks.funcnet")

_MODULE = re.compile(r'class="doc doc-object doc-module"')
_MEMBER = re.compile(r'class="doc doc-object doc-(?:class|function|attribute|type_alias)"')


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    """Warns when a page renders a module with no member."""
    if _MODULE.search(html) and not _MEMBER.search(html):
        log.warning("%s: the API reference renders no public member", page.file.src_uri)
    return html
