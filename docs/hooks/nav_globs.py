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

