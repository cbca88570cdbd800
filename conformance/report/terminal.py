"""The report in a terminal: the case table and one summary line per adapter/dtype (rich)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conformance.report.text import cases_of, diagnosis, first_divergence, fmt, max_ulp, summary_lines, text

RICH = {
    "exact": "bold green",
    "within_bound": "green",
    "acceptable": "yellow",
    "divergent": "bold red",
    "error": "magenta",
    "skipped": "dim",
}


def render_terminal(report: Mapping[str, Any], console: Any = None) -> None:
    """Print the case table and the per-adapter summary with rich."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    con = console if console is not None else Console()
    table = Table(title="adamw-ref conformance", show_lines=False)
    for col in (
        "adapter",
        "impl",
        "device",
        "dtype",
        "scenario",
        "mode",
        "verdict",
        "max ulp",
        "first divergence",
        "diagnosis",
    ):
        table.add_column(col, overflow="fold")
    for c in cases_of(report):
        v = text(c.get("verdict"), "unknown")
        cells = [
            text(c.get("adapter")),
            text(c.get("implementation")),
            text(c.get("device")),
            text(c.get("dtype")),
            text(c.get("scenario")),
            text(c.get("mode")),
        ]
        tail = [fmt(max_ulp(c)), first_divergence(c), diagnosis(c)]
        table.add_row(*[Text(x) for x in cells], Text(v, style=RICH.get(v, "")), *[Text(x) for x in tail])
    con.print(table)
    if not cases_of(report):
        con.print("no cases")
    for line in summary_lines(report):
        con.print(line, markup=False, highlight=False)
