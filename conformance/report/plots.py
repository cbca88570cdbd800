"""The report as PNG plots: one per scenario (error/bound ratio per step, log y) and the status
grid (implementation x dtype, the matrix of :mod:`conformance.report.outcome`)."""

from __future__ import annotations

import math
import multiprocessing
import re
from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from conformance.report import outcome
from conformance.report.text import cases_of, number, text
from conformance.threads import cores

#: The status grid's file name.
GRID_PNG = "verdicts.png"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "scenario"


def scenario_png(scenario: str) -> str:
    """File name of a scenario's error/bound plot (``scenario-<slug>.png``)."""
    return f"scenario-{_slug(scenario)}.png"


def render_plots(report: Mapping[str, Any], out_dir: Path, jobs: int | None = None) -> list[Path]:
    """One PNG per scenario (error/bound ratio vs step, log y) and ``verdicts.png`` (the status
    grid); returns their paths, the grid last.

    The figures are independent, so up to ``jobs`` processes draw them (default: the CPUs, at
    most 4; forked where the OS can fork, else one process): the same files, byte for byte.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_scenario: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for c in cases_of(report):
        by_scenario[text(c.get("scenario"), "unknown")].append(c)
    scenarios = sorted(by_scenario)
    # the grid first, then the scenarios with the most cases: dealt round-robin over the lanes
    items: list[str | None] = [None, *sorted(scenarios, key=lambda sc: -len(by_scenario[sc]))]
    lanes = max(1, min(len(items), jobs if jobs is not None else min(4, cores())))
    parts = [
        [(sc, by_scenario[sc] if sc is not None else []) for sc in items[k::lanes]] for k in range(lanes)
    ]
    if lanes > 1 and "fork" in multiprocessing.get_all_start_methods():
        with ProcessPoolExecutor(lanes - 1, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_draw, part, None, out_dir) for part in parts[1:]]
            _draw(parts[0], report, out_dir)  # this process: lane 0, which holds the grid
            for f in futures:
                f.result()
    else:
        _draw([x for part in parts for x in part], report, out_dir)
    return [out_dir / scenario_png(sc) for sc in scenarios] + [out_dir / GRID_PNG]


def _draw(
    items: list[tuple[str | None, list[Mapping[str, Any]]]], report: Mapping[str, Any] | None, out_dir: Path
) -> None:
    """Draw ``items``: a scenario's plot, or (``None``) the status grid of ``report``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for scenario, cases in items:
        if scenario is not None:
            _scenario_plot(scenario, cases, out_dir / scenario_png(scenario), plt)
        elif report is not None:
            _status_grid(report, out_dir / GRID_PNG, plt)


def _scenario_plot(scenario: str, cases: list[Mapping[str, Any]], path: Path, plt: Any) -> None:
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
        ax.text(0.5, 0.5, "no finite positive error series", ha="center", va="center", transform=ax.transAxes)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("error / bound")
    ax.set_title(f"scenario: {scenario}")
    ax.grid(True, which="both", alpha=0.3)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _wrap(label: str, width: int = 44) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(label, width, break_on_hyphens=False, break_long_words=False)) or label


def _status_grid(report: Mapping[str, Any], path: Path, plt: Any) -> Path:
    """Implementation x dtype, each cell coloured by its worst status (``skipped`` never outranks
    a result; ``known`` has its own colour) and labelled with its counts (``known 6, ok 24``)."""
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    m = outcome.matrix(report)
    rows, cols = m.rows, m.columns
    statuses = outcome.STATUSES
    labels = [_wrap(r) for r in rows]
    height = sum(0.32 + 0.16 * label.count("\n") for label in labels)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.75 * len(cols) + 4.2), max(2.0, height + 1.3)), dpi=110)
    if rows and cols:
        grid = np.full((len(rows), len(cols)), np.nan)
        for i, r in enumerate(rows):
            for j, d in enumerate(cols):
                w = outcome.worst(m.cell(r, d))
                if w:
                    grid[i, j] = statuses.index(w)
        cmap = ListedColormap([outcome.COLORS[s] for s in statuses]).with_extremes(bad="#ffffff")
        ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-0.5, vmax=len(statuses) - 0.5, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, fontsize=8)
        ax.xaxis.tick_top()
        ax.set_yticks(range(len(rows)), labels, fontsize=7.5)
        ax.set_xticks(np.arange(-0.5, len(cols)), minor=True)
        ax.set_yticks(np.arange(-0.5, len(rows)), minor=True)
        ax.grid(which="minor", color="white", lw=1.5)
        ax.tick_params(which="minor", length=0)
        for i, r in enumerate(rows):
            for j, d in enumerate(cols):
                counts = m.cell(r, d)
                filled = bool(sum(counts.values()))
                ax.text(
                    j,
                    i,
                    outcome.cell_text(counts) if filled else "-",
                    ha="center",
                    va="center",
                    color="white" if filled else "#57606a",
                    fontsize=7,
                    fontweight="bold" if outcome.worst(counts) in outcome.UNEXPECTED else "normal",
                )
        ax.legend(
            handles=[Patch(color=outcome.COLORS[s], label=s) for s in statuses],
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            title="worst status",
            title_fontsize=7,
        )
    else:
        ax.text(0.5, 0.5, "no cases", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title(
        "worst status per implementation x dtype (skipped only where nothing ran; ok = conforming)",
        fontsize=9,
        pad=22 if rows and cols else 6,
    )
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
