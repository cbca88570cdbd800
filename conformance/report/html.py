"""The report as one self-contained HTML page: ``report.html``, rendered from the Jinja2 template
``templates/report.html.j2`` with autoescaping on, so every report string (a repro command, an
exception message) displays literally. CSS and script are inline, the PNGs are ``data:`` URIs and
nothing is fetched from anywhere.

Top to bottom, the page answers "does it conform, and if not why": the headline and the closing
sentence of :mod:`conformance.report.outcome`; the implementation x dtype matrix (each cell
coloured by its worst status, ``skipped`` never outranking a result); the cases to look at,
unexpected divergences and errors first, then known findings grouped by the entry they matched,
each with its first divergence, diagnosis, error/bound curve and a copyable repro command; the
bit-exact profiles (per implementation the fraction of elements predicted exactly at 0 ulp, and
the cases that are not bit-exact, as findings) where the report has ``bit_exact`` records; every
case in a table sortable by column and filterable by text and status; the envelope; the plots.

Numbers: ``got`` and ``expected`` print with every digit (shortest round-trip ``repr``), NaN and
infinities as ``nan``, ``inf``, ``-inf`` whether the report holds floats, the strings of schema
1.1 or the largest-double sentinel of schema 1.0.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conformance.report import outcome
from conformance.report.plots import GRID_PNG, render_plots, scenario_png
from conformance.report.text import (
    bound_ratio,
    cases_of,
    diagnosis,
    divergence_where,
    fmt,
    fmt_exact,
    max_ulp,
    real,
    text,
)

TEMPLATES = Path(__file__).parent / "templates"
#: Unexpected cases shown open (the rest start folded; a button opens them all).
OPEN_CARDS = 12
#: Statuses a reader has to look at: the "attention" filter of the case table.
ATTENTION = ("known", "divergent", "error")

#: Case table columns: key, heading, width (% of the table), sort kind, heading tooltip.
COLUMNS: tuple[tuple[str, str, float, str, str], ...] = (
    ("toggle", "", 2.5, "", "show the case's details"),
    ("status", "status", 8.5, "num", "verdict; 'known': a divergent/error case matched by a known finding"),
    ("row", "implementation", 16.0, "text", "adapter[implementation]"),
    ("device", "device", 5.5, "text", ""),
    ("dtype", "dtype", 6.0, "num", ""),
    ("scenario", "scenario", 10.5, "text", ""),
    ("mode", "mode", 8.0, "text", ""),
    (
        "ulp",
        "max ulp vs f64",
        6.0,
        "num",
        "largest distance to the binary64 reference, in ulps of the dtype, over every tensor ('exact' "
        "compares with the reference computed in the dtype instead)",
    ),
    ("ratio", "err / bound", 6.5, "num", "largest error/bound ratio (<= 1: within the bound)"),
    ("fd", "first divergence", 12.5, "text", "the first point over the bound"),
    ("diag", "diagnosis / reason", 13.0, "text", "what explains the deviation, or the error/skip reason"),
    ("repro", "repro", 5.0, "", "copy the command that reruns the case"),
)


def render_html(report: Mapping[str, Any], out_dir: Path, plots: Sequence[Path] | None = None) -> Path:
    """Write ``report.html`` (self-contained) into ``out_dir`` and return its path.

    ``plots``: PNGs to embed; by default :func:`render_plots` writes them into ``out_dir``
    (the same files a preceding ``render_plots(report, out_dir)`` call wrote).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = list(plots) if plots is not None else render_plots(report, out_dir)
    page = _environment().get_template("report.html.j2").render(**page_context(report, pngs))
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def page_context(report: Mapping[str, Any], pngs: Sequence[Path] = ()) -> dict[str, Any]:
    """Everything the template shows, as plain strings, numbers, lists and dicts."""
    cases = cases_of(report)
    totals = outcome.totals(report)
    plots = [_plot(p) for p in sorted(pngs, key=lambda p: Path(p).name != GRID_PNG)]
    anchors = {p["name"]: p["anchor"] for p in plots}
    views = [_case_view(c, i, anchors) for i, c in enumerate(cases)]
    by_case = {id(c): v for c, v in zip(cases, views, strict=True)}
    attention = [by_case[id(c)] for c in outcome.not_passing(report) if id(c) in by_case]
    unexpected = [v for v in attention if v["status"] in outcome.UNEXPECTED]
    known: dict[str, list[dict[str, Any]]] = {}
    for v in attention:
        if v["status"] == "known":
            known.setdefault(v["expected"], []).append(v)
    env = report.get("envelope") if isinstance(report, Mapping) else None
    env = env if isinstance(env, Mapping) else {}
    return {
        "title": "adamw-ref conformance report",
        "headline": outcome.headline(report),
        # the page lists the unexpected cases below the headline, not above it
        "closing": outcome.closing_sentence(report).replace("(listed above)", "(listed below)"),
        "mood": _mood(totals),
        "meta": _meta(env),
        "interrupted": _interrupted(env, len(cases)),
        "colors": dict(outcome.COLORS),
        "statuses": list(outcome.STATUSES),
        "attention_statuses": list(ATTENTION),
        "totals": [
            {"status": s, "n": totals.by_status.get(s, 0)}
            for s in outcome.STATUSES
            if totals.by_status.get(s)
        ],
        "matrix": _matrix(report),
        "matrix_distributed": _matrix(report, "distributed"),
        "unexpected": unexpected,
        "known": [{"entry": e, "cases": vs} for e, vs in known.items()],
        "known_total": sum(len(vs) for vs in known.values()),
        "open_cards": OPEN_CARDS,
        "columns": [
            {"key": k, "label": label, "width": w, "sort": sort, "title": tip}
            for k, label, w, sort, tip in COLUMNS
        ],
        "cases": views,
        "bit_exact": _bit_exact(report, by_case),
        "envelope": _envelope(env),
        "schema": f"{text(report.get('schema'))} {text(report.get('schema_version'), '')}".strip(),
        "plots": plots,
    }


def _share(x: Any) -> str:
    """A fraction of elements: ``1`` only when exactly 1, otherwise six decimals at most."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return "-"
    return "1" if x == 1 else f"{min(float(x), 0.999999):.6f}".rstrip("0")


def _bit_exact(report: Mapping[str, Any], by_case: Mapping[int, dict[str, Any]]) -> dict[str, Any]:
    """The bit-exact section: per implementation the fraction of elements its operation-order
    profile predicted exactly, and the cases that are not bit-exact (findings)."""
    rows = [
        {
            "row": r.row,
            "profile": r.profile,
            "bit_exact": r.counts["bit_exact"],
            "not_bit_exact": r.counts["not_bit_exact"],
            "not_covered": r.counts["not_covered"],
            "fraction": _share(r.fraction),
            "exact": r.exact,
            "elements": r.elements,
            "max_ulp": fmt(r.max_ulp),
            "query": f'impl:"{r.row}"',
            # green where every predicted case is bit-exact, the colour of a finding otherwise
            "css": "known"
            if r.counts["not_bit_exact"]
            else ("exact" if r.counts["bit_exact"] else "skipped"),
        }
        for r in outcome.bit_exact_rows(report)
    ]
    findings = [by_case[id(c)] for c in outcome.bit_exact_findings(report) if id(c) in by_case]
    return {"sentence": outcome.bit_exact_sentence(report), "rows": rows, "findings": findings}


def _bit_view(c: Mapping[str, Any]) -> dict[str, Any] | None:
    rec = outcome.bit_record(c)
    if rec is None:
        return None
    fm = rec.get("first_mismatch")
    first = ""
    if isinstance(fm, Mapping):
        first = (
            f"step {text(fm.get('step'))}, {text(fm.get('slot'))} {text(fm.get('param'))}"
            f"{list(fm.get('index') or [])}: got {fmt_exact(fm.get('got'))}, predicted "
            f"{fmt_exact(fm.get('predicted'))} ({fmt(fm.get('ulp'))} ulp)"
        )
    hist = rec.get("ulp_histogram")
    return {
        "verdict": text(rec.get("verdict")),
        "profile": text(rec.get("profile")),
        "platform": text(rec.get("platform"), ""),
        "fraction": _share(rec.get("fraction")),
        "exact": text(rec.get("exact")),
        "elements": text(rec.get("elements")),
        "max_ulp": fmt(rec.get("max_ulp")),
        "histogram": ", ".join(f"{k} ulp: {v}" for k, v in hist.items()) if isinstance(hist, Mapping) else "",
        "first": first,
        "reason": text(rec.get("reason"), ""),
    }


def _mood(t: outcome.Totals) -> str:
    if t.ran == 0:
        return "skipped"
    if t.by_status.get("error") and not t.by_status.get("divergent"):
        return "error"
    if t.unexpected:
        return "divergent"
    return "known" if t.by_status.get("known") else "within_bound"


def _css_status(status: str) -> str:
    """The colour class of a status (an unknown verdict ranks, and is coloured, as ``error``)."""
    return status if status in outcome.COLORS else "error"


def _meta(env: Mapping[str, Any]) -> list[str]:
    out = []
    if env.get("created"):
        out.append(f"created {text(env.get('created'))}")
    devices = [d for d in env.get("devices") or [] if isinstance(d, Mapping)]
    if devices:
        out.append("; ".join(f"{text(d.get('kind'))}: {text(d.get('model'))}" for d in devices))
    fw = env.get("frameworks")
    if isinstance(fw, Mapping) and fw:
        out.append(", ".join(f"{k} {text(v)}" for k, v in fw.items()))
    return out


def _interrupted(env: Mapping[str, Any], n_cases: int) -> str:
    """A warning for a report of an unfinished run (``envelope.status``), else ``""``."""
    status = env.get("status")
    if status in (None, "", "complete"):
        return ""
    planned = env.get("planned")
    of = f" of {planned} planned" if isinstance(planned, int) and not isinstance(planned, bool) else ""
    what = {
        "interrupted": "This run was interrupted (adamw-conformance run --resume DIR finishes it)",
        "running": "This run had not finished when the report was written",
    }.get(str(status), f"This run is {text(status)}")
    return f"{what}: {n_cases}{of} cases are in the report."


def _matrix(report: Mapping[str, Any], tier_name: str = "single") -> dict[str, Any]:
    m = outcome.matrix(report, tier_name)
    rows = []
    for r in m.rows:
        cells = []
        for col in m.columns:
            counts = m.cell(r, col)
            worst = outcome.worst(counts)
            breakdown = ", ".join(f"{s} {counts[s]}" for s in outcome.STATUSES if counts.get(s))
            cells.append(
                {
                    "text": outcome.cell_text(counts),
                    "status": worst,
                    "css": _css_status(worst) if worst else "",
                    "title": f"{r} {col}: {breakdown}" if breakdown else "",
                    "query": f'impl:"{r}" dtype:"{col}"',
                }
            )
        rows.append({"label": r, "cells": cells})
    return {"columns": m.columns, "rows": rows}


def _case_view(c: Mapping[str, Any], index: int, anchors: Mapping[str, str]) -> dict[str, Any]:
    status = outcome.status(c)
    verdict = text(c.get("verdict"), "error")
    row = outcome.row_key(c)
    dtype = text(c.get("dtype"))
    ulp = max_ulp(c)
    ratio = bound_ratio(c)
    fd = c.get("first_divergence")
    fd_view = _divergence(fd) if isinstance(fd, Mapping) else None
    error = text(c.get("error"), "")
    # an exception's message is the last line of its traceback
    reason = _last_line(error) if verdict == "error" and error else diagnosis(c)
    expected = text(c.get("expected"), "")
    status_title = f"known finding {expected} (verdict: {verdict})" if status == "known" else verdict
    # 'exact' compares with the reference computed in the dtype, the ulps with the binary64
    # reference: say so where both appear, rather than label one of them wrong
    ulp_note = (
        f"{fmt(ulp)} ulp from the binary64 reference; 'exact' means bitwise equal to the "
        f"reference computed in {dtype}"
        if verdict == "exact" and ulp is not None and ulp != 0
        else ""
    )
    scenario = text(c.get("scenario"))
    search = " ".join(
        text(x, "")
        for x in (
            c.get("id"),
            status,
            verdict,
            row,
            c.get("device"),
            dtype,
            scenario,
            c.get("mode"),
            c.get("profile"),
            c.get("acceptable_flag"),
            expected,
            reason,
            (outcome.bit_record(c) or {}).get("verdict"),
        )
    )
    return {
        "i": index,
        "id": text(c.get("id")),
        "status": status,
        "css": _css_status(status),
        "status_title": status_title,
        "status_rank": outcome.rank(status) if status != "skipped" else -1,
        "verdict": verdict,
        "expected": expected,
        "row": row,
        "adapter": text(c.get("adapter")),
        "device": text(c.get("device")),
        "dtype": dtype,
        "dtype_rank": (
            outcome.DTYPE_ORDER.index(dtype) if dtype in outcome.DTYPE_ORDER else len(outcome.DTYPE_ORDER)
        ),
        "scenario": scenario,
        "mode": text(c.get("mode")),
        "profile": text(c.get("profile")),
        "seed": text(c.get("seed")),
        "steps": text(c.get("steps")),
        "flag": text(c.get("acceptable_flag"), ""),
        "ulp": fmt(ulp),
        "ulp_sort": _sort_key(ulp),
        "ulp_note": ulp_note,
        "ratio": fmt(ratio),
        "ratio_sort": _sort_key(ratio),
        "fd": fd_view,
        "fd_short": fd_view["short"] if fd_view else "-",
        "reason": reason,
        "diagnosis": _diagnosis(c),
        "error": error,
        "error_line": _last_line(error),
        "error_long": "\n" in error.strip(),
        "repro": text(c.get("repro"), ""),
        "metrics": _metrics(c),
        "spark": _spark(c),
        "plot_anchor": anchors.get(scenario_png(scenario), ""),
        "search": search.lower(),
        "duration": fmt(c.get("duration_s")),
        "bits": _bit_view(c),
    }


def _last_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _sort_key(v: float | None) -> str:
    """A number for the table's sort (JavaScript ``parseFloat``; NaN sorts as the worst)."""
    if v is None:
        return ""
    if math.isnan(v) or v == math.inf:
        return "Infinity"
    return "-Infinity" if v == -math.inf else repr(v)


def _divergence(fd: Mapping[str, Any]) -> dict[str, str]:
    step, where = text(fd.get("step"), "?"), divergence_where(fd)
    return {
        "step": step,
        "where": where,
        "got": fmt_exact(fd.get("got")),
        "expected": fmt_exact(fd.get("expected")),
        "got_hex": _hex(fd.get("got")),
        "expected_hex": _hex(fd.get("expected")),
        "abs_err": fmt_exact(fd.get("abs_err")),
        "ulp": fmt(fd.get("ulp")),
        "short": f"step {step}, {where}: {fmt(fd.get('ulp'))} ulp",
    }


def _hex(x: Any) -> str:
    v = real(x)
    return v.hex() if v is not None and math.isfinite(v) else ""


def _diagnosis(c: Mapping[str, Any]) -> dict[str, Any] | None:
    d = c.get("diagnosis")
    if not isinstance(d, Mapping):
        return None
    cands = [x for x in d.get("candidates") or [] if isinstance(x, Mapping)]
    return {
        "explained_by": text(d.get("explained_by"), ""),
        "kind": text(d.get("kind"), ""),
        "detail": text(d.get("detail"), ""),
        "candidates": [{"name": text(x.get("name")), "score": fmt(x.get("score"))} for x in cands],
    }


def _metrics(c: Mapping[str, Any]) -> list[dict[str, str]]:
    m = c.get("metrics")
    if not isinstance(m, Mapping):
        return []
    return [
        {
            "tensor": text(name),
            "max_abs": fmt(v.get("max_abs")),
            "max_rel": fmt(v.get("max_rel")),
            "max_ulp": fmt(v.get("max_ulp")),
        }
        for name, v in m.items()
        if isinstance(v, Mapping)
    ]


SPARK_W, SPARK_H, SPARK_PAD = 320.0, 88.0, 6.0


def _spark(c: Mapping[str, Any]) -> dict[str, Any] | None:
    """The case's error/bound ratio per step as an inline SVG polyline (log y, bound at 1);
    non-finite steps as crosses along the top; ``None`` without a positive or non-finite point."""
    series = c.get("series")
    if not isinstance(series, Mapping):
        return None
    steps = [real(s) for s in series.get("step") or []]
    errs = [real(e) for e in series.get("err") or []]
    pairs = [(s, e) for s, e in zip(steps, errs, strict=False) if s is not None and math.isfinite(s)]
    pos = [e for _, e in pairs if e is not None and math.isfinite(e) and e > 0]
    bad = [s for s, e in pairs if e is None or not math.isfinite(e)]
    if not pos and not bad:
        return None
    lo = min(min(pos, default=1.0), 1.0) / 2.0
    hi = max(max(pos, default=1.0), 1.0) * 2.0
    s0, s1 = pairs[0][0], pairs[-1][0]
    span_x = (s1 - s0) or 1.0
    span_y = math.log10(hi) - math.log10(lo)
    inner_w, inner_h = SPARK_W - 2 * SPARK_PAD, SPARK_H - 2 * SPARK_PAD - 8

    def x(s: float) -> float:
        return round(SPARK_PAD + (s - s0) / span_x * inner_w, 1)

    def y(v: float) -> float:
        return round(SPARK_PAD + 8 + (math.log10(hi) - math.log10(max(v, lo))) / span_y * inner_h, 1)

    segments: list[str] = []
    current: list[str] = []
    for s, e in pairs:
        if e is None or not math.isfinite(e):
            if current:
                segments.append(" ".join(current))
            current = []
            continue
        current.append(f"{x(s)},{y(e)}")
    if current:
        segments.append(" ".join(current))
    worst = max(pos, default=0.0)
    what = "error/bound of the loss" if c.get("mode") == "closed_loop" else "error/bound"
    return {
        "w": SPARK_W,
        "h": SPARK_H,
        "segments": segments,
        "bad": [x(s) for s in bad],
        "bound_y": y(1.0),
        "over": any(e > 1 for e in pos) or bool(bad),
        "what": what,
        "label": (
            f"{what} per step {fmt(s0)}..{fmt(s1)} (log scale; dashed: the bound)"
            f"; largest {fmt(worst)}" + (f"; {len(bad)} non-finite" if bad else "")
        ),
        "hi": fmt(hi / 2.0),
        "first": fmt(s0),
        "last": fmt(s1),
    }


def _plot(path: Path) -> dict[str, str]:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    name = Path(path).name
    caption = (
        "worst status per implementation x dtype"
        if name == GRID_PNG
        else f"error/bound per step, {Path(path).stem.removeprefix('scenario-')}"
    )
    return {
        "name": name,
        "anchor": f"plot-{Path(path).stem}",
        "src": f"data:image/png;base64,{data}",
        "caption": caption,
    }


_ENVELOPE_ORDER = (
    "command",
    "created",
    "status",
    "planned",
    "suite_version",
    "spec_version",
    "commit",
    "python",
    "platform",
    "frameworks",
    "devices",
    "precision",
    "seeds",
    "env",
    "known_findings",
    "options",
)


def _envelope(env: Mapping[str, Any]) -> list[dict[str, Any]]:
    keys = [k for k in _ENVELOPE_ORDER if k in env] + [k for k in env if k not in _ENVELOPE_ORDER]
    rows = []
    for k in keys:
        v = env[k]
        if k == "devices" and isinstance(v, list):
            items = [
                f"{text(d.get('kind'))}: {text(d.get('model'))} (driver {text(d.get('driver'))}, "
                f"runtime {text(d.get('runtime'))})"
                if isinstance(d, Mapping)
                else text(d)
                for d in v
            ]
        elif isinstance(v, Mapping):
            items = [f"{name} = {value}" for name, value in _flatten(v)]
        elif isinstance(v, (list, tuple)):
            items = [", ".join(_short(x) for x in v)] if v else []
        else:
            items = [text(v)]
        rows.append({"key": str(k), "items": items or ["(none)"], "code": k in ("command", "commit")})
    return rows


def _flatten(v: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for k, x in v.items():
        name = f"{prefix}{k}"
        if isinstance(x, Mapping) and x:
            out += _flatten(x, f"{name}.")
        else:
            out.append((name, _short(x)))
    return out


def _short(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "null"
    return text(value)
