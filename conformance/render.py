"""Render a conformance report (conformance/report.py format): terminal, PNG plots, HTML.

Reads only the report fields; every field may be missing, ``None`` or NaN, and the case list may
be empty. ``render_terminal`` prints a rich table and one summary line per adapter/dtype;
``render_plots`` writes one PNG per scenario (``series.err`` per case vs step, log y-axis) and a
verdict grid (adapter x scenario); ``render_html`` writes one self-contained HTML file (images
inlined as base64 ``data:`` URIs, all text escaped).
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

VERDICTS = ("exact", "within_bound", "acceptable", "divergent", "error", "skipped")
COLORS = {"exact": "#1a7f37", "within_bound": "#2da44e", "acceptable": "#bf8700",
          "divergent": "#cf222e", "error": "#8250df", "skipped": "#6e7781"}
RICH = {"exact": "bold green", "within_bound": "green", "acceptable": "yellow",
        "divergent": "bold red", "error": "magenta", "skipped": "dim"}


def _cases(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    cases = report.get("cases") if isinstance(report, Mapping) else None
    return [c for c in (cases or []) if isinstance(c, Mapping)]


def _s(x: Any, default: str = "-") -> str:
    return default if x is None or x == "" else str(x)


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v


def _fmt(x: Any, digits: int = 3) -> str:
    v = _num(x)
    if v is None:
        return "-"
    if math.isnan(v):
        return "nan"
    if math.isinf(v) or abs(v) >= 1e300:
        return "inf"
    return f"{v:.{digits}g}"


def max_ulp(case: Mapping[str, Any]) -> float | None:
    """Largest ``max_ulp`` over the case's metrics (NaN wins: it is the worst)."""
    out: float | None = None
    for m in (case.get("metrics") or {}).values():
        v = _num(m.get("max_ulp")) if isinstance(m, Mapping) else None
        if v is None:
            continue
        if math.isnan(v):
            return v
        out = v if out is None else max(out, v)
    return out


def first_divergence(case: Mapping[str, Any]) -> str:
    fd = case.get("first_divergence")
    if not isinstance(fd, Mapping):
        return "-"
    idx = fd.get("index")
    where = f"{_s(fd.get('param'), '?')}{list(idx) if idx else ''}"
    return (f"step {_s(fd.get('step'), '?')} {where}: got {_fmt(fd.get('got'), 10)} "
            f"expected {_fmt(fd.get('expected'), 10)} (abs err {_fmt(fd.get('abs_err'))})")


def diagnosis(case: Mapping[str, Any]) -> str:
    d = case.get("diagnosis")
    if not isinstance(d, Mapping):
        if case.get("verdict") in ("error", "skipped"):
            return _s(case.get("error"), "-")
        return f"flag: {case['acceptable_flag']}" if case.get("acceptable_flag") else "-"
    if d.get("explained_by"):
        return f"{d['explained_by']} ({_s(d.get('kind'), 'n/a')})"
    return _s(d.get("detail"), "unexplained")


def summary(report: Mapping[str, Any]) -> dict[str, Counter[str]]:
    """Verdict counts per ``adapter/implementation dtype``."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for c in _cases(report):
        adapter, impl = _s(c.get("adapter"), "?"), _s(c.get("implementation"), "?")
        key = f"{adapter}/{impl} {_s(c.get('dtype'), '?')}"
        out[key][_s(c.get("verdict"), "unknown")] += 1
    return dict(out)


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """``torch/foreach float32: 14 within_bound, 1 acceptable, 0 divergent`` and so on
    (``within_bound``, ``acceptable``, ``divergent`` always; other verdicts when present)."""
    always = ("within_bound", "acceptable", "divergent")
    lines = []
    for key, counts in sorted(summary(report).items()):
        parts = [f"{counts['exact']} exact"] if counts.get("exact") else []
        parts += [f"{counts.get(v, 0)} {v}" for v in always]
        parts += [f"{n} {v}" for v, n in counts.items() if v not in (*always, "exact") and n]
        lines.append(f"{key}: {', '.join(parts)}")
    return lines


# -- terminal ----------------------------------------------------------------------------------
def render_terminal(report: Mapping[str, Any], console: Any = None) -> None:
    """Print the case table and the per-adapter summary with rich."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    con = console if console is not None else Console()
    table = Table(title="adamw-ref conformance", show_lines=False)
    for col in ("adapter", "impl", "device", "dtype", "scenario", "mode", "verdict",
                "max ulp", "first divergence", "diagnosis"):
        table.add_column(col, overflow="fold")
    for c in _cases(report):
        v = _s(c.get("verdict"), "unknown")
        cells = [_s(c.get("adapter")), _s(c.get("implementation")), _s(c.get("device")),
                 _s(c.get("dtype")), _s(c.get("scenario")), _s(c.get("mode"))]
        tail = [_fmt(max_ulp(c)), first_divergence(c), diagnosis(c)]
        table.add_row(*[Text(x) for x in cells], Text(v, style=RICH.get(v, "")),
                      *[Text(x) for x in tail])
    con.print(table)
    if not _cases(report):
        con.print("no cases")
    for line in summary_lines(report):
        con.print(line, markup=False, highlight=False)


# -- plots -------------------------------------------------------------------------------------
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
    for c in _cases(report):
        by_scenario[_s(c.get("scenario"), "unknown")].append(c)
    paths: list[Path] = []
    for scenario, cases in sorted(by_scenario.items()):
        # One colour per adapter/implementation/dtype, solid = free-running, dotted =
        # teacher-forced; the legend lists each colour once and grows the figure, not the axes.
        keys = sorted({(_s(c.get("adapter")), _s(c.get("implementation")), _s(c.get("dtype")))
                       for c in cases})
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
            errs = [_num(e) for e in (series.get("err") or [])]
            pairs = list(zip(steps, errs, strict=False))
            ys = [e if e is not None and 0 < e < 1e300 else math.nan for _, e in pairs]
            if not any(math.isfinite(y) for y in ys):
                continue
            top = max([top] + [y for y in ys if math.isfinite(y)])
            key = (_s(c.get("adapter")), _s(c.get("implementation")), _s(c.get("dtype")))
            label = None
            if key not in labelled:
                labelled.add(key)
                label = f"{key[0]} {key[1][:24]} {key[2]}"
            ls = ":" if c.get("mode") == "teacher_forced" else "-"
            (line,) = ax.plot([s for s, _ in pairs], ys, label=label, lw=1.1, ls=ls,
                              color=colour[key], marker=".", ms=2.5)
            bad_steps += [(s, line.get_color()) for s, e in pairs
                          if e is None or not math.isfinite(e) or e >= 1e300]
            plotted += 1
        if bad_steps:  # NaN/inf errors: marked at the top instead of silently dropped
            ax.scatter([s for s, _ in bad_steps], [top * 3.0] * len(bad_steps), marker="x",
                       c=[col for _, col in bad_steps], label="non-finite error", zorder=3)
        if plotted:
            ax.set_yscale("log")
            ax.axhline(1.0, color="black", lw=0.9, ls="--", label="bound (ratio 1)")
            ax.plot([], [], color="grey", ls="-", label="free-running")
            ax.plot([], [], color="grey", ls=":", label="teacher-forced")
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=ncol)
        else:
            ax.text(0.5, 0.5, "no finite positive error series", ha="center", va="center",
                    transform=ax.transAxes)
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
    for c in _cases(report):
        cells[(_s(c.get("adapter")), _s(c.get("scenario")))].append(_s(c.get("verdict"), "?"))
    rows = sorted({a for a, _ in cells})
    cols = sorted({s for _, s in cells})
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(cols) + 2.5),
                                    max(2.0, 0.45 * len(rows) + 1.5)), dpi=110)
    if rows and cols:
        grid = [[VERDICTS.index(_worst(cells[(r, s)])) if (r, s) in cells
                 and _worst(cells[(r, s)]) in VERDICTS else float("nan") for s in cols]
                for r in rows]
        cmap = ListedColormap([COLORS[v] for v in VERDICTS]).with_extremes(bad="white")
        import numpy as np

        ax.imshow(np.ma.masked_invalid(np.asarray(grid, dtype=float)), cmap=cmap, vmin=-0.5,
                  vmax=len(VERDICTS) - 0.5, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=40, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        for i, r in enumerate(rows):
            for j, s in enumerate(cols):
                if (r, s) in cells:
                    ax.text(j, i, str(len(cells[(r, s)])), ha="center", va="center",
                            color="white", fontsize=7)
        ax.legend(handles=[Patch(color=COLORS[v], label=v) for v in VERDICTS], fontsize=7,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, "no cases", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title("worst verdict per adapter x scenario (number = cases)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# -- HTML --------------------------------------------------------------------------------------
_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#1f2328}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:13px}
td,th{border:1px solid #d0d7de;padding:3px 6px;vertical-align:top;text-align:left}
th{background:#f6f8fa}code{font-size:12px;word-break:break-all}
.v{font-weight:600;color:white;padding:1px 5px;border-radius:3px}img{max-width:100%}"""


def _e(x: Any) -> str:
    return html.escape(_s(x), quote=True)


def _verdict_badge(v: str) -> str:
    return f'<span class="v" style="background:{COLORS.get(v, "#57606a")}">{_e(v)}</span>'


def render_html(report: Mapping[str, Any], out_dir: Path,
                plots: Sequence[Path] | None = None) -> Path:
    """Write ``report.html`` (self-contained) into ``out_dir`` and return its path.

    ``plots``: PNGs to embed; by default :func:`render_plots` writes them into ``out_dir``
    (the same files a preceding ``render_plots(report, out_dir)`` call wrote).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = list(plots) if plots is not None else render_plots(report, out_dir)
    env = report.get("envelope") if isinstance(report, Mapping) else None
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>adamw-ref conformance report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>adamw-ref conformance report</h1>",
             f"<p>schema {_e(report.get('schema'))} {_e(report.get('schema_version'))}</p>",
             "<h2>Envelope</h2><table>"]
    for key, value in (env or {}).items() if isinstance(env, Mapping) else []:
        parts.append(f"<tr><th>{_e(key)}</th><td><code>{_e(_short(value))}</code></td></tr>")
    parts.append("</table><h2>Summary</h2><table><tr><th>adapter/implementation dtype</th>"
                 + "".join(f"<th>{_e(v)}</th>" for v in VERDICTS) + "</tr>")
    for key, counts in sorted(summary(report).items()):
        parts.append(f"<tr><td>{_e(key)}</td>"
                     + "".join(f"<td>{counts.get(v, 0)}</td>" for v in VERDICTS) + "</tr>")
    parts.append("</table>")
    if not _cases(report):
        parts.append("<p>No cases.</p>")
    parts.append("<h2>Cases</h2><table><tr>" + "".join(
        f"<th>{h}</th>" for h in ("id", "adapter", "impl", "device", "dtype", "scenario", "mode",
                                  "profile", "verdict", "flag", "max ulp", "first divergence",
                                  "diagnosis", "repro")) + "</tr>")
    for c in _cases(report):
        v = _s(c.get("verdict"), "unknown")
        cells = [_e(c.get("id")), _e(c.get("adapter")), _e(c.get("implementation")),
                 _e(c.get("device")), _e(c.get("dtype")), _e(c.get("scenario")),
                 _e(c.get("mode")), _e(c.get("profile")), _verdict_badge(v),
                 _e(c.get("acceptable_flag")), _e(_fmt(max_ulp(c))), _e(first_divergence(c)),
                 _e(_diagnosis_full(c)), f"<code>{_e(c.get('repro'))}</code>"]
        parts.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    parts.append("</table><h2>Plots</h2>")
    for p in pngs:
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        parts.append(f"<figure><img alt=\"{_e(p.stem)}\" src=\"data:image/png;base64,{data}\">"
                     f"<figcaption>{_e(p.stem)}</figcaption></figure>")
    parts.append("</body></html>")
    path = out_dir / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _diagnosis_full(c: Mapping[str, Any]) -> str:
    d = c.get("diagnosis")
    text = diagnosis(c)
    if isinstance(d, Mapping):
        if d.get("detail") and d.get("explained_by"):
            text += f": {d['detail']}"
        cands = [x for x in d.get("candidates") or [] if isinstance(x, Mapping)]
        if cands:
            text += " | candidates: " + ", ".join(
                f"{_s(x.get('name'))}={_fmt(x.get('score'))}" for x in cands[:5])
    if c.get("error") and c.get("verdict") not in ("error", "skipped"):
        text += f" | error: {c['error']}"
    return text


def _short(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_short(v) for v in value)
    return _s(value)
