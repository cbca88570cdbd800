"""Draw docs/img/architecture.svg from the code: the three layers with their modules and
subpackages, the imports between layers, and the data flow of a conformance run.

    python -m tools.architecture_diagram            # rewrite docs/img/architecture.svg
    python -m tools.architecture_diagram --check    # exit 1 if the committed picture is stale

The module boxes come from the package tree, the arrows from the import graph (grimp, which
import-linter uses), the flow from :data:`FLOW` (every module it names must exist). The output is
deterministic, so a test compares the committed file with a fresh drawing.
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img" / "architecture.svg"
LAYERS = ("conformance", "adapters", "adamw_ref")  # top to bottom, as in pyproject's contract
TITLES = {
    "conformance": "conformance: the suite (scenarios, execution, tolerance, diagnosis, reports)",
    "adapters": "adapters: one protocol over every implementation, and the numpy oracle",
    "adamw_ref": "adamw_ref: the specification (standard library only)",
}
COLORS = {"conformance": "#ddf4ff", "adapters": "#fff8c5", "adamw_ref": "#dafbe1"}
EDGES = {"conformance": "#0969da", "adapters": "#9a6700", "adamw_ref": "#1a7f37"}

#: The data flow of ``adamw-conformance run``: (step, what happens, owning modules).
FLOW: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("CLI", "options, plan, exit status", ("conformance.cli",)),
    ("runner", "one process per adapter", ("conformance.runner",)),
    ("worker", "cases of one adapter", ("conformance.worker", "conformance.scenarios")),
    ("adapter", "the implementation", ("adapters.registry", "adapters.torch.run")),
    ("executor", "matched trajectories", ("conformance.execute", "adapters.reference.oracle")),
    ("tolerance", "error / derived bound", ("conformance.tolerance", "conformance.compare")),
    ("diagnosis", "which knob explains it", ("conformance.diagnose",)),
    ("report", "JSON, terminal, HTML", ("conformance.report.schema", "conformance.report.html")),
)

CHAR_W, FONT = 7.2, 12  # monospace advance at 12 px
WIDTH, PAD, MARGIN = 830, 16, 96  # MARGIN: room right of the bands for the bypass arrow
BAND_RIGHT = WIDTH - PAD - MARGIN


def children(package: str) -> list[str]:
    """The direct modules and subpackages of ``package`` (subpackages end with ``/``)."""
    base = ROOT / package
    out = []
    for p in sorted(base.iterdir()):
        if p.is_dir() and (p / "__init__.py").exists():
            n = sum(1 for _ in p.rglob("*.py"))
            out.append(f"{p.name}/ ({n})")
        elif p.suffix == ".py" and p.name != "__init__.py":
            out.append(p.stem)
    return out


def module_exists(name: str) -> bool:
    parts = name.split(".")
    return (
        ROOT.joinpath(*parts).with_suffix(".py").exists() or (ROOT.joinpath(*parts) / "__init__.py").exists()
    )


def layer_imports() -> dict[tuple[str, str], int]:
    """(importer layer, imported layer) -> number of importing module pairs, between layers."""
    import grimp

    graph = grimp.build_graph(*LAYERS, cache_dir=None)
    counts: dict[tuple[str, str], int] = {}
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            a, b = importer.split(".")[0], imported.split(".")[0]
            if a != b and a in LAYERS and b in LAYERS:
                counts[(a, b)] = counts.get((a, b), 0) + 1
    return counts


def _text(
    x: float,
    y: float,
    s: str,
    size: int = FONT,
    weight: str = "normal",
    anchor: str = "start",
    mono: bool = True,
    fill: str = "#1f2328",
) -> str:
    family = (
        "ui-monospace,SFMono-Regular,Menlo,Consolas,monospace"
        if mono
        else "system-ui,-apple-system,Segoe UI,sans-serif"
    )
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" font-family="{family}" '
        f'font-weight="{weight}" text-anchor="{anchor}" fill="{fill}">{html.escape(s)}</text>'
    )


def _band(layer: str, y: float) -> tuple[list[str], float]:
    """One layer: a titled band with a box per child, wrapped into rows. Returns (svg, height)."""
    items = children(layer)
    parts: list[str] = []
    x, row_y, box_h, gap = PAD + 12.0, y + 40, 24, 8
    boxes = []
    for name in items:
        w = len(name) * CHAR_W + 16
        if x + w > BAND_RIGHT - 12:
            x, row_y = PAD + 12.0, row_y + box_h + gap
        boxes.append((x, row_y, w, name))
        x += w + gap
    height = row_y + box_h + 14 - y
    parts.append(
        f'<rect x="{PAD}" y="{y:.1f}" width="{BAND_RIGHT - PAD}" height="{height:.1f}" '
        f'rx="8" fill="{COLORS[layer]}" stroke="{EDGES[layer]}" stroke-width="1.5"/>'
    )
    parts.append(_text(PAD + 12, y + 24, TITLES[layer], 14, "600", mono=False))
    for bx, by, w, name in boxes:
        parts.append(
            f'<rect x="{bx:.1f}" y="{by:.1f}" width="{w:.1f}" height="{box_h}" rx="4" '
            f'fill="white" stroke="{EDGES[layer]}" stroke-width="1"/>'
        )
        parts.append(_text(bx + 8, by + 16.5, name))
    return parts, height


def _arrow(x1: float, y1: float, x2: float, y2: float, color: str = "#57606a") -> str:
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
        f'stroke-width="1.6" marker-end="url(#arrow)"/>'
    )


def _flow(y: float) -> tuple[list[str], float]:
    parts = [_text(PAD, y + 16, "A run: adamw-conformance run", 15, "600", mono=False)]
    per_row, gap = 4, 16
    box_w, box_h = (WIDTH - 2 * PAD - (per_row - 1) * gap) / per_row, 86
    for i, (step, what, modules) in enumerate(FLOW):
        r, c = divmod(i, per_row)
        c = c if r % 2 == 0 else per_row - 1 - c  # snake: the second row runs right to left
        bx, by = PAD + c * (box_w + gap), y + 32 + r * (box_h + 40)
        layer = modules[0].split(".")[0]
        parts.append(
            f'<rect x="{bx:.1f}" y="{by:.1f}" width="{box_w:.1f}" height="{box_h}" rx="6" '
            f'fill="{COLORS[layer]}" stroke="{EDGES[layer]}" stroke-width="1.2"/>'
        )
        parts.append(_text(bx + 10, by + 20, f"{i + 1}. {step}", 14, "600", mono=False))
        parts.append(_text(bx + 10, by + 38, what, 12, mono=False, fill="#57606a"))
        for j, m in enumerate(modules):
            parts.append(_text(bx + 10, by + 58 + 16 * j, m, 11))
        if i + 1 < len(FLOW):
            nr, nc = divmod(i + 1, per_row)
            nc = nc if nr % 2 == 0 else per_row - 1 - nc
            nx, ny = PAD + nc * (box_w + gap), y + 32 + nr * (box_h + 40)
            if nr == r:
                left_to_right = nc > c
                x1 = bx + box_w if left_to_right else bx
                x2 = nx if left_to_right else nx + box_w
                parts.append(_arrow(x1, by + box_h / 2, x2 + (-3 if left_to_right else 3), by + box_h / 2))
            else:
                parts.append(_arrow(bx + box_w / 2, by + box_h, nx + box_w / 2, ny - 3))
    rows = (len(FLOW) + per_row - 1) // per_row
    return parts, 32 + rows * box_h + (rows - 1) * 40 + 8


def draw() -> str:
    """The SVG text."""
    for _, _, modules in FLOW:
        for m in modules:
            if not module_exists(m):
                raise SystemExit(f"architecture_diagram: FLOW names {m!r}, which does not exist")
    counts = layer_imports()
    parts: list[str] = []
    y = PAD + 28.0
    parts.append(
        _text(
            PAD,
            PAD + 14,
            "Layers: each imports only the ones below it (import-linter contracts in pyproject.toml)",
            15,
            "600",
            mono=False,
        )
    )
    tops: list[tuple[float, float]] = []
    for layer in LAYERS:
        band, h = _band(layer, y)
        parts += band
        tops.append((y, h))
        y += h + 44
    for i in range(len(LAYERS) - 1):
        (y0, h0), (y1, _) = tops[i], tops[i + 1]
        a, b = LAYERS[i], LAYERS[i + 1]
        x = (PAD + BAND_RIGHT) / 2
        parts.append(_arrow(x, y0 + h0, x, y1 - 3))
        parts.append(
            _text(
                x + 10,
                y0 + h0 + 26,
                f"{counts.get((a, b), 0)} module imports",
                12,
                mono=False,
                fill="#57606a",
            )
        )
    (y0, h0), (y2, h2) = tops[0], tops[2]
    ya, yb, xm = y0 + h0 / 2, y2 + h2 / 2, BAND_RIGHT + MARGIN / 2
    parts.append(
        f'<path d="M {BAND_RIGHT} {ya:.1f} H {xm} V {yb:.1f} H {BAND_RIGHT + 4}" '
        'fill="none" stroke="#57606a" stroke-width="1.6" stroke-dasharray="5 4" '
        'marker-end="url(#arrow)"/>'
    )
    n = counts.get((LAYERS[0], LAYERS[2]), 0)
    for k, line in enumerate((f"{n}", "module", "imports")):
        parts.append(_text(xm + 6, (ya + yb) / 2 + 14 * k, line, 12, mono=False, fill="#57606a"))
    upward = sum(n for (a, b), n in counts.items() if LAYERS.index(a) > LAYERS.index(b))
    parts.append(
        _text(
            PAD, y - 18, f"upward imports: {upward}", 12, mono=False, fill="#cf222e" if upward else "#57606a"
        )
    )
    flow, fh = _flow(y)
    parts += flow
    height = y + fh + PAD
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" role="img" '
        'aria-label="adamw-ref architecture: layers and the data flow of a run">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#57606a"/></marker></defs>'
        f'<rect width="{WIDTH}" height="{height:.0f}" fill="white"/>'
    )
    return head + "\n" + "\n".join(parts) + "\n</svg>\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.architecture_diagram", description=__doc__)
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed SVG is stale")
    args = ap.parse_args(argv)
    svg = draw()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != svg:
            print(
                f"{OUT.relative_to(ROOT)} is stale: run python -m tools.architecture_diagram", file=sys.stderr
            )
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(svg, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
