"""The report in a terminal: a summary a person reads in one screen.

:func:`summary_lines` lays it out as plain lines that fit ``width`` columns: a header, the
implementation x dtype matrix (worst status and counts per cell; ``skipped`` never outranks a
result; ``known`` apart from ``divergent``), one line per case that does not conform (unexpected
first, then known findings grouped by entry), and the closing sentence with the totals and what
the exit status means. :func:`print_summary` prints them, coloured on a terminal (rich) and plain
in a pipe; lines are never wrapped. :func:`render_terminal` with ``verbose`` adds the full case
table.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import Mapping
from typing import IO, Any

from conformance.report import outcome
from conformance.report.text import cases_of, diagnosis, first_divergence, fmt, max_ulp, text

#: rich styles per status.
RICH = {
    "exact": "bold green",
    "within_bound": "green",
    "acceptable": "yellow",
    "known": "dark_orange",
    "divergent": "bold red",
    "error": "bold magenta",
    "skipped": "dim",
}
#: Most unexpected cases listed one per line before "... N more".
MAX_LISTED = 40

Line = list[tuple[str, str]]  # (text, rich style) segments


def _fit(s: str, width: int) -> str:
    return s if len(s) <= width else s[: max(0, width - 1)] + "…"


def _cell(counts: Mapping[str, int]) -> tuple[str, str]:
    """The worst status with its count, of the cases that ran when not all of them: ``ok 30``,
    ``known 2/30``, ``DIVERGENT 2/30``; ``skipped 4`` when none ran (skipped cases are counted
    in the closing sentence, not in the cells)."""
    total = sum(n for s, n in counts.items() if s != "skipped")
    worst = outcome.worst(counts)
    if not worst:
        return "-", ""
    if worst in outcome.CONFORMING:
        n = sum(counts.get(s, 0) for s in outcome.CONFORMING)
        label = "exact" if counts.get("exact", 0) == n else "ok"
    else:
        n = counts.get(worst, 0)
        label = worst.upper() if worst in outcome.UNEXPECTED else worst
    shown = n if n == total or worst == "skipped" else f"{n}/{total}"
    return f"{label} {shown}", RICH.get(worst, "")


def _matrix_lines(report: Mapping[str, Any], width: int, tier_name: str | None = None) -> list[Line]:
    m = outcome.matrix(report, tier_name)
    if not m.rows:
        return []
    cells = {(r, c): _cell(m.cell(r, c)) for r in m.rows for c in m.columns}
    colw = {c: max([len(c)] + [len(cells[(r, c)][0]) for r in m.rows]) for c in m.columns}
    # rows grouped by adapter: "torch" then "  forloop", "  foreach", ...
    labels: list[tuple[str | None, str]] = []
    last = None
    for r in m.rows:
        adapter, _, impl = r.partition("[")
        impl = impl.rstrip("]")
        if impl and adapter != last:
            labels.append((None, adapter))
        labels.append((r, f"  {impl}" if impl else adapter))
        last = adapter
    labw = max(len(s) for _, s in labels)
    labw = max(8, min(labw, width - sum(colw[c] + 2 for c in m.columns)))
    head: Line = [(" " * labw, "")] + [(f"  {c:<{colw[c]}}", "bold") for c in m.columns]
    out = [head]
    for row, label in labels:
        line: Line = [(_fit(label, labw).ljust(labw), "bold" if row is None else "")]
        if row is not None:
            for c in m.columns:
                txt, style = cells[(row, c)]
                line.append(("  ", ""))
                line.append((txt.ljust(colw[c]), style))
        out.append(line)
    return out


def _ratio(case: Mapping[str, Any]) -> str:
    bound = case.get("bound")
    r = bound.get("max_ratio") if isinstance(bound, Mapping) else None
    return f"{fmt(r)}x bound" if r is not None else ""


def _case_line(case: Mapping[str, Any], width: int) -> list[Line]:
    st = outcome.status(case)
    label = st.upper() if st in outcome.UNEXPECTED else st
    head: Line = [
        ("  ", ""),
        (f"{label:<9} ", RICH.get(st, "")),
        (_fit(text(case.get("id")), width - 12), ""),
    ]
    fd = case.get("first_divergence")
    bits = [b for b in (_ratio(case), f"from step {fd.get('step')}" if isinstance(fd, Mapping) else "") if b]
    why = diagnosis(case).splitlines()[0] if diagnosis(case) else ""
    detail = "; ".join([*bits, why] if why and why != "-" else bits)
    return [head, [("            ", ""), (_fit(detail, width - 12), "dim")]] if detail else [head]


def summary_lines(report: Mapping[str, Any], width: int = 80, verbose: bool = False) -> list[Line]:
    """The summary as lines of styled segments, each at most ``width`` columns."""
    env = report.get("envelope") if isinstance(report, Mapping) else None
    env = env if isinstance(env, Mapping) else {}
    t = outcome.totals(report)
    rows = outcome.matrix(report).rows
    devices = sorted({str(c.get("device")) for c in cases_of(report) if c.get("device")})
    head = (
        f"adamw-conformance {text(env.get('suite_version'))}: {t.cases} cases, "
        f"{len(rows)} implementations, {'/'.join(devices) or '-'}, "
        f"seeds {','.join(map(str, env.get('seeds') or [])) or '-'}"
    )
    out: list[Line] = [[(line, "bold")] for line in textwrap.wrap(head, width)]
    if env.get("status") == "interrupted":
        out.append(
            [
                (
                    _fit(f"INTERRUPTED after {t.cases} of {env.get('planned', '?')} planned cases", width),
                    "bold red",
                )
            ]
        )
    out.append([])
    out += _matrix_lines(report, width, "single")
    dist = _matrix_lines(report, width, "distributed")
    if dist:
        out += [[], [("Distributed tier (--distributed):", "bold")], *dist]
    bad = outcome.unexpected(report)
    if bad:
        out += [[], [(f"Unexpected ({len(bad)}):", "bold red")]]
        for c in bad[: (len(bad) if verbose else MAX_LISTED)]:
            out += _case_line(c, width)
        if len(bad) > MAX_LISTED and not verbose:
            out.append([(f"  ... {len(bad) - MAX_LISTED} more (--verbose, or report.json)", "dim")])
    known: dict[str, int] = {}
    for c in cases_of(report):
        if outcome.status(c) == "known":
            entry = str(c.get("expected"))
            entry = entry if verbose else entry.split(" (", 1)[0]  # the pattern, without versions
            known[entry] = known.get(entry, 0) + 1
    if known:
        title = f"Known findings ({sum(known.values())} cases; conformance/expectations):"
        out += [[], [(_fit(title, width), "bold")]]
        for label, n in sorted(known.items()):
            out.append([("  ", ""), (_fit(f"{n:>3} x {label}", width - 2), RICH["known"])])
    bits = outcome.bit_exact_rows(report)
    if bits:
        out += [[], [(_fit("Bit-exact profiles (elements predicted exactly, 0 ulp):", width), "bold")]]
        for r in bits:
            share = (
                "-"
                if r.fraction is None
                else ("1" if r.fraction == 1 else f"{min(r.fraction, 0.999999):.6f}")
            )
            bad_n = r.counts["not_bit_exact"]
            label = f"{r.row}: {share}" + (f", {bad_n} case(s) not bit-exact" if bad_n else "")
            out.append([("  ", ""), (_fit(label, width - 2), "yellow" if bad_n else "")])
    style = "bold red" if outcome.exit_code(report) else "bold"
    out.append([])
    out += [[(line, style)] for line in textwrap.wrap(outcome.closing_sentence(report), width)]
    return out


def _plain(line: Line) -> str:
    return "".join(s for s, _ in line).rstrip()


def print_summary(
    report: Mapping[str, Any],
    stream: IO[str] | None = None,
    *,
    width: int | None = None,
    color: bool | None = None,
    verbose: bool = False,
) -> None:
    """Print :func:`summary_lines`: styled with rich on a terminal, plain text otherwise; no line
    is longer than ``width`` (default: the terminal's, or ``COLUMNS``, or 80 in a pipe)."""
    stream = stream or sys.stdout
    tty = stream.isatty() if hasattr(stream, "isatty") else False
    width = width or shutil.get_terminal_size((80, 24)).columns
    lines = summary_lines(report, width, verbose)
    if not (tty if color is None else color):
        for line in lines:
            print(_plain(line), file=stream)
        return
    from rich.console import Console
    from rich.text import Text

    con = Console(file=stream, width=width, force_terminal=True, highlight=False)
    for line in lines:
        t = Text()
        for s, style in line:
            t.append(s, style=style or None)
        con.print(t, overflow="fold", no_wrap=False, soft_wrap=False)


def render_terminal(report: Mapping[str, Any], console: Any = None, verbose: bool = True) -> None:
    """The full case table (rich), then the summary. ``console``: a rich Console to print to."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    con = console if console is not None else Console()
    if verbose:
        table = Table(title="adamw-ref conformance: every case", show_lines=False)
        for col in ("id", "status", "max ulp", "first divergence", "diagnosis"):
            table.add_column(col, overflow="fold")
        for c in cases_of(report):
            st = outcome.status(c)
            table.add_row(
                Text(text(c.get("id"))),
                Text(st, style=RICH.get(st, "")),
                Text(fmt(max_ulp(c))),
                Text(first_divergence(c)),
                Text(diagnosis(c)),
            )
        con.print(table)
    for line in summary_lines(report, con.width):
        t = Text()
        for s, style in line:
            t.append(s, style=style or None)
        con.print(t)
