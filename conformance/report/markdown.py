"""A report as Markdown: the envelope, the outcome and matrix, status counts, and one row per
finding.

``adamw-conformance summary DIR [--title T] [--md OUT]``. The output is deterministic (sorted
rows, no timestamps beyond the report's own), so committed summaries only change when the
results do. Statuses are those of :mod:`conformance.report.outcome`: a divergent or error case
matched by a known finding is ``known``, listed in its own section with the entry it matched;
unexpected divergent and error cases are listed with their first divergent step, size, the
diagnosis and the reproduction command. Where cases were compared with their implementation's
operation-order profile (``bit_exact``, schema 1.2), a table gives per implementation the
fraction of elements predicted exactly, and every case that is not bit-exact is listed as a
finding with its first mismatch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from conformance.report import outcome

VERDICT_ORDER = outcome.STATUSES


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        return f"{x:.3g}"
    return str(x)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _max_metric(case: Mapping[str, Any], key: str) -> float | None:
    vals = [m.get(key) for m in (case.get("metrics") or {}).values() if isinstance(m, Mapping)]
    nums = [v for v in vals if isinstance(v, (int, float)) and not math.isnan(v)]
    return max(nums) if nums else None


def _bound_ratio(case: Mapping[str, Any]) -> float | None:
    errs = (case.get("series") or {}).get("err") or []
    nums = [e for e in errs if isinstance(e, (int, float)) and not math.isnan(e)]
    return max(nums) if nums else None


def render_markdown(report: Mapping[str, Any], title: str = "Conformance report") -> str:
    """The Markdown text of ``report`` (a dict in the adamw-conformance/report schema)."""
    env = report.get("envelope", {})
    cases = list(report.get("cases", []))
    lines = [f"# {title}", ""]
    lines += ["| | |", "|---|---|"]
    lines.append(f"| command | `{_cell(env.get('command', ''))}` |")
    lines.append(f"| suite / spec | {env.get('suite_version')} / {env.get('spec_version')} |")
    lines.append(f"| commit | {env.get('commit') or '–'} |")
    lines.append(f"| created | {env.get('created', '–')} |")
    lines.append(f"| python / platform | {env.get('python')} / {_cell(env.get('platform', ''))} |")
    fw = ", ".join(f"{k} {v}" for k, v in sorted((env.get("frameworks") or {}).items()))
    lines.append(f"| frameworks | {_cell(fw)} |")
    for d in env.get("devices") or []:
        lines.append(
            f"| device ({d.get('kind')}) | {_cell(d.get('model'))}; driver "
            f"{d.get('driver') or '–'}; runtime {d.get('runtime') or '–'} |"
        )
    lines.append(f"| precision | {_cell(env.get('precision'))} |")
    lines.append(f"| seeds | {env.get('seeds')} |")
    if env.get("status") == "interrupted":
        lines.append(
            f"| status | **interrupted** ({len(cases)} of {env.get('planned', '?')} planned cases) |"
        )
    lines.append("")

    lines += ["## Outcome", "", f"**{outcome.headline(report)}** {outcome.closing_sentence(report)}", ""]
    for tier_name in outcome.TIERS:
        m = outcome.matrix(report, tier_name)
        if not m.rows:
            continue
        if tier_name == "distributed":
            lines += ["### Distributed tier", ""]
        lines += ["| implementation | " + " | ".join(m.columns) + " |", "|---|" + "---|" * len(m.columns)]
        for row in m.rows:
            cells = [outcome.cell_text(m.cell(row, col)) for col in m.columns]
            lines.append(f"| {_cell(row)} | " + " | ".join(cells) + " |")
        lines.append("")

    counts: dict[tuple[str, str, str, str], Counter[str]] = {}
    for c in cases:
        key = (c.get("adapter", ""), c.get("implementation", ""), c.get("device", ""), c.get("dtype", ""))
        counts.setdefault(key, Counter())[outcome.status(c)] += 1
    lines += [
        "## Verdicts",
        "",
        "| adapter | implementation | device | dtype | " + " | ".join(VERDICT_ORDER) + " |",
        "|---|---|---|---|" + "---:|" * len(VERDICT_ORDER),
    ]
    for key in sorted(counts):
        cnt = counts[key]
        lines.append(
            "| "
            + " | ".join(_cell(k) for k in key)
            + " | "
            + " | ".join(str(cnt.get(v, 0) or "") for v in VERDICT_ORDER)
            + " |"
        )
    lines.append("")

    lines += _bit_exact_section(report)

    bad = sorted(
        (c for c in cases if outcome.status(c) in outcome.UNEXPECTED),
        key=lambda c: (
            c.get("adapter", ""),
            c.get("implementation", ""),
            c.get("dtype", ""),
            c.get("scenario", ""),
            c.get("mode", ""),
            c.get("id", ""),
        ),
    )
    known = sorted((c for c in cases if outcome.status(c) == "known"), key=lambda c: str(c.get("id", "")))
    lines += ["## Findings (unexpected divergent and error cases)", ""]
    if not bad:
        lines += ["None.", ""]
        return "\n".join(lines + _known_section(known))
    lines += [
        "| case | verdict | first divergence | max rel. err | × bound | diagnosis | repro |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for c in bad:
        fd = c.get("first_divergence") or {}
        where = f"step {fd.get('step')}, {fd.get('param')}{list(fd.get('index') or [])}" if fd else "–"
        diag = c.get("diagnosis") or {}
        why = diag.get("detail") or (c.get("error") or "")[:300]
        lines.append(
            f"| `{_cell(c.get('id'))}` | {c.get('verdict')} | {_cell(where)} | "
            f"{_fmt(_max_metric(c, 'max_rel'))} | {_fmt(_bound_ratio(c))} | {_cell(why)} | "
            f"`{_cell(c.get('repro', ''))}` |"
        )
    lines.append("")
    return "\n".join(lines + _known_section(known))


def _known_section(known: list[Mapping[str, Any]]) -> list[str]:
    """Known findings: one row per entry with its case count and the first case id."""
    if not known:
        return []
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for c in known:
        groups.setdefault(str(c.get("expected")), []).append(c)
    lines = [
        "## Known findings (accepted; conformance/expectations/known_findings.txt)",
        "",
        "| entry | cases | max rel. err | × bound | e.g. |",
        "|---|---:|---:|---:|---|",
    ]
    for entry, cs in sorted(groups.items()):
        rel = max((_max_metric(c, "max_rel") or 0.0) for c in cs)
        ratio = max((_bound_ratio(c) or 0.0) for c in cs)
        lines.append(
            f"| `{_cell(entry)}` | {len(cs)} | {_fmt(rel)} | {_fmt(ratio)} | `{_cell(cs[0].get('id'))}` |"
        )
    return [*lines, ""]


def _share(x: float | None) -> str:
    """A fraction with enough digits that anything below 1 does not print as 1."""
    if x is None:
        return "–"
    return "1" if x == 1 else f"{min(x, 0.999999):.6f}".rstrip("0")


def _bit_exact_section(report: Mapping[str, Any]) -> list[str]:
    """Per implementation the fraction of elements its operation-order profile predicted
    exactly, then the cases that are not bit-exact (findings); nothing without such cases."""
    rows = outcome.bit_exact_rows(report)
    if not rows:
        return []
    lines = [
        "## Bit-exact profiles (tolerance `bit_exact`: 0 ulp against `adamw_ref.oporder`)",
        "",
        outcome.bit_exact_sentence(report),
        "",
        "| implementation | profile | bit-exact cases | not bit-exact | not covered | "
        "elements predicted exactly | max ulp |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        n = r.counts
        lines.append(
            f"| {_cell(r.row)} | `{_cell(r.profile)}` | {n['bit_exact']} | "
            f"{('**' + str(n['not_bit_exact']) + '**') if n['not_bit_exact'] else 0} | "
            f"{n['not_covered']} | {_share(r.fraction)} ({r.exact}/{r.elements}) | {_fmt(r.max_ulp)} |"
        )
    lines.append("")
    found = outcome.bit_exact_findings(report)
    lines += ["### Findings: cases not bit-exact against their profile", ""]
    if not found:
        return [*lines, "None.", ""]
    lines += [
        "| case | verdict | exact | first mismatch | max ulp | ulps (histogram) | repro |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for c in found:
        rec = outcome.bit_record(c) or {}
        fm = rec.get("first_mismatch") or {}
        where = (
            f"step {fm.get('step')}, {fm.get('slot')} {fm.get('param')}{list(fm.get('index') or [])}: "
            f"{fm.get('got')!r} vs {fm.get('predicted')!r} predicted"
            if fm
            else "–"
        )
        hist = ", ".join(f"{k}: {v}" for k, v in (rec.get("ulp_histogram") or {}).items())
        lines.append(
            f"| `{_cell(c.get('id'))}` | {c.get('verdict')} | {_share(rec.get('fraction'))} | "
            f"{_cell(where)} | {_fmt(rec.get('max_ulp'))} | {_cell(hist) or '–'} | "
            f"`{_cell(c.get('repro', ''))}` |"
        )
    return [*lines, ""]
