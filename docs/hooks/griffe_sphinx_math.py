"""Griffe extension: turn the reST markup of the docstrings into what the site renders.

The package's docstrings are Sphinx-style (``:math:`...```, ``.. math::`` blocks,
``:func:`...```); mkdocstrings renders docstring text as Markdown, where those constructs show
up verbatim (backslashes and all). Before rendering, this rewrites

* ``:math:`x``` as ``\\(x\\)`` and a ``.. math::`` block as a ``$$ ... $$`` block (wrapped in
  ``aligned`` when it uses ``&`` or ``\\\\``), both typeset by ``pymdownx.arithmatex`` + KaTeX;
* ``:func:`x```, ``:class:`x``` and the other cross-reference roles as the code span ```x```.

Loaded by the mkdocstrings ``python`` handler (``extensions:`` in mkdocs.yml). Only the text
given to the renderer changes; the Python source is untouched.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_XREF_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|data|mod|obj|exc|const):`~?([^`]+)`")
_MATH_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<first>.*)$")


def _math_blocks(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _MATH_DIRECTIVE.match(lines[i])
        if m is None:
            out.append(lines[i])
            i += 1
            continue
        indent = len(m["indent"].expandtabs())
        body = [m["first"]] if m["first"].strip() else []
        i += 1
        # The directive's content: the following lines indented deeper than the directive
        # (blank lines included), up to the first line that is not.
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            body.append(lines[i].strip())
            i += 1
        while body and not body[-1]:
            body.pop()
        while body and not body[0]:
            body.pop(0)
        tex = "\n".join(body)
        if "&" in tex or "\\\\" in tex:
            tex = "\\begin{aligned}\n" + tex + "\n\\end{aligned}"
        pad = " " * indent
        if out and out[-1].strip():
            out.append("")
        out += [pad + "$$", *(pad + t for t in tex.split("\n")), pad + "$$", ""]
    return "\n".join(out)


def rst_to_markdown(text: str) -> str:
    """The docstring ``text`` with its reST math and cross-reference roles made Markdown."""
    text = _math_blocks(text)
    text = _MATH_ROLE.sub(lambda m: "\\(" + m[1] + "\\)", text)
    return _XREF_ROLE.sub(lambda m: "`" + m[1] + "`", text)


class SphinxMath(griffe.Extension):
    """Rewrite every docstring once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
