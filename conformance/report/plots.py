"""The report as PNG plots: one per scenario (error/bound ratio per step, log y) and a verdict
grid (adapter x scenario)."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conformance.report.text import COLORS, VERDICTS, cases_of, number, text


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "scenario"


def render_plots(report: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """One PNG per scenario (error/bound ratio vs step, log y) and ``verdicts.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_scenario: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for c in cases_of(report):
        by_scenario[text(c.get("scenario"), "unknown")].append(c)
    paths: list[Path] = []
    for scenario, cases in sorted(by_scenario.items()):
        # One colour per adapter/implementation/dtype, solid = free-running, dotted =
        # teacher-forced; the legend lists each colour once and grows the figure, not the axes.
        keys = sorted(
            {(text(c.get("adapter")), text(c.get("implementation")), text(c.get("dtype"))) for c in cases}
        )
        palette = [plt.get_cmap(name)(i) for name in ("tab20", "tab20b") for i in range(20)]
        colour = {k: palette[i % len(palette)] for i, k in enumerate(keys)}
        ncol = 1 if len(keys) <= 16 else 2
        fig, ax = plt.subplots(figsize=(10.0, max(4.4, 1.2 + 0.19 * len(keys) / ncol)), dpi=110)
        plotted = 0
        labelled: set[tuple[str, str, str]] = set()
        bad_steps: list[tuple[Any, Any]] = []
        top = 1.0
        for c in cases:
            series = c.get("series") or {}
            steps = list(series.get("step") or [])
            errs = [number(e) for e in (series.get("err") or [])]
            pairs = list(zip(steps, errs, strict=False))
            ys = [e if e is not None and 0 < e < 1e300 else math.nan for _, e in pairs]
            if not any(math.isfinite(y) for y in ys):
                continue
            top = max([top] + [y for y in ys if math.isfinite(y)])
            key = (text(c.get("adapter")), text(c.get("implementation")), text(c.get("dtype")))
            label = None
            if key not in labelled:
                labelled.add(key)
                label = f"{key[0]} {key[1][:24]} {key[2]}"
            ls = ":" if c.get("mode") == "teacher_forced" else "-"
            (line,) = ax.plot(
                [s for s, _ in pairs], ys, label=label, lw=1.1, ls=ls, color=colour[key], marker=".", ms=2.5
            )
            bad_steps += [
                (s, line.get_color()) for s, e in pairs if e is None or not math.isfinite(e) or e >= 1e300
            ]
            plotted += 1
        if bad_steps:  # NaN/inf errors: marked at the top instead of silently dropped
            ax.scatter(
                [s for s, _ in bad_steps],
                [top * 3.0] * len(bad_steps),
                marker="x",
                c=[col for _, col in bad_steps],
                label="non-finite error",
                zorder=3,
            )
        if plotted:
            ax.set_yscale("log")
            ax.axhline(1.0, color="black", lw=0.9, ls="--", label="bound (ratio 1)")
            ax.plot([], [], color="grey", ls="-", label="free-running")
            ax.plot([], [], color="grey", ls=":", label="teacher-forced")
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=ncol)
        else:
            ax.text(
                0.5, 0.5, "no finite positive error series", ha="center", va="center", transform=ax.transAxes
            )
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("step")
        ax.set_ylabel("error / bound")
        ax.set_title(f"scenario: {scenario}")
        ax.grid(True, which="both", alpha=0.3)
        path = out_dir / f"scenario-{_slug(scenario)}.png"
        fig.savefig(path, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    paths.append(_verdict_grid(report, out_dir / "verdicts.png", plt))
    return paths


def _worst(verdicts: Sequence[str]) -> str:
    order = {v: i for i, v in enumerate(VERDICTS)}
    return max(verdicts, key=lambda v: order.get(v, len(VERDICTS)))


def _verdict_grid(report: Mapping[str, Any], path: Path, plt: Any) -> Path:
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    cells: dict[tuple[str, str], list[str]] = defaultdict(list)
    for c in cases_of(report):
        cells[(text(c.get("adapter")), text(c.get("scenario")))].append(text(c.get("verdict"), "?"))
    rows = sorted({a for a, _ in cells})
    cols = sorted({s for _, s in cells})
    fig, ax = plt.subplots(
        figsize=(max(4.0, 0.9 * len(cols) + 2.5), max(2.0, 0.45 * len(rows) + 1.5)), dpi=110
    )
    if rows and cols:
        grid = [
            [
                VERDICTS.index(_worst(cells[(r, s)]))
                if (r, s) in cells and _worst(cells[(r, s)]) in VERDICTS
                else float("nan")
                for s in cols
            ]
            for r in rows
        ]
        cmap = ListedColormap([COLORS[v] for v in VERDICTS]).with_extremes(bad="white")
        import numpy as np

        ax.imshow(
            np.ma.masked_invalid(np.asarray(grid, dtype=float)),
            cmap=cmap,
            vmin=-0.5,
            vmax=len(VERDICTS) - 0.5,
            aspect="auto",
        )
        ax.set_xticks(range(len(cols)), cols, rotation=40, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        for i, r in enumerate(rows):
            for j, s in enumerate(cols):
                if (r, s) in cells:
                    ax.text(
                        j, i, str(len(cells[(r, s)])), ha="center", va="center", color="white", fontsize=7
                    )
        ax.legend(
            handles=[Patch(color=COLORS[v], label=v) for v in VERDICTS],
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
        )
    else:
        ax.text(0.5, 0.5, "no cases", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title("worst verdict per adapter x scenario (number = cases)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
