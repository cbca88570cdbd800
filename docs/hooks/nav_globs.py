"""MkDocs hook: fill nav sections listed in ``extra.nav_globs`` with the pages that exist.

Several people write pages under ``docs/adapters/`` and ``docs/conformance/``; listing them by
glob keeps the nav complete without editing mkdocs.yml for every page. A section whose globs
match nothing is dropped (so the build does not fail on an empty section). Page titles come
from each page's first heading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def on_config(config: Any) -> Any:
    globs: dict[str, list[str]] = (config.get("extra") or {}).get("nav_globs", {})
    docs = Path(config["docs_dir"])
    nav = []
    for item in config["nav"] or []:
        if isinstance(item, dict) and len(item) == 1:
            (title, value), = item.items()
            if title in globs and value in ([], None):
                pages: list[str] = []
                for pattern in globs[title]:
                    pages += sorted(p.relative_to(docs).as_posix() for p in docs.glob(pattern))
                if pages:
                    index = [p for p in pages if p.endswith("/index.md")]
                    nav.append({title: index + [p for p in pages if p not in index]})
                continue
        nav.append(item)
    config["nav"] = nav
    return config


#: Extra nav links to anchors inside pages (MkDocs cannot list ``page.md#anchor`` in ``nav``):
#: section title -> [(link title, page, anchor)], inserted after that page's entry.
ANCHOR_LINKS: dict[str, list[tuple[str, str, str]]] = {
    "Specification": [("Knobs", "spec.md", "3-knobs"), ("Profiles", "spec.md", "4-profiles")],
}


def on_nav(nav: Any, config: Any, files: Any) -> Any:
    from mkdocs.structure.nav import Link, Section

    for item in nav.items:
        if not isinstance(item, Section) or item.title not in ANCHOR_LINKS:
            continue
        for title, page, anchor in ANCHOR_LINKS[item.title]:
            f = files.get_file_from_path(page)
            if f is None:
                continue
            link = Link(title, f"{f.url}#{anchor}")
            link.parent = item
            pos = next((i for i, c in enumerate(item.children)
                        if getattr(getattr(c, "file", None), "src_uri", None) == page), -1)
            item.children.insert(pos + 1 + sum(isinstance(c, Link)
                                               for c in item.children[pos + 1:]), link)
    return nav


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Warn (an error under ``--strict``) when an anchor of :data:`ANCHOR_LINKS` disappears."""
    import logging

    for links in ANCHOR_LINKS.values():
        for title, src, anchor in links:
            if page.file.src_uri == src and f'id="{anchor}"' not in html:
                logging.getLogger("mkdocs.hooks.nav_globs").warning(
                    "nav link %r: %s has no heading with id %r (update ANCHOR_LINKS in "
                    "docs/hooks/nav_globs.py)", title, src, anchor)
    return html
