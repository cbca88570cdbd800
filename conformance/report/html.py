"""The report as one self-contained HTML file (images inlined as base64 ``data:`` URIs, all text
escaped)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conformance.report.plots import render_plots
from conformance.report.text import (
    COLORS,
    VERDICTS,
    cases_of,
    diagnosis,
    first_divergence,
    fmt,
    max_ulp,
    summary,
    text,
)

_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#1f2328}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:13px}
td,th{border:1px solid #d0d7de;padding:3px 6px;vertical-align:top;text-align:left}
th{background:#f6f8fa}code{font-size:12px;word-break:break-all}
.v{font-weight:600;color:white;padding:1px 5px;border-radius:3px}img{max-width:100%}"""


def _e(x: Any) -> str:
    return html.escape(text(x), quote=True)


def _verdict_badge(v: str) -> str:
    return f'<span class="v" style="background:{COLORS.get(v, "#57606a")}">{_e(v)}</span>'


def render_html(report: Mapping[str, Any], out_dir: Path, plots: Sequence[Path] | None = None) -> Path:
    """Write ``report.html`` (self-contained) into ``out_dir`` and return its path.

    ``plots``: PNGs to embed; by default :func:`render_plots` writes them into ``out_dir``
    (the same files a preceding ``render_plots(report, out_dir)`` call wrote).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = list(plots) if plots is not None else render_plots(report, out_dir)
    env = report.get("envelope") if isinstance(report, Mapping) else None
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>adamw-ref conformance report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>adamw-ref conformance report</h1>",
        f"<p>schema {_e(report.get('schema'))} {_e(report.get('schema_version'))}</p>",
        "<h2>Envelope</h2><table>",
    ]
    for key, value in (env or {}).items() if isinstance(env, Mapping) else []:
        parts.append(f"<tr><th>{_e(key)}</th><td><code>{_e(_short(value))}</code></td></tr>")
    parts.append(
        "</table><h2>Summary</h2><table><tr><th>adapter/implementation dtype</th>"
        + "".join(f"<th>{_e(v)}</th>" for v in VERDICTS)
        + "</tr>"
    )
    for key, counts in sorted(summary(report).items()):
        parts.append(
            f"<tr><td>{_e(key)}</td>" + "".join(f"<td>{counts.get(v, 0)}</td>" for v in VERDICTS) + "</tr>"
        )
    parts.append("</table>")
    if not cases_of(report):
        parts.append("<p>No cases.</p>")
    parts.append(
        "<h2>Cases</h2><table><tr>"
        + "".join(
            f"<th>{h}</th>"
            for h in (
                "id",
                "adapter",
                "impl",
                "device",
                "dtype",
                "scenario",
                "mode",
                "profile",
                "verdict",
                "flag",
                "max ulp",
                "first divergence",
                "diagnosis",
                "repro",
            )
        )
        + "</tr>"
    )
    for c in cases_of(report):
        v = text(c.get("verdict"), "unknown")
        cells = [
            _e(c.get("id")),
            _e(c.get("adapter")),
            _e(c.get("implementation")),
            _e(c.get("device")),
            _e(c.get("dtype")),
            _e(c.get("scenario")),
            _e(c.get("mode")),
            _e(c.get("profile")),
            _verdict_badge(v),
            _e(c.get("acceptable_flag")),
            _e(fmt(max_ulp(c))),
            _e(first_divergence(c)),
            _e(_diagnosis_full(c)),
            f"<code>{_e(c.get('repro'))}</code>",
        ]
        parts.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    parts.append("</table><h2>Plots</h2>")
    for p in pngs:
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        parts.append(
            f'<figure><img alt="{_e(p.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(p.stem)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    path = out_dir / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _diagnosis_full(c: Mapping[str, Any]) -> str:
    d = c.get("diagnosis")
    out = diagnosis(c)
    if isinstance(d, Mapping):
        if d.get("detail") and d.get("explained_by"):
            out += f": {d['detail']}"
        cands = [x for x in d.get("candidates") or [] if isinstance(x, Mapping)]
        if cands:
            out += " | candidates: " + ", ".join(
                f"{text(x.get('name'))}={fmt(x.get('score'))}" for x in cands[:5]
            )
    if c.get("error") and c.get("verdict") not in ("error", "skipped"):
        out += f" | error: {c['error']}"
    return out


def _short(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_short(v) for v in value)
    return text(value)
