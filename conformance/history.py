"""``adamw-conformance matrix``: the conformance history over framework releases.

::

    adamw-conformance matrix REPORT... [--md FILE] [--json FILE] [--title T] [--notes FILE]

Each ``REPORT`` is a report directory (holding ``report.json``), a ``report.json`` file, or a
glob of either (``matrix-out/*``), typically one per tox env of the matrix (``tox -m matrix``).
The reports are merged into one table per implementation (``adapter[implementation]``, the rows
of :func:`conformance.report.outcome.matrix`): one row per **release**, one column per dtype,
each cell the statuses of :func:`~conformance.report.outcome.cell_text`.

A release is the versions of the packages an adapter runs on, read from the report envelope's
``frameworks`` (:data:`ADAPTER_PACKAGES`: Keras and its backend, Optax and JAX, MLX, PyTorch),
ordered by :class:`packaging.version.Version` of each in turn (so 3.9.2 comes before 3.10.0).

A **finding** is a case family that diverges or errors: the cases of one implementation, device,
dtype and scenario (any mode, any seed) whose *verdict* is ``divergent`` or ``error``, known
finding or not (the matrix runs with ``--strict``). For each finding the history says in which
release it first appears, in which it disappears (the first release after one where it was
present in which the same cases ran and none diverged), and whether it is still there in the
newest release. A release where the family did not run, or was skipped, neither starts nor
ends a finding.

Output: Markdown (stdout, or ``--md FILE``) and, with ``--json FILE``, the merged history as JSON
(schema ``adamw-conformance/history`` 1.0). ``--notes FILE`` inserts a written account (Markdown)
after the summary. Bad input (a path that does not exist, a glob that matches nothing, a file that
is not a report, two reports of the same implementation at the same release) is a one-line error
and exit status 2; otherwise the exit status is 0: the history records divergences, it does not
judge them.
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from packaging.version import InvalidVersion, Version

from conformance.report import outcome
from conformance.report import schema as rp

PROG = "adamw-conformance matrix"
EXIT_USAGE = 2
SCHEMA = "adamw-conformance/history"
SCHEMA_VERSION = "1.0"
FINDING_VERDICTS: frozenset[str] = frozenset({"divergent", "error"})
#: The packages whose versions make an adapter's release, the one under test first.
ADAPTER_PACKAGES: dict[str, tuple[str, ...]] = {
    "keras-jax": ("keras", "jax"),
    "keras-tensorflow": ("keras", "tensorflow"),
    "keras-torch": ("keras", "torch"),
    "optax": ("optax", "jax"),
    "mlx": ("mlx",),
    "torch": ("torch",),
    "torch-adam": ("torch",),
    "reference": ("adamw_ref",),
}
#: Sidecar written next to report.json by ``python -m tools.tox_matrix run`` (optional).
SIDECAR = "matrix-env.json"
_GLOB_CHARS = frozenset("*?[")


class UsageError(Exception):
    """Bad input: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# -- inputs ---------------------------------------------------------------------------------
@dataclass
class Run:
    """One report and what the matrix env recorded beside it."""

    path: Path
    report: Mapping[str, Any]
    env: str | None = None
    exit_status: int | None = None
    wall_s: float | None = None

    @property
    def frameworks(self) -> dict[str, str]:
        fw = (self.report.get("envelope") or {}).get("frameworks") or {}
        return {str(k): str(v) for k, v in fw.items()} if isinstance(fw, Mapping) else {}

    @property
    def name(self) -> str:
        return self.env or self.path.name


def expand(specs: Sequence[str]) -> list[Path]:
    """Report files for ``specs`` (directories, files, globs), in order, without repeats."""
    out: list[Path] = []
    for spec in specs:
        if _GLOB_CHARS & set(spec):
            hits = sorted(glob.glob(spec))
            if not hits:
                raise UsageError(f"REPORT {spec!r}: the pattern matches nothing")
            paths = [Path(h) for h in hits]
            # A glob over an output folder may catch stray files: keep what holds a report.
            paths = [
                p
                for p in paths
                if (p / "report.json").is_file() or (p.suffix == ".json" and p.name != SIDECAR)
            ]
            if not paths:
                raise UsageError(f"REPORT {spec!r}: no match holds a report.json")
        else:
            p = Path(spec)
            if not p.exists():
                raise UsageError(f"REPORT {spec!r}: no such file or directory")
            paths = [p]
        for p in paths:
            f = p / "report.json" if p.is_dir() else p
            if p.is_dir() and not f.is_file():
                raise UsageError(f"REPORT {str(p)!r}: the directory holds no report.json")
            if f.resolve() not in {q.resolve() for q in out}:
                out.append(f)
    return out


def load_runs(files: Iterable[Path]) -> list[Run]:
    runs = []
    for f in files:
        try:
            report = rp.load(f)
        except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"REPORT {str(f)!r} is not a conformance report: {msg}") from None
        if not isinstance(report.get("cases"), list):
            raise UsageError(f"REPORT {str(f)!r} is not a conformance report: no 'cases' list")
        run = Run(path=f.parent if f.name == "report.json" else f, report=report)
        side = f.parent / SIDECAR
        if side.is_file():
            try:
                meta = json.loads(side.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                meta = {}
            if isinstance(meta, dict):
                run.env = str(meta["env"]) if meta.get("env") else None
                run.exit_status = (
                    meta.get("exit_status") if isinstance(meta.get("exit_status"), int) else None
                )
                wall = meta.get("wall_s")
                run.wall_s = float(wall) if isinstance(wall, (int, float)) else None
        runs.append(run)
    return runs


# -- releases -------------------------------------------------------------------------------
def _version_key(text: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(text))
    except InvalidVersion:
        return (0, text)


@dataclass(frozen=True)
class Release:
    """The versions an adapter ran on: ``(("keras", "3.0.5"), ("jax", "0.4.25"))``."""

    versions: tuple[tuple[str, str], ...]

    @property
    def label(self) -> str:
        return " · ".join(f"{p} {v}" for p, v in self.versions) or "unknown"

    def sort_key(self) -> tuple[tuple[int, Version | str], ...]:
        return tuple(_version_key(v) for _, v in self.versions)


def packages_for(adapter: str, frameworks: Mapping[str, str]) -> tuple[str, ...]:
    """The packages that make ``adapter``'s release (a plug-in adapter: every framework the
    report names, apart from adamw_ref and numpy)."""
    known = ADAPTER_PACKAGES.get(adapter)
    if known is not None:
        return known
    return tuple(sorted(k for k in frameworks if k not in ("adamw_ref", "numpy")))


def release_of(adapter: str, frameworks: Mapping[str, str]) -> Release:
    return Release(tuple((p, frameworks[p]) for p in packages_for(adapter, frameworks) if p in frameworks))


def sort_releases(releases: Iterable[Release]) -> list[Release]:
    """Oldest first, by :class:`~packaging.version.Version` of each package in turn."""
    return sorted(set(releases), key=lambda r: (r.sort_key(), r.label))


# -- the merge ------------------------------------------------------------------------------
@dataclass
class Line:
    """One implementation at one release: its cells and the run it came from."""

    release: Release
    run: Run
    cases: list[Mapping[str, Any]] = field(default_factory=list)
    cells: dict[str, Counter[str]] = field(default_factory=dict)


@dataclass
class Finding:
    """A case family (implementation, device, dtype, scenario) that diverges or errors."""

    implementation: str
    device: str
    dtype: str
    scenario: str
    states: dict[str, str]  # release label -> divergent | error | absent | skipped | missing
    appears: list[str]  # releases where it appears (after an absent one, or the oldest)
    disappears: list[str]  # releases where it is gone after being present
    details: dict[str, str]  # release label -> the diagnosis or the error, where present
    causes: dict[str, str] = field(default_factory=dict)  # the same without the measured sizes

    @property
    def verdicts(self) -> list[str]:
        """The verdicts where present, in release order, without repeats in a row."""
        out: list[str] = []
        for s in self.states.values():
            if s in FINDING_VERDICTS and (not out or out[-1] != s):
                out.append(s)
        return out

    @property
    def verdict(self) -> str:
        """``divergent``, ``error``, or how it changed (``error → divergent``)."""
        return " → ".join(self.verdicts)

    @property
    def detail(self) -> str:
        """The newest detail of each verdict, oldest verdict first."""
        newest: dict[str, str] = {}
        for label, d in self.details.items():
            newest[self.states[label]] = d
        if len(newest) == 1:
            return next(iter(newest.values()))
        return "; ".join(f"{v}: {newest[v]}" for v in dict.fromkeys(self.verdicts) if newest.get(v))

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.implementation, self.device, self.dtype, self.scenario)


@dataclass
class History:
    runs: list[Run]
    lines: dict[str, list[Line]]  # implementation -> lines, oldest release first
    findings: list[Finding]


def _adapter_rank(impl: str) -> tuple[int, str]:
    adapter = impl.split("[", 1)[0]
    order = list(ADAPTER_PACKAGES)
    return (order.index(adapter) if adapter in order else len(order), impl)


def merge(runs: Sequence[Run]) -> History:
    """The history of ``runs``: a line per (implementation, release), and the findings."""
    by_impl: dict[str, dict[Release, Line]] = {}
    for run in runs:
        m = outcome.matrix(run.report)
        cases = [c for c in run.report.get("cases") or [] if isinstance(c, Mapping)]
        for row in m.rows:
            impl_cases = [c for c in cases if outcome.row_key(c) == row]
            adapter = str(impl_cases[0].get("adapter") or "?") if impl_cases else row.split("[", 1)[0]
            release = release_of(adapter, run.frameworks)
            lines = by_impl.setdefault(row, {})
            if release in lines:
                other = lines[release].run.path
                raise UsageError(
                    f"REPORT {str(run.path)!r}: {row} at {release.label} is also in {str(other)!r} "
                    "(one report per release)"
                )
            cells = {col: m.cell(row, col) for col in m.columns if m.cell(row, col)}
            lines[release] = Line(release, run, impl_cases, cells)
    ordered = {
        impl: [lines[r] for r in sort_releases(lines)]
        for impl, lines in sorted(by_impl.items(), key=lambda kv: _adapter_rank(kv[0]))
    }
    return History(sorted(runs, key=_run_key), ordered, _findings(ordered))


def _run_key(run: Run) -> tuple[Any, ...]:
    """Runs in the order of the tables: by adapter, then by release."""
    cases = [c for c in run.report.get("cases") or [] if isinstance(c, Mapping)]
    adapter = str(cases[0].get("adapter") or "?") if cases else "?"
    release = release_of(adapter, run.frameworks)
    return (_adapter_rank(adapter + "[")[0], adapter, release.sort_key(), release.label, str(run.path))


_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Timeout)\b.*)$")


def _error_line(text: str) -> str:
    """The line of a traceback that names the exception (the last one), else the last line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if _EXCEPTION.match(ln):
            return ln[:160]
    return (lines[-1] if lines else "error")[:160]


def _detail(case: Mapping[str, Any]) -> str:
    if case.get("verdict") == "error":
        return _error_line(str(case.get("error") or "error"))
    diag = case.get("diagnosis") or {}
    bound = case.get("bound") or {}
    parts = []
    ratio = bound.get("max_ratio") if isinstance(bound, Mapping) else None
    if isinstance(ratio, (int, float)):
        parts.append(f"{ratio:.3g}x bound")
    fd = case.get("first_divergence") or {}
    if isinstance(fd, Mapping) and isinstance(fd.get("step"), int):
        parts.append(f"from step {fd['step']}")
    if isinstance(diag, Mapping) and diag.get("explained_by"):
        parts.append(f"explained by {diag['explained_by']}")
    return ", ".join(parts)


def _cause(case: Mapping[str, Any]) -> str:
    """What a divergence is put down to (the error, the knob or profile), without the sizes that
    vary from case to case: the Markdown merges the families that share it."""
    if case.get("verdict") == "error":
        return _error_line(str(case.get("error") or "error"))
    diag = case.get("diagnosis") or {}
    return str(diag.get("explained_by") or "unexplained") if isinstance(diag, Mapping) else "unexplained"


def _findings(lines: Mapping[str, list[Line]]) -> list[Finding]:
    out: list[Finding] = []
    for impl, impl_lines in lines.items():
        keys: dict[tuple[str, str, str], None] = {}
        for ln in impl_lines:
            for c in ln.cases:
                if c.get("verdict") in FINDING_VERDICTS:
                    keys[(str(c.get("device")), str(c.get("dtype")), str(c.get("scenario")))] = None
        for device, dtype, scenario in keys:
            states: dict[str, str] = {}
            details: dict[str, str] = {}
            causes: dict[str, str] = {}
            for ln in impl_lines:
                fam = [
                    c
                    for c in ln.cases
                    if (str(c.get("device")), str(c.get("dtype")), str(c.get("scenario")))
                    == (device, dtype, scenario)
                ]
                verdicts = {str(c.get("verdict")) for c in fam}
                if not fam:
                    state = "missing"
                elif verdicts & FINDING_VERDICTS:
                    bad = [c for c in fam if c.get("verdict") in FINDING_VERDICTS]
                    first = max(bad, key=lambda c: outcome.rank(str(c.get("verdict"))))
                    state = str(first.get("verdict"))
                    details[ln.release.label] = _detail(first)
                    causes[ln.release.label] = _cause(first)
                elif verdicts <= {"skipped"}:
                    state = "skipped"
                else:
                    state = "absent"
                states[ln.release.label] = state
            appears, disappears, last = [], [], None
            for ln in impl_lines:
                s = "present" if states[ln.release.label] in FINDING_VERDICTS else states[ln.release.label]
                if s not in ("present", "absent"):
                    continue
                if s == "present" and last != "present":
                    appears.append(ln.release.label)
                if s == "absent" and last == "present":
                    disappears.append(ln.release.label)
                last = s
            out.append(Finding(impl, device, dtype, scenario, states, appears, disappears, details, causes))
    return out


# -- rendering ------------------------------------------------------------------------------
def _columns(lines: Sequence[Line]) -> list[str]:
    return sorted({c for ln in lines for c in ln.cells}, key=_dtype_rank)


def _cell(counts: Counter[str] | None) -> str:
    return outcome.cell_text(counts) if counts else "-"


def _rel(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


@dataclass
class Group:
    """Findings of one implementation and device with the same history, for the Markdown: the
    first of them, and the dtypes and scenarios they cover."""

    first: Finding
    dtypes: list[str]
    scenarios: list[str]

    @property
    def what(self) -> str:
        dev = f" ({self.first.device})" if self.first.device != "cpu" else ""
        return f"{'/'.join(self.dtypes)} {', '.join(self.scenarios)}{dev}"


def _dtype_rank(d: str) -> tuple[int, str]:
    return (outcome.DTYPE_ORDER.index(d) if d in outcome.DTYPE_ORDER else len(outcome.DTYPE_ORDER), d)


def _group(findings: Sequence[Finding]) -> list[Group]:
    """Findings of one implementation and device with the same states and causes in every
    release, merged."""
    groups: dict[tuple[Any, ...], Group] = {}
    for f in findings:
        # A release that did not run the family (missing) or skipped it reads the same here.
        states = tuple(
            (r, "-" if s in ("missing", "skipped") else s, f.causes.get(r, "")) for r, s in f.states.items()
        )
        k = (f.implementation, f.device, states)
        g = groups.setdefault(k, Group(f, [], []))
        if f.dtype not in g.dtypes:
            g.dtypes.append(f.dtype)
            g.dtypes.sort(key=_dtype_rank)
        if f.scenario not in g.scenarios:
            g.scenarios.append(f.scenario)
    return list(groups.values())


def _oldest_ran(f: Finding, lines: Sequence[Line]) -> str | None:
    """The oldest release where the finding's cases ran (present or absent)."""
    for ln in lines:
        if f.states.get(ln.release.label) in {"absent", *FINDING_VERDICTS}:
            return ln.release.label
    return None


def _newest_state(f: Finding, lines: Sequence[Line]) -> str:
    for ln in reversed(lines):
        s = f.states.get(ln.release.label)
        if s == "absent":
            return "gone"
        if s in FINDING_VERDICTS:
            return f"still present ({s})"
    return "-"


def changes(history: History, impl: str) -> list[str]:
    """Sentences: what changed from one release of ``impl`` to the next."""
    lines = history.lines[impl]
    out = []
    for prev, cur in itertools.pairwise(lines):
        came: list[str] = []
        went: list[str] = []
        turned: list[str] = []
        for g in _group([f for f in history.findings if f.implementation == impl]):
            a, b = g.first.states.get(prev.release.label), g.first.states.get(cur.release.label)
            what = g.what
            if a == "absent" and b in FINDING_VERDICTS:
                came.append(f"{what} ({b})")
            elif a in FINDING_VERDICTS and b == "absent":
                went.append(what)
            elif a in FINDING_VERDICTS and b in FINDING_VERDICTS and a != b:
                turned.append(f"{what} ({a} → {b})")
        if came or went or turned:
            parts = []
            if came:
                parts.append("new: " + "; ".join(came))
            if went:
                parts.append("fixed: " + "; ".join(went))
            if turned:
                parts.append("changed: " + "; ".join(turned))
            out.append(f"{prev.release.label} → {cur.release.label}: " + ". ".join(parts) + ".")
    return out


def render_markdown(history: History, title: str = "Conformance history", notes: str | None = None) -> str:
    runs, lines = history.runs, history.lines
    releases = sum(len(v) for v in lines.values())
    out = [f"# {title}", ""]
    out.append(
        f"{len(runs)} runs of `adamw-conformance run --strict`, {len(lines)} implementations, "
        f"{releases} implementation × release rows, merged by `adamw-conformance matrix`. "
        "A cell counts the cases of one dtype by status (`ok` conforms; `DIVERGENT` and `ERROR` "
        "in capitals; with `--strict`, known findings count as divergent). A finding is a "
        "(implementation, dtype, scenario) family that diverges or errors; the tables below say in "
        "which release each first appears and in which it disappears."
    )
    out.append("")
    if notes:
        out += [notes.strip(), ""]
    for impl, impl_lines in lines.items():
        out += [f"## {impl}", ""]
        cols = _columns(impl_lines)
        out.append("| release | " + " | ".join(cols) + " |")
        out.append("|---|" + "---|" * len(cols))
        for ln in impl_lines:
            cells = " | ".join(_cell(ln.cells.get(c)) for c in cols)
            out.append(f"| {_md(ln.release.label)} | {cells} |")
        out.append("")
        ch = changes(history, impl)
        if ch:
            out += [f"* {_md(c)}" for c in ch]
            out.append("")
    fs = _group(history.findings)
    out += ["## Findings", ""]
    if not fs:
        out += ["No case diverged or failed in any release.", ""]
    else:
        out.append(
            "| implementation | dtype | scenarios | verdict | first seen | gone in | newest | detail |"
        )
        out.append("|---|---|---|---|---|---|---|---|")
        for g in fs:
            f = g.first
            first = f.appears[0] if f.appears else "-"
            if f.appears and f.appears[0] == _oldest_ran(f, lines[f.implementation]):
                first += " (oldest tested)"
            later = f", again in {', '.join(f.appears[1:])}" if len(f.appears) > 1 else ""
            gone = ", ".join(f.disappears) or "-"
            dt = "/".join(g.dtypes) + (f" ({f.device})" if f.device != "cpu" else "")
            row = [
                f.implementation,
                dt,
                ", ".join(g.scenarios),
                f.verdict,
                first + later,
                gone,
                _newest_state(f, lines[f.implementation]),
                f.detail or "-",
            ]
            out.append("| " + " | ".join(_md(c) for c in row) + " |")
        out.append("")
    out += ["## Runs", ""]
    out.append("| run | frameworks | cases | exit status | suite wall time |")
    out.append("|---|---|---|---|---|")
    for r in runs:
        fw = ", ".join(f"{k} {v}" for k, v in r.frameworks.items())
        t = outcome.totals(r.report)
        code = r.exit_status if r.exit_status is not None else outcome.exit_code(r.report)
        wall = f"{r.wall_s:.0f} s" if r.wall_s is not None else "-"
        out.append(f"| {_md(r.name)} | {_md(fw)} | {t.cases} | {code} | {wall} |")
    out.append("")
    return "\n".join(out)


def to_json(history: History) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "runs": [
            {
                "run": r.name,
                "path": _rel(r.path),
                "frameworks": r.frameworks,
                "created": (r.report.get("envelope") or {}).get("created"),
                "command": (r.report.get("envelope") or {}).get("command"),
                "cases": outcome.totals(r.report).cases,
                "by_status": dict(outcome.totals(r.report).by_status),
                "exit_status": r.exit_status if r.exit_status is not None else outcome.exit_code(r.report),
                "wall_s": r.wall_s,
            }
            for r in history.runs
        ],
        "implementations": [
            {
                "implementation": impl,
                "releases": [
                    {
                        "release": ln.release.label,
                        "versions": dict(ln.release.versions),
                        "run": ln.run.name,
                        "cells": {
                            col: {
                                "status": outcome.worst(counts),
                                "text": outcome.cell_text(counts),
                                "counts": dict(counts),
                            }
                            for col, counts in ln.cells.items()
                        },
                    }
                    for ln in impl_lines
                ],
                "changes": changes(history, impl),
            }
            for impl, impl_lines in history.lines.items()
        ],
        "findings": [
            {
                "implementation": f.implementation,
                "device": f.device,
                "dtype": f.dtype,
                "scenario": f.scenario,
                "verdict": f.verdict,
                "first_appears": f.appears[0] if f.appears else None,
                "appears": f.appears,
                "disappears": f.disappears,
                "states": f.states,
                "details": f.details,
                "detail": f.detail,
            }
            for f in history.findings
        ],
    }


# -- command line ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog=PROG,
        description="Merge the reports of many runs (one per framework release) into a version x "
        "implementation x dtype history, with the release where each finding appears and disappears.",
        epilog="exit status: 0 the history was written; 2 bad input (one line naming it)",
    )
    ap.add_argument(
        "reports", nargs="+", metavar="REPORT", help="report directories, report.json files or globs"
    )
    ap.add_argument("--md", metavar="FILE", help="write the Markdown to FILE (default: stdout)")
    ap.add_argument("--json", metavar="FILE", help="also write the merged history as JSON")
    ap.add_argument("--title", default="Conformance history", help="the Markdown title")
    ap.add_argument(
        "--notes", metavar="FILE", help="a written account (Markdown) to insert after the summary"
    )
    return ap


def matrix_main(argv: list[str]) -> int:
    """``adamw-conformance matrix``: see the module docstring. Returns the exit status."""
    try:
        ns = build_parser().parse_args(argv)
    except SystemExit as exc:  # a usage error (one line, printed) or --help: a status, not an exit
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        notes = None
        if ns.notes is not None:
            try:
                notes = Path(ns.notes).read_text(encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"--notes {ns.notes!r}: {exc.strerror or exc}") from None
        for opt, value in (("--md", ns.md), ("--json", ns.json)):
            if value is not None and (value == "" or Path(value).is_dir()):
                raise UsageError(f"{opt} {value!r}: not a file path")
        history = merge(load_runs(expand(ns.reports)))
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    md = render_markdown(history, ns.title, notes)
    if ns.md:
        Path(ns.md).parent.mkdir(parents=True, exist_ok=True)
        Path(ns.md).write_text(md, encoding="utf-8")
        print(f"{PROG}: {len(history.runs)} reports -> {ns.md}", file=sys.stderr)
    else:
        sys.stdout.write(md)
    if ns.json:
        Path(ns.json).parent.mkdir(parents=True, exist_ok=True)
        Path(ns.json).write_text(json.dumps(to_json(history), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(matrix_main(sys.argv[1:]))
