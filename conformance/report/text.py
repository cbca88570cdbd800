"""A case of a conformance report as short text: the shared vocabulary of every renderer.

Reads only report fields (:mod:`conformance.report.schema`); every field may be missing, ``None``
or NaN, and the case list may be empty.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

VERDICTS = ("exact", "within_bound", "acceptable", "divergent", "error", "skipped")
COLORS = {
    "exact": "#1a7f37",
    "within_bound": "#2da44e",
    "acceptable": "#bf8700",
    "divergent": "#cf222e",
    "error": "#8250df",
    "skipped": "#6e7781",
}


def cases_of(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    cases = report.get("cases") if isinstance(report, Mapping) else None
    return [c for c in (cases or []) if isinstance(c, Mapping)]


def text(x: Any, default: str = "-") -> str:
    return default if x is None or x == "" else str(x)


def number(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v


def fmt(x: Any, digits: int = 3) -> str:
    v = number(x)
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
        v = number(m.get("max_ulp")) if isinstance(m, Mapping) else None
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
    where = f"{text(fd.get('param'), '?')}{list(idx) if idx else ''}"
    return (
        f"step {text(fd.get('step'), '?')} {where}: got {fmt(fd.get('got'), 10)} "
        f"expected {fmt(fd.get('expected'), 10)} (abs err {fmt(fd.get('abs_err'))})"
    )


def diagnosis(case: Mapping[str, Any]) -> str:
    d = case.get("diagnosis")
    if not isinstance(d, Mapping):
        if case.get("verdict") in ("error", "skipped"):
            return text(case.get("error"), "-")
        return f"flag: {case['acceptable_flag']}" if case.get("acceptable_flag") else "-"
    if d.get("explained_by"):
        return f"{d['explained_by']} ({text(d.get('kind'), 'n/a')})"
    return text(d.get("detail"), "unexplained")


def summary(report: Mapping[str, Any]) -> dict[str, Counter[str]]:
    """Verdict counts per ``adapter/implementation dtype``."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for c in cases_of(report):
        adapter, impl = text(c.get("adapter"), "?"), text(c.get("implementation"), "?")
        key = f"{adapter}/{impl} {text(c.get('dtype'), '?')}"
        out[key][text(c.get("verdict"), "unknown")] += 1
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
