"""``adamw-conformance``: run the suite, re-render a report, list scenarios and adapters.

::

    adamw-conformance run [--adapter NAME|pkg.mod:factory ...] [--device cpu|cuda]
                          [--dtype D ...] [--scenario S ...] [--mode free|teacher_forced]
                          [--seeds 0-19] [--quick|--full] [--out DIR] [--jobs 2] [--timeout S]
    adamw-conformance report DIR          # re-render (terminal, plots, HTML if available)
    adamw-conformance list                # scenarios, adapters and whether installed
    adamw-conformance compare CPU_DIR GPU_DIR [--out DIR]   # cpu_vs_gpu cases
    adamw-conformance summary DIR [--title T] [--md OUT]    # the report as Markdown
    adamw-conformance vectors verify --adapter NAME | lint  # the test vectors

Exit status of ``run`` and ``compare``: 0 when no case is ``divergent`` or ``error`` other than
those matched by ``--xfails-file`` (known findings), 1 otherwise.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conformance.report import schema as rp


def _render(report: rp.Report, out_dir: Path | None, *, html: bool = True) -> None:
    try:
        from conformance.report.terminal import render_terminal
    except ImportError:  # rich is not installed
        _plain_summary(report)
        return
    try:
        render_terminal(report)
        if out_dir is not None and html:
            from conformance.report.html import render_html
            from conformance.report.plots import render_plots

            path = render_html(report, out_dir, render_plots(report, out_dir))
            print(f"HTML report: {path}")
    except Exception as exc:  # a rendering bug must not lose the JSON report
        print(f"(rendering failed: {type(exc).__name__}: {exc}; the JSON report is intact)", file=sys.stderr)
        _plain_summary(report)


def _plain_summary(report: rp.Report) -> None:
    counts = rp.summarize(report)
    print("verdicts: " + ", ".join(f"{k}={v}" for k, v in counts.items() if v))
    for c in report["cases"]:
        if c["verdict"] in ("divergent", "error"):
            diag: dict[str, Any] = dict(c["diagnosis"] or {})
            why = diag.get("detail") or (c["error"] or "")[:200]
            print(f"  {c['verdict']:>9}  {c['id']}: {why}")
            print(f"             repro: {c['repro']}")


def _progress(total_hint: int) -> tuple[Any, Any, Any]:
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    except ImportError:
        return None, None, None
    prog = Progress(
        TextColumn("[bold]conformance"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        transient=False,
    )
    task = prog.add_task("starting", total=total_hint or None)
    return prog, task, None


def cmd_run(ns: argparse.Namespace) -> int:
    from conformance.runner import Runner, default_adapters, installed
    from conformance.worker import parse_seeds

    adapters = ns.adapter or default_adapters()
    if not ns.adapter:
        skipped = [a for a in _builtin() if a not in adapters]
        for a in skipped:
            print(f"not installed, skipped: {a} ({installed(a)[1]})", file=sys.stderr)
    seeds = parse_seeds(ns.seeds, ns.full)
    wargs: list[str] = ["--device", ns.device, "--seeds", ",".join(map(str, seeds))]
    for s in ns.scenario or []:
        wargs += ["--scenario", s]
    for d in ns.dtype or []:
        wargs += ["--dtype", d]
    for m in ns.mode or []:
        wargs += ["--mode", m]
    for i in ns.implementation or []:
        wargs += ["--implementation", i]
    if ns.quick:
        wargs.append("--quick")
    if ns.full:
        wargs.append("--full")
    if ns.no_diagnose:
        wargs.append("--no-diagnose")
    out = Path(ns.out)
    wargs += ["--save-traj", str(out / "traj")]
    command = "adamw-conformance " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    prog, task, _ = (None, None, None) if ns.no_progress else _progress(0)
    state = {"total": 0, "done": 0}

    def on_plan(n: int) -> None:
        state["total"] += n
        if prog is not None:
            prog.update(task, total=state["total"])

    def on_case(case: dict[str, Any]) -> None:
        state["done"] += 1
        if prog is not None:
            prog.update(task, advance=1, description=f"{case['verdict']}: {case['id']}")

    if ns.timeout is None:
        ns.timeout = 3600.0 if ns.full else 300.0
    runner = Runner(
        adapters,
        out,
        wargs,
        seeds=seeds,
        jobs=ns.jobs,
        timeout=ns.timeout,
        command=command,
        on_case=on_case,
        on_plan=on_plan,
    )
    if prog is not None:
        with prog:
            report = runner.run()
    else:
        report = runner.run()
    if ns.closed_loop or ns.full:
        _run_closed_loop(report, adapters, ns, runner.path)
    _apply_known_findings(report, ns.xfails_file, runner.path)
    print(f"report: {runner.path}")
    if not ns.no_render:
        _render(report, out)
    return _exit_status(report)


def _run_closed_loop(
    report: rp.Report, adapters: Sequence[str], ns: argparse.Namespace, report_path: Path
) -> None:
    """Append the closed-loop cases (digits logreg and MLP, each framework in its own process)
    for the selected adapters that have a closed-loop runner; the report is rewritten after
    each framework so nothing is lost if a later one crashes or hangs."""
    from conformance.closed_loop.suite import FRAMEWORKS, TASKS, closed_loop_cases, run_in_subprocess

    if ns.device != "cpu":
        print("closed loop: CPU only; skipped for --device " + ns.device, file=sys.stderr)
        return
    frameworks = [a for a in adapters if a in FRAMEWORKS]
    if "torch" not in frameworks and frameworks:
        frameworks.insert(0, "torch")  # the naive-port comparison needs the torch run
    records: list[dict[str, Any]] = []
    cases: list[dict[str, Any]] = report["cases"]  # type: ignore[assignment]
    base = len(cases)
    for task in TASKS:
        for fw in frameworks:
            print(f"closed loop: {fw} {task} ({ns.closed_loop_steps} steps)", file=sys.stderr, flush=True)
            records.append(
                run_in_subprocess(fw, task, ns.closed_loop_steps, "float64", 0, timeout=ns.timeout)
            )
            del cases[base:]
            cases.extend(closed_loop_cases(records))
            rp.write_atomic(report_path, report)


def _apply_known_findings(report: rp.Report, path: str | None, report_path: Path) -> None:
    """Mark cases matched by the known-findings file; warn about entries that match nothing."""
    if not path:
        return
    from conformance.expectations import mark_expected, read_entries

    cases: list[dict[str, Any]] = report["cases"]  # type: ignore[assignment]
    fixed, not_run = mark_expected(cases, read_entries(path))
    for entry in fixed:
        print(
            f"warning: --xfails-file {path}: {entry!r} matches cases here but none diverges: "
            "the finding is gone (fixed?); remove the entry",
            file=sys.stderr,
        )
    if not_run:
        print(
            f"note: --xfails-file {path}: {len(not_run)} entries match no case of this run "
            f"(other devices or adapters, or typos): {', '.join(not_run)}",
            file=sys.stderr,
        )
    rp.write_atomic(report_path, report)


def _exit_status(report: rp.Report) -> int:
    bad = [c for c in report["cases"] if c["verdict"] in ("divergent", "error") and not c.get("expected")]
    return 1 if bad else 0


def cmd_summary(ns: argparse.Namespace) -> int:
    from conformance.report.markdown import render_markdown

    text = render_markdown(rp.load(Path(ns.dir)), title=ns.title)
    if ns.md:
        Path(ns.md).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


def _builtin() -> list[str]:
    from adapters.registry import BUILTIN_ADAPTERS

    return list(BUILTIN_ADAPTERS)


def cmd_report(ns: argparse.Namespace) -> int:
    report = rp.load(Path(ns.dir))
    _render(report, Path(ns.dir), html=not ns.no_html)
    return 0


def cmd_list(ns: argparse.Namespace) -> int:
    from adapters.registry import available_adapters
    from conformance.runner import installed
    from conformance.scenarios import SCENARIOS

    print("Scenarios (tags; dtypes; features needed):")
    for s in SCENARIOS:
        feats = ",".join(s.features) or "-"
        print(
            f"  {s.id:<18} {s.steps:>6} steps  [{','.join(sorted(s.tags))}]  "
            f"{','.join(s.dtypes)}  needs: {feats}"
        )
        print(f"      {s.description}")
    print("Adapters:")
    for name, spec in available_adapters().items():
        ok, why = installed(name)
        print(f"  {name:<18} {'yes' if ok else 'no ':<4} {why:<32} {spec}")
    return 0


def cmd_compare(ns: argparse.Namespace) -> int:
    from conformance.crossdevice import compare_reports
    from conformance.runner import make_envelope

    rows = compare_reports(Path(ns.cpu_dir), Path(ns.gpu_dir))
    cpu = rp.load(Path(ns.cpu_dir))
    env = make_envelope("adamw-conformance " + " ".join(sys.argv[1:]), cpu["envelope"]["seeds"])
    gpu = rp.load(Path(ns.gpu_dir))
    env["frameworks"] = {**cpu["envelope"]["frameworks"], **gpu["envelope"]["frameworks"]}
    env["devices"] = cpu["envelope"]["devices"] + [
        d for d in gpu["envelope"]["devices"] if d not in cpu["envelope"]["devices"]
    ]
    env["precision"] = gpu["envelope"]["precision"]
    report = rp.new_report(env)
    report["cases"] = rows  # type: ignore[typeddict-item]
    out = Path(ns.out)
    rp.write_atomic(out / "report.json", report)
    _apply_known_findings(report, ns.xfails_file, out / "report.json")
    print(f"report: {out / 'report.json'} ({len(rows)} cpu_vs_gpu cases)")
    _render(report, out)
    return _exit_status(report)


def build_parser() -> argparse.ArgumentParser:
    from conformance.worker import add_selection_args

    ap = argparse.ArgumentParser(
        prog="adamw-conformance", description="AdamW conformance suite (see docs/conformance)"
    )
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the suite over installed adapters")
    r.add_argument(
        "--adapter",
        action="append",
        default=None,
        help="built-in name, entry point or package.module:factory (repeatable); "
        "default: every installed built-in adapter",
    )
    add_selection_args(r)
    r.add_argument("--out", default="adamw-conformance-report", help="output directory")
    r.add_argument("--jobs", type=int, default=2, help="worker processes at a time")
    r.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per adapter worker (default 300; 3600 with --full, whose "
        "five seeds, long runs and unbounded diagnosis take far longer)",
    )
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--no-render", action="store_true")
    r.add_argument(
        "--closed-loop",
        action="store_true",
        help="also train the closed-loop tasks (digits logistic regression and MLP) "
        "in every selected framework and the reference (implied by --full)",
    )
    r.add_argument("--closed-loop-steps", type=int, default=200, help="steps per closed-loop task")
    r.add_argument(
        "--xfails-file",
        default=None,
        help="known findings: case-id substrings (# comments); matched divergent or "
        "error cases are marked expected and do not fail the exit status",
    )
    r.set_defaults(func=cmd_run)
    p = sub.add_parser("report", help="re-render a report directory")
    p.add_argument("dir")
    p.add_argument("--no-html", action="store_true")
    p.set_defaults(func=cmd_report)
    ls = sub.add_parser("list", help="list scenarios and adapters")
    ls.set_defaults(func=cmd_list)
    c = sub.add_parser("compare", help="cpu_vs_gpu: compare a CPU report with a GPU report")
    c.add_argument("cpu_dir")
    c.add_argument("gpu_dir")
    c.add_argument("--out", default="adamw-conformance-cpu-vs-gpu")
    c.add_argument("--xfails-file", default=None, help="known findings (as for run)")
    c.set_defaults(func=cmd_compare)
    sm = sub.add_parser("summary", help="write a report as Markdown")
    sm.add_argument("dir")
    sm.add_argument("--title", default="Conformance report")
    sm.add_argument("--md", default=None, help="write to this file instead of stdout")
    sm.set_defaults(func=cmd_summary)
    v = sub.add_parser(
        "vectors",
        add_help=False,
        help="the test vectors: 'verify --adapter NAME' runs an implementation "
        "against them, 'lint' checks the files against the JSON Schema "
        "(see 'adamw-conformance vectors --help')",
    )
    v.set_defaults(func=None)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    import numpy as np

    np.seterr(all="ignore")
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["vectors"]:
        from conformance.vectors import vectors_main

        return vectors_main(args[1:])
    ns = build_parser().parse_args(args)
    rc: int = ns.func(ns)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
