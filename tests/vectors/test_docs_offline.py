"""The documentation site works without network access and its formulas render.

* No built page loads a script, stylesheet or font from the network (http/https).
* The math assets the pages load (the vendored KaTeX, its fonts, ``javascripts/katex.js``)
  exist in the built site, and no formula is left as raw Markdown/TeX in the page text.
* In headless Chromium with the network blocked, KaTeX typesets every formula of the spec,
  tolerance, knobs and profiles pages, and no raw TeX remains in their visible text.

The browser check needs Chromium (Debian: ``apt-get install -y chromium``) and skips without it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
KATEX = ("javascripts/vendor/katex/katex.min.js", "javascripts/vendor/katex/katex.min.css")
RENDERER = "javascripts/katex.js"
BROWSER_PAGES = ("spec", "conformance/tolerance", "knobs", "profiles")

#: ``<link rel=...>`` values that make the browser fetch the target.
FETCHING_RELS = {
    "stylesheet",
    "preload",
    "modulepreload",
    "prefetch",
    "preconnect",
    "dns-prefetch",
    "icon",
    "shortcut",
    "apple-touch-icon",
    "manifest",
}
#: Elements without an end tag.
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source"}
VOID |= {"track", "wbr"}
NOT_TEXT = {"code", "pre", "kbd", "samp", "script", "style", "noscript", "textarea", "template"}
EXTERNAL = re.compile(r"^\s*(?:https?:)?//", re.I)
CSS_EXTERNAL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])\s*(?:https?:)?//""", re.I)
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+)['"]?\s*\)""")
RAW_TEX = re.compile(r"\\[()\[\]]|\\[A-Za-z]+|\$")


class Page(HTMLParser):
    """What a page loads, how its math is marked up, and its text outside code.

    ``typeset=False`` (the page as built): the text leaves out the ``.arithmatex`` elements,
    which hold the TeX source. ``typeset=True`` (the page after KaTeX ran): it keeps what KaTeX
    displays there and leaves out only KaTeX's hidden MathML copy of the source.
    """

    def __init__(self, typeset: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self.typeset = typeset
        self.loads: list[tuple[str, str]] = []  # (what, url)
        self.inline_css: list[str] = []
        self.stack: list[tuple[str, set[str], dict[str, bool] | None]] = []
        self.arithmatex: list[dict[str, bool]] = []
        self.katex = 0
        self.katex_errors = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = set(a.get("class", "").split())
        if tag == "script" and a.get("src"):
            self.loads.append(("script", a["src"]))
        elif tag == "link" and FETCHING_RELS & set(a.get("rel", "").lower().split()):
            self.loads.append((f"link rel={a.get('rel')}", a.get("href", "")))
        if a.get("style"):
            self.inline_css.append(a["style"])
        if "katex" in classes:
            self.katex += 1
            for _, _, math in self.stack:
                if math is not None:
                    math["rendered"] = True
        if "katex-error" in classes:
            self.katex_errors += 1
        if tag in VOID:
            return
        math = None
        if "arithmatex" in classes:
            math = {"rendered": False}
            self.arithmatex.append(math)
        self.stack.append((tag, classes, math))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1][0] == "style":
            self.inline_css.append(data)
        for tag, classes, math in self.stack:
            if tag in NOT_TEXT or "katex-mathml" in classes or (math is not None and not self.typeset):
                return
        self.text.append(data)

    def raw_tex(self) -> list[str]:
        """Text fragments that look like formulas nobody typeset."""
        return sorted({t.strip()[:80] for t in self.text if RAW_TEX.search(t)})


def parse(html: str, typeset: bool = False) -> Page:
    page = Page(typeset)
    page.feed(html)
    page.close()
    return page


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings")
    out = tmp_path_factory.mktemp("docs") / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


def pages(site: Path) -> list[Path]:
    found = sorted(site.rglob("*.html"))
    assert len(found) > 10, found
    return found


def local_target(site: Path, page: Path, url: str) -> Path:
    path = urlsplit(url).path
    return (site / path.lstrip("/")) if path.startswith("/") else (page.parent / path)


def test_no_page_loads_anything_from_the_network(site: Path) -> None:
    bad: list[str] = []
    for f in pages(site):
        page = parse(f.read_text(encoding="utf-8"))
        rel = f.relative_to(site)
        bad += [f"{rel}: {what} {url}" for what, url in page.loads if EXTERNAL.match(url)]
        bad += [
            f"{rel}: inline CSS loads from the network" for c in page.inline_css if CSS_EXTERNAL.search(c)
        ]
        for what, url in page.loads:
            css = local_target(site, f, url)
            if (
                what.startswith("link")
                and css.suffix == ".css"
                and css.is_file()
                and CSS_EXTERNAL.search(css.read_text(encoding="utf-8", errors="replace"))
            ):
                bad.append(f"{rel}: {url} imports or loads a font/image from the network")
    assert not bad, "\n".join(bad[:40])


def test_math_assets_are_in_the_site(site: Path) -> None:
    missing: list[str] = []
    math_pages = 0
    for f in pages(site):
        page = parse(f.read_text(encoding="utf-8"))
        rel = f.relative_to(site)
        for _, url in page.loads:
            if not EXTERNAL.match(url) and not local_target(site, f, url).is_file():
                missing.append(f"{rel}: {url} does not exist")
        if page.raw_tex():  # e.g. a `|` inside $...$ in a table row splits the formula
            missing.append(f"{rel}: formula text outside math markup: {page.raw_tex()[:5]}")
        if not page.arithmatex:
            continue
        math_pages += 1
        loaded = {local_target(site, f, url).resolve() for _, url in page.loads}
        for asset in (*KATEX, RENDERER):
            if (site / asset).resolve() not in loaded:
                missing.append(f"{rel}: has formulas but does not load {asset}")
    assert math_pages >= 5
    css = site / KATEX[1]
    assert css.is_file()
    fonts = [u for u in CSS_URL.findall(css.read_text(encoding="utf-8")) if not u.startswith("data:")]
    assert any(u.endswith(".woff2") for u in fonts), fonts
    missing += [f"{KATEX[1]}: {u} does not exist" for u in fonts if not (css.parent / u).is_file()]
    assert not missing, "\n".join(missing[:40])


def _chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "/usr/bin/chromium"):
        if name and (path := shutil.which(name)):
            return path
    return None


def test_formulas_render_in_a_browser_without_network(site: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    problems: list[str] = []
    for name in BROWSER_PAGES:
        html = site / name / "index.html"
        assert html.is_file(), html
        before = parse(html.read_text(encoding="utf-8"))
        with tempfile.TemporaryDirectory() as profile:
            proc = subprocess.run(
                [
                    chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    f"--user-data-dir={profile}",
                    # no network: every request that is not file:// goes to a dead proxy and
                    # every host name fails to resolve
                    "--proxy-server=http://127.0.0.1:9",
                    "--host-resolver-rules=MAP * ~NOTFOUND",
                    "--window-size=1400,2000",
                    "--virtual-time-budget=5000",
                    "--dump-dom",
                    html.as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=45,
                check=False,
            )
        assert proc.returncode == 0 and "</html>" in proc.stdout, proc.stderr[-2000:]
        after = parse(proc.stdout, typeset=True)
        unrendered = sum(not m["rendered"] for m in after.arithmatex)
        if len(after.arithmatex) != len(before.arithmatex) or not after.arithmatex:
            problems.append(
                f"{name}: {len(before.arithmatex)} formulas built, {len(after.arithmatex)} after load"
            )
        if unrendered or after.katex < len(after.arithmatex):
            problems.append(f"{name}: {unrendered} of {len(after.arithmatex)} formulas not typeset by KaTeX")
        if after.katex_errors:
            problems.append(f"{name}: {after.katex_errors} KaTeX parse errors")
        if after.raw_tex():
            problems.append(f"{name}: raw TeX in the visible text: {after.raw_tex()[:5]}")
    assert not problems, "\n".join(problems)
