"""A griffe extension for the API reference: poller's reST-flavoured docstrings shown as Markdown.

The docstrings are written for reading in the source and in ``help()``: Sphinx roles
(``:class:`~poller.JobResult```), ``::`` before a literal block, and doctest examples. Read as
Markdown, a role would show its ``:class:`` prefix and a ``>>>`` line would become a nested
quotation. This extension changes only the text mkdocstrings renders, never the source:

- a role becomes a code span of its target (``~`` keeps the last name, as Sphinx shows it);
- a paragraph ending in ``::`` ends in ``:`` (the indented block after it stays a code block);
- a run of doctest lines (``>>>``, ``...`` and the output after them) becomes a ``pycon`` block.

mkdocs.yml loads it by path (mkdocstrings' ``extensions`` option); nothing else imports it.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    shorten, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if shorten else target}`"


def _doctests(text: str) -> str:
    """Doctest runs (a ``>>>`` line up to the next blank line) as fenced ``pycon`` blocks."""
    out: list[str] = []
    lines = text.split("\n")
    fenced = False
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            fenced = not fenced
        if fenced or not lines[i].lstrip().startswith(">>>"):
            out.append(lines[i])
            i += 1
            continue
        start = i
        while i < len(lines) and lines[i].strip():
            i += 1
        block = textwrap.dedent("\n".join(lines[start:i]))
        out += ["```pycon", *block.split("\n"), "```"]
    return "\n".join(out)


def as_markdown(text: str) -> str:
    """The docstring ``text`` with its reST markup rewritten as Markdown."""
    text = ROLE.sub(_role, text)
    text = re.sub(r"::$", ":", text, flags=re.MULTILINE)
    return _doctests(text)


class RestAsMarkdown(griffe.Extension):
    """Rewrites each object's docstring once the tree is loaded (rewriting twice changes
    nothing more: the package's own docstring is also seen as a package)."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the docstring of ``obj``, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = as_markdown(obj.docstring.value)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite the top package's docstring, which ``on_object`` does not see."""
        self.on_object(obj=pkg)
