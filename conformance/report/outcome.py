"""What a report says, the same in every rendering: each case's status, the implementation x
dtype matrix, the totals, the closing sentence and the exit status.

A case's **status** is its verdict, except that a ``divergent`` or ``error`` case matched by a
known finding (``case["expected"]`` names the entry) is ``known``. From best to worst:
:data:`STATUSES`. ``skipped`` stands apart: it never outranks a result, so a row with one
skipped variant and 29 conforming cases reads as conforming.

Exit status (the contract of ``adamw-conformance run`` and ``compare``): 0 when every case that
ran conforms or matches a known finding; 1 when a case diverges or errors unexpectedly, or when
no case ran at all (a run that checked nothing never passes); 2 is a usage error, decided before
any work.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Statuses from best to worst; ``skipped`` last and outside the ranking.
STATUSES: tuple[str, ...] = (
    "exact",
    "within_bound",
    "acceptable",
    "known",
    "divergent",
    "error",
    "skipped",
)
CONFORMING: frozenset[str] = frozenset({"exact", "within_bound", "acceptable"})
PASSING: frozenset[str] = CONFORMING | {"known"}
UNEXPECTED: frozenset[str] = frozenset({"divergent", "error"})
DTYPE_ORDER: tuple[str, ...] = ("float64", "float32", "float16", "bfloat16")
#: One colour per status (terminal styles in :mod:`conformance.report.terminal`).
COLORS: dict[str, str] = {
    "exact": "#1a7f37",
    "within_bound": "#2da44e",
    "acceptable": "#bf8700",
    "known": "#bc4c00",
    "divergent": "#cf222e",
    "error": "#8250df",
    "skipped": "#6e7781",
}


def _cases(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    cases = report.get("cases") if isinstance(report, Mapping) else None
    return [c for c in (cases or []) if isinstance(c, Mapping)]


def status(case: Mapping[str, Any]) -> str:
    """The case's verdict, or ``known`` for a divergent/error case matched by a known finding."""
    verdict = str(case.get("verdict") or "error")
    return "known" if verdict in UNEXPECTED and case.get("expected") else verdict


def rank(name: str) -> int:
    """Position in :data:`STATUSES` (unknown names rank as ``error``)."""
    return STATUSES.index(name) if name in STATUSES else STATUSES.index("error")


def worst(counts: Mapping[str, int]) -> str:
    """The worst status present that is not ``skipped``; ``skipped`` only when nothing else is;
    ``""`` for no cases."""
    ran = [s for s, n in counts.items() if n and s != "skipped"]
    if ran:
        return max(ran, key=rank)
    return "skipped" if counts.get("skipped") else ""


def row_key(case: Mapping[str, Any]) -> str:
    """``adapter[implementation]``, the matrix row of a case."""
    adapter = str(case.get("adapter") or "?")
    impl = case.get("implementation")
    return f"{adapter}[{impl}]" if impl else adapter


@dataclass
class Matrix:
    """Status counts per (implementation row, dtype column)."""

    rows: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)

    def cell(self, row: str, column: str) -> Counter[str]:
        return self.cells.get((row, column), Counter())


#: The tiers a report's matrix is drawn in: single-process cases, and the multi-process cases of
#: ``--distributed`` (those carrying a ``distributed`` record).
TIERS: tuple[str, ...] = ("single", "distributed")


def tier(case: Mapping[str, Any]) -> str:
    """``distributed`` for a case of the distributed tier, else ``single``."""
    return "distributed" if isinstance(case.get("distributed"), Mapping) else "single"


def matrix(report: Mapping[str, Any], tier_name: str | None = None) -> Matrix:
    """The implementation x dtype matrix of statuses: rows grouped by adapter (adapters and their
    implementations in the order the report first meets them), dtypes widest first. ``tier_name``
    (one of :data:`TIERS`) keeps that tier's cases only; None keeps all."""
    m = Matrix()
    adapters: list[str] = []
    for c in _cases(report):
        if tier_name is not None and tier(c) != tier_name:
            continue
        row, col = row_key(c), str(c.get("dtype") or "-")
        if row not in m.rows:
            m.rows.append(row)
        adapter = str(c.get("adapter") or "?")
        if adapter not in adapters:
            adapters.append(adapter)
        if col not in m.columns:
            m.columns.append(col)
        m.cells.setdefault((row, col), Counter())[status(c)] += 1
    first = {r: i for i, r in enumerate(m.rows)}
    m.rows.sort(
        key=lambda r: (
            adapters.index(r.split("[", 1)[0]) if r.split("[", 1)[0] in adapters else len(adapters),
            first[r],
        )
    )
    m.columns.sort(key=lambda d: (DTYPE_ORDER.index(d) if d in DTYPE_ORDER else len(DTYPE_ORDER), d))
    return m


def cell_text(counts: Mapping[str, int]) -> str:
    """A matrix cell in a few characters: ``ok 30``, ``known 6, ok 24``, ``DIVERGENT 2, ok 28``,
    ``skipped 4`` (unexpected statuses in capitals, so they stand out without colour)."""
    ok = sum(counts.get(s, 0) for s in CONFORMING)
    parts = []
    for s in ("error", "divergent", "known"):
        if counts.get(s):
            parts.append(f"{s.upper() if s in UNEXPECTED else s} {counts[s]}")
    if ok:
        parts.append(f"ok {ok}")
    if not parts and counts.get("skipped"):
        parts.append(f"skipped {counts['skipped']}")
    return ", ".join(parts) or "-"


def unexpected(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The cases that fail the run: divergent or error, not matched by a known finding."""
    return [c for c in _cases(report) if status(c) in UNEXPECTED]


def not_passing(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every case a reader should look at: unexpected first, then known findings, worst first."""
    cases = [c for c in _cases(report) if status(c) in UNEXPECTED | {"known"}]
    return sorted(cases, key=lambda c: (-rank(status(c)), str(c.get("id", ""))))


@dataclass(frozen=True)
class Totals:
    """Case counts by status, and how many ran (were not skipped)."""

    cases: int
    by_status: Counter[str]

    @property
    def ran(self) -> int:
        return self.cases - self.by_status.get("skipped", 0)

    @property
    def conforming(self) -> int:
        return sum(self.by_status.get(s, 0) for s in CONFORMING)

    @property
    def unexpected(self) -> int:
        return sum(self.by_status.get(s, 0) for s in UNEXPECTED)


def totals(report: Mapping[str, Any]) -> Totals:
    return Totals(cases=len(_cases(report)), by_status=Counter(status(c) for c in _cases(report)))


def exit_code(report: Mapping[str, Any]) -> int:
    """0: everything that ran conforms or is a known finding; 1: something unexpected, or
    nothing ran."""
    t = totals(report)
    return 1 if t.unexpected or t.ran == 0 else 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def closing_sentence(report: Mapping[str, Any]) -> str:
    """The totals and what the exit status means, in one or two sentences."""
    t = totals(report)
    b = t.by_status
    parts = [f"{t.conforming} conform" + (f" ({b['exact']} bit-exact)" if b.get("exact") else "")]
    parts.append(_plural(b.get("known", 0), "known finding"))
    parts.append(_plural(b.get("divergent", 0), "unexpected divergence"))
    parts.append(_plural(b.get("error", 0), "error"))
    if b.get("skipped"):
        parts.append(f"{b['skipped']} skipped")
    head = f"{_plural(t.cases, 'case')}: " + ", ".join(parts) + "."
    if t.cases == 0:
        return "No case was planned: nothing was checked. Exit status 1."
    if t.ran == 0:
        return f"{head} No case ran: nothing was checked. Exit status 1."
    if t.unexpected:
        return (
            f"{head} Exit status 1: {_plural(t.unexpected, 'case')} diverged or failed "
            "unexpectedly (listed above)."
        )
    known = " or matches a known finding" if b.get("known") else ""
    return f"{head} Exit status 0: every case that ran conforms{known}."


def headline(report: Mapping[str, Any]) -> str:
    """One line for the top of a report: does it conform, and if not, how many cases not."""
    t = totals(report)
    if t.ran == 0:
        return "Nothing was checked: no case ran."
    if t.unexpected:
        return f"{_plural(t.unexpected, 'case')} of {t.ran} diverged or failed unexpectedly."
    if t.by_status.get("known"):
        return (
            f"Conforms, apart from {_plural(t.by_status['known'], 'known finding')}: "
            f"{t.conforming} of {t.ran} cases conform."
        )
    return f"Conforms: all {t.ran} cases that ran conform."


def implementations_with(report: Mapping[str, Any], statuses: Sequence[str]) -> list[str]:
    """Matrix rows with at least one case in ``statuses``."""
    wanted = set(statuses)
    return sorted({row_key(c) for c in _cases(report) if status(c) in wanted})


# -- bit_exact: the cases against their operation-order profiles ----------------------------------
#: The ``bit_exact`` verdicts of a case (``case["bit_exact"]["verdict"]``, schema 1.2).
BIT_EXACT_VERDICTS: tuple[str, ...] = ("bit_exact", "not_bit_exact", "not_covered")


def bit_record(case: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The case's ``bit_exact`` record, or None (no profile, or a report older than 1.2)."""
    rec = case.get("bit_exact")
    return rec if isinstance(rec, Mapping) and rec.get("verdict") in BIT_EXACT_VERDICTS else None


@dataclass
class BitRow:
    """One implementation against its operation-order profile, over the report's cases."""

    row: str
    profile: str
    counts: Counter[str] = field(default_factory=Counter)  # bit_exact verdict -> cases
    elements: int = 0
    exact: int = 0
    max_ulp: float = 0.0

    @property
    def fraction(self) -> float | None:
        """Elements predicted exactly / elements compared (None: nothing was compared)."""
        return self.exact / self.elements if self.elements else None


def bit_exact_rows(report: Mapping[str, Any]) -> list[BitRow]:
    """Per implementation row (in matrix order) with a ``bit_exact`` record: the cases per
    ``bit_exact`` verdict and the fraction of elements its profile predicted exactly."""
    rows: dict[str, BitRow] = {}
    for c in _cases(report):
        rec = bit_record(c)
        if rec is None:
            continue
        key = row_key(c)
        r = rows.setdefault(key, BitRow(key, str(rec.get("profile") or "?")))
        r.counts[str(rec["verdict"])] += 1
        if rec["verdict"] != "not_covered":
            r.elements += int(rec.get("elements") or 0)
            r.exact += int(rec.get("exact") or 0)
            ulp = rec.get("max_ulp")
            if isinstance(ulp, (int, float)) and not isinstance(ulp, bool) and ulp == ulp:
                r.max_ulp = max(r.max_ulp, float(ulp))
    order = matrix(report).rows
    return sorted(rows.values(), key=lambda r: order.index(r.row) if r.row in order else len(order))


def bit_exact_findings(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The cases that are not bit-identical to their profile's prediction (findings, whatever
    their verdict against the bound), lowest fraction first."""
    out = [c for c in _cases(report) if (bit_record(c) or {}).get("verdict") == "not_bit_exact"]
    return sorted(out, key=lambda c: (float((bit_record(c) or {}).get("fraction") or 0.0), str(c.get("id"))))


def bit_exact_sentence(report: Mapping[str, Any]) -> str:
    """One sentence on the profiled cases, or ``""`` when no case has a ``bit_exact`` record."""
    rows = bit_exact_rows(report)
    if not rows:
        return ""
    n = Counter[str]()
    for r in rows:
        n.update(r.counts)
    elements = sum(r.elements for r in rows)
    exact = sum(r.exact for r in rows)
    share = f" ({exact} of {elements} elements, {exact / elements:.6g})" if elements else ""
    covered = f"; {n['not_covered']} outside their profile" if n["not_covered"] else ""
    return (
        f"Operation-order profiles (0 ulp): {n['bit_exact']} of {n['bit_exact'] + n['not_bit_exact']} "
        f"predicted cases bit-exact{share}, {_plural(n['not_bit_exact'], 'finding')}{covered}."
    )
