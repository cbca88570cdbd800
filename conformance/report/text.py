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
    """``x`` as a float (``"nan"``, ``"inf"``, ``"-inf"`` strings included), else ``None``."""
    if isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v


#: Reports of schema 1.0 clamped NaN and infinity to the largest double: read anything this
#: large as infinity.
SENTINEL = 1e308


def real(x: Any) -> float | None:
    """A report number for display: like :func:`number`, with the 1.0 sentinel (``abs >= 1e308``)
    read as a signed infinity."""
    v = number(x)
    if v is not None and math.isfinite(v) and abs(v) >= SENTINEL:
        return math.copysign(math.inf, v)
    return v


def _nonfinite(v: float) -> str | None:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return None


def fmt(x: Any, digits: int = 3) -> str:
    """Short: ``digits`` significant digits; ``nan``, ``inf``, ``-inf``; ``-`` for no number."""
    v = real(x)
    if v is None:
        return "-"
    return _nonfinite(v) or f"{v:.{digits}g}"


def fmt_exact(x: Any) -> str:
    """Every digit needed: integers as integers, floats as their shortest round-trip ``repr``
    (two different doubles never print alike); ``nan``, ``inf``, ``-inf``; ``-`` for no number."""
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    v = real(x)
    if v is None:
        return "-"
    return _nonfinite(v) or repr(v)


def max_ulp(case: Mapping[str, Any]) -> float | None:
    """Largest ``max_ulp`` over the case's metrics (NaN wins: it is the worst)."""
    out: float | None = None
    for m in (case.get("metrics") or {}).values():
        v = real(m.get("max_ulp")) if isinstance(m, Mapping) else None
        if v is None:
            continue
        if math.isnan(v):
            return v
        out = v if out is None else max(out, v)
    return out


def bound_ratio(case: Mapping[str, Any]) -> float | None:
    """The case's largest error/bound ratio (``bound.max_ratio``, else the largest of
    ``series.err``; NaN wins); ``None`` when the report has neither."""
    bound = case.get("bound")
    v = real(bound.get("max_ratio")) if isinstance(bound, Mapping) else None
    if v is not None:
        return v
    series = case.get("series")
    errs = [real(e) for e in (series.get("err") or [])] if isinstance(series, Mapping) else []
    nums = [e for e in errs if e is not None]
    if any(math.isnan(e) for e in nums):
        return math.nan
    return max(nums) if nums else None


def divergence_where(fd: Mapping[str, Any]) -> str:
    """``w[3, 2]``: the parameter and element of a first divergence."""
    idx = fd.get("index")
    return f"{text(fd.get('param'), '?')}{list(idx) if isinstance(idx, (list, tuple)) and idx else ''}"


def first_divergence(case: Mapping[str, Any]) -> str:
    """``step 3 w[0, 1]: got G expected E (abs err A)``; ``got`` and ``expected`` with every digit
    (:func:`fmt_exact`), so that they never print alike."""
    fd = case.get("first_divergence")
    if not isinstance(fd, Mapping):
        return "-"
    return (
        f"step {text(fd.get('step'), '?')} {divergence_where(fd)}: got {fmt_exact(fd.get('got'))} "
        f"expected {fmt_exact(fd.get('expected'))} (abs err {fmt(fd.get('abs_err'))})"
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
