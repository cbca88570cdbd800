"""``adamw-conformance``: run the suite, re-render a report, list scenarios and adapters.

::

    adamw-conformance run [--adapter NAME|pkg.mod:factory ...] [--device cpu|cuda]
                          [--dtype D ...] [--scenario S ...] [--mode free|teacher_forced]
                          [--seeds 0-19] [--quick|--full] [--out DIR [--force]] [--jobs 2]
                          [--threads N]
                          [--timeout S] [--strict | --known-findings FILE] [--verbose]
    adamw-conformance run --resume DIR      # finish an interrupted run
    adamw-conformance report DIR [--table]  # re-render (terminal, plots, HTML)
    adamw-conformance list                  # scenarios, adapters and whether installed
    adamw-conformance compare CPU_DIR GPU_DIR [--out DIR]   # cpu_vs_gpu cases
    adamw-conformance summary DIR [--title T] [--md OUT]    # the report as Markdown
    adamw-conformance vectors verify --adapter NAME | lint  # the test vectors
    adamw-conformance identify SPEC [--json]              # which profile/knobs an optimizer is
    adamw-conformance matrix DIR... [--md OUT]            # conformance history over releases
    adamw-conformance bench [--sizes ...] [--json FILE]   # step time against the roofline

Exit status of ``run`` and ``compare`` (:mod:`conformance.report.outcome`): 0 when every case
that ran conforms or matches a known finding; 1 when a case diverges or errors unexpectedly, or
when no case ran; 2 for a usage error (decided before any work, one line naming the option and
the value); 130 / 143 when interrupted by SIGINT / SIGTERM (the report is kept, marked
``interrupted``; ``run --resume DIR`` finishes it).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from conformance import __version__
from conformance import options as opt
from conformance.report import outcome
from conformance.report import schema as rp

PROG = "adamw-conformance"
EXIT_USAGE = 2
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
EXIT_STATUS_HELP = (
    "exit status: 0 every case that ran conforms or matches a known finding; 1 a case diverged "
    "or failed unexpectedly, or no case ran; 2 usage error; 130/143 interrupted (SIGINT/SIGTERM; "
    "the report is kept, 'run --resume DIR' finishes it)"
)
#: Options stored in the report envelope, from which ``--resume`` restarts a run.
RESUMABLE = (
    "adapter",
    "scenario",
    "dtype",
    "mode",
    "seeds",
    "device",
    "implementation",
    "quick",
    "full",
    "no_diagnose",
    "diagnose_budget",
    "closed_loop",
    "closed_loop_steps",
    "distributed",
    "strict",
    "known_findings",
)


class Interrupted(Exception):
    """SIGINT or SIGTERM outside the runner's loop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``adamw-conformance run: error: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _say(*lines: str) -> None:
    for line in lines:
        print(line, file=sys.stderr, flush=True)


# -- rendering ------------------------------------------------------------------------------
def _render(
    report: rp.Report, out_dir: Path | None, *, html: bool = True, verbose: bool = False, table: bool = False
) -> None:
    """Terminal summary, then plots and HTML into ``out_dir``. A rendering failure is reported in
    one line and never loses the JSON report."""
    from conformance.report.terminal import print_summary

    if table:
        try:
            from conformance.report.terminal import render_terminal

            render_terminal(report, verbose=True)
        except ImportError:  # rich is not installed: the summary below still prints
            pass
    print_summary(report, verbose=verbose)
    if out_dir is None or not html:
        return
    try:
        from conformance.report.html import render_html
        from conformance.report.plots import render_plots

        path = render_html(report, out_dir, render_plots(report, out_dir))
        print(f"HTML report: {_short_path(path)}")
    except Exception as exc:  # a rendering bug must not lose the JSON report
        _say(f"{PROG}: HTML/plots not rendered ({type(exc).__name__}: {exc}); the JSON report is intact")


def _short_path(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (shorter lines)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# -- run ------------------------------------------------------------------------------------
def _validate(ns: argparse.Namespace) -> dict[str, Any]:
    """Every run option checked and normalised (``UsageError`` otherwise); nothing runs yet."""
    if ns.quick and ns.full:
        raise opt.UsageError("--quick", "", "cannot be combined with --full")
    if ns.no_diagnose and ns.diagnose_budget is not None:
        raise opt.UsageError("--diagnose-budget", ns.diagnose_budget, "has no effect with --no-diagnose")
    if ns.closed_loop_steps is not None and not (ns.closed_loop or ns.full):
        raise opt.UsageError(
            "--closed-loop-steps", ns.closed_loop_steps, "has no effect without --closed-loop (or --full)"
        )
    if ns.strict and ns.known_findings is not None:
        raise opt.UsageError("--known-findings", ns.known_findings, "cannot be combined with --strict")
    device = opt.device(ns.device)
    adapters, notes = opt.adapters(ns.adapter, device, ns.adapter_arg or ())
    v: dict[str, Any] = {
        "adapter": adapters,
        "notes": notes,
        "device": device,
        "scenario": opt.scenarios(ns.scenario),
        "dtype": list(dict.fromkeys(ns.dtype)) if ns.dtype else None,
        "mode": list(dict.fromkeys(ns.mode)) if ns.mode else None,
        "seeds": opt.seeds(ns.seeds, ns.full),
        "implementation": opt.implementations(ns.implementation, adapters, device),
        "quick": ns.quick,
        "full": ns.full,
        "no_diagnose": ns.no_diagnose,
        "diagnose_budget": None
        if ns.diagnose_budget is None
        else opt.seconds("--diagnose-budget", ns.diagnose_budget, allow_zero=True),
        "jobs": opt.positive_int("--jobs", ns.jobs, 64),
        "threads": None if ns.threads is None else opt.positive_int("--threads", ns.threads, 1024),
        "timeout": None if ns.timeout is None else opt.seconds("--timeout", ns.timeout),
        "closed_loop": bool(ns.closed_loop or ns.full),
        "closed_loop_steps": 200
        if ns.closed_loop_steps is None
        else opt.positive_int("--closed-loop-steps", ns.closed_loop_steps, 100_000),
        "distributed": bool(ns.distributed or ns.full),
        "strict": ns.strict,
        "known_findings": None
        if ns.strict
        else str(
            opt.readable_file("--known-findings", ns.known_findings)
            if ns.known_findings
            else _shipped_findings()
        ),
    }
    if not adapters:
        raise opt.UsageError("--adapter", "", "no adapter is installed for this device: " + "; ".join(notes))
    if v["known_findings"]:
        _read_findings(v["known_findings"])  # a malformed file is a usage error, before the run
    return v


def _shipped_findings() -> Path:
    from conformance.expectations import KNOWN_FINDINGS

    return KNOWN_FINDINGS


def _read_findings(path: str) -> list[Any]:
    from conformance.expectations import ExpectationFileError, read_findings

    try:
        return read_findings(path)
    except ExpectationFileError as exc:
        raise opt.UsageError("--known-findings", path, str(exc)) from None


def _worker_args(v: dict[str, Any], out: Path) -> tuple[list[str], list[str]]:
    """(arguments for every worker, the same selection as user-facing options for repros)."""
    sel: list[str] = ["--device", v["device"], "--seeds", ",".join(map(str, v["seeds"]))]
    for key, flag in (
        ("scenario", "--scenario"),
        ("dtype", "--dtype"),
        ("mode", "--mode"),
        ("implementation", "--implementation"),
    ):
        for x in v[key] or []:
            sel += [flag, x]
    for key, flag in (("quick", "--quick"), ("full", "--full"), ("no_diagnose", "--no-diagnose")):
        if v[key]:
            sel.append(flag)
    if v["diagnose_budget"] is not None:
        sel += ["--diagnose-budget", repr(v["diagnose_budget"])]
    return [*sel, "--save-traj", str(out / "traj")], sel


class _Progress:
    """A progress bar on a terminal; in a pipe, one line per finished adapter."""

    def __init__(self, enabled: bool, n_adapters: int) -> None:
        self.tty = enabled and sys.stderr.isatty()
        self.enabled, self.total, self.done, self.workers = enabled, 0, 0, 0
        self.n_adapters = n_adapters
        self.bar: Any = None
        self.task: Any = None
        if self.tty:
            try:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

                self.bar = Progress(
                    TextColumn("[bold]conformance"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.description}"),
                    transient=True,
                    console=Console(file=sys.stderr),
                )
                self.task = self.bar.add_task("starting", total=None)
            except ImportError:
                self.tty = False

    def plan(self, n: int) -> None:
        self.total += n
        if self.bar is not None:
            self.bar.update(self.task, total=self.total)

    def case(self, case: dict[str, Any]) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=f"{outcome.status(case)}: {case['id']}")

    def worker_done(self, name: str, n: int, seconds: float) -> None:
        self.workers += 1
        if self.enabled and not self.tty:
            _say(f"  [{self.workers}/{self.n_adapters}] {name}: {n} cases in {seconds:.1f} s")

    @contextmanager
    def shown(self) -> Iterator[None]:
        if self.bar is None:
            yield
            return
        with self.bar:
            yield


@contextmanager
def _signals(handler: Callable[[int], None]) -> Iterator[None]:
    """Route SIGINT and SIGTERM to ``handler`` while inside the block."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        handler(signum)

    old = {s: signal.signal(s, on_signal) for s in EXIT_SIGNAL}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _raise(signum: int) -> None:
    raise Interrupted(signum)


def cmd_run(ns: argparse.Namespace) -> int:
    if ns.resume:
        return _resume(ns)
    v = _validate(ns)
    out = opt.out_dir(ns.out, ns.force)
    if ns.force:
        opt.clear_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    from conformance.runner import make_envelope

    command = f"{PROG} " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = rp.new_report(make_envelope(command, v["seeds"]))
    report["envelope"]["options"] = {k: v[k] for k in RESUMABLE}
    report["envelope"]["known_findings"] = v["known_findings"]
    return _execute(report, v, out, ns, skip=set())


def _resume(ns: argparse.Namespace) -> int:
    given = [
        f"--{k.replace('_', '-')}"
        for k in (*RESUMABLE, "adapter_arg")
        if getattr(ns, k, None) not in (None, False) and not (k == "device" and ns.device == "cpu")
    ]
    given += ["--out"] if ns.out is not None else []
    if given:
        raise opt.UsageError(
            given[0],
            getattr(ns, given[0][2:].replace("-", "_"), ""),
            "cannot be combined with --resume (the run keeps its own options)",
        )
    directory = Path(ns.resume)
    try:
        report = rp.load(directory)
    except (OSError, ValueError) as exc:
        raise opt.UsageError("--resume", ns.resume, f"no readable report there ({exc})") from None
    options = report["envelope"].get("options")
    if not isinstance(options, dict):
        raise opt.UsageError(
            "--resume",
            ns.resume,
            "the report has no stored options (made before "
            "resume existed, or not by 'run'): run it again with --force",
        )
    if report["envelope"].get("status") == "complete":
        _say(f"{PROG}: {directory} is already complete; nothing to resume")
        _render(report, None)
        return outcome.exit_code(report)
    v = dict(options)
    v.update(
        notes=[],
        jobs=opt.positive_int("--jobs", ns.jobs, 64),
        threads=None if ns.threads is None else opt.positive_int("--threads", ns.threads, 1024),
        timeout=None if ns.timeout is None else opt.seconds("--timeout", ns.timeout),
    )
    kept = [c for c in report["cases"] if c.get("mode") != "closed_loop" and "distributed" not in c]
    report["cases"] = kept
    report["envelope"]["planned"] = len(kept)
    _say(f"{PROG}: resuming {directory}: {len(kept)} cases kept, running the rest")
    return _execute(report, v, directory, ns, skip={str(c["id"]) for c in kept})


def _execute(report: rp.Report, v: dict[str, Any], out: Path, ns: argparse.Namespace, skip: set[str]) -> int:
    from conformance.runner import Runner

    for note in v["notes"]:
        _say(f"note: {note}")
    wargs, repro = _worker_args(v, out)
    timeout = v["timeout"] if v["timeout"] is not None else (3600.0 if v["full"] else 300.0)
    prog = _Progress(not ns.no_progress, len(v["adapter"]))
    head = (
        f"{PROG} {__version__}: {len(v['adapter'])} adapters ({', '.join(v['adapter'])}) on "
        f"{v['device']}, seeds {','.join(map(str, v['seeds']))}; report: {_short_path(out / 'report.json')}"
    )
    width = shutil.get_terminal_size((80, 24)).columns
    _say(*textwrap.wrap(head, width, subsequent_indent="  ", break_on_hyphens=False))
    runner = Runner(
        v["adapter"],
        out,
        wargs,
        seeds=v["seeds"],
        jobs=v["jobs"],
        threads=v["threads"],
        timeout=timeout,
        on_case=prog.case,
        on_plan=prog.plan,
        on_worker_done=prog.worker_done,
        repro_args=repro,
        report=report,
        skip_ids=skip,
    )
    with _signals(runner.stop), prog.shown():
        report = runner.run()
    if runner.stopped is not None:
        return _interrupted(report, out, runner.stopped)
    try:
        with _signals(_raise):
            if v["closed_loop"]:
                _run_closed_loop(report, v, runner.path, timeout)
            if v.get("distributed"):
                _run_distributed(report, v, runner.path, out)
            _apply_known_findings(report, v["known_findings"], runner.path, ns.verbose)
    except Interrupted as exc:
        report["envelope"]["status"] = "interrupted"
        rp.write_atomic(runner.path, report)
        return _interrupted(report, out, exc.signum)
    if not ns.no_render:
        _render(report, out, verbose=ns.verbose, table=ns.verbose)
    else:
        print(outcome.closing_sentence(report))
    return outcome.exit_code(report)


def _interrupted(report: rp.Report, out: Path, signum: int) -> int:
    name = signal.Signals(signum).name
    _say(
        f"{PROG}: interrupted by {name}: {len(report['cases'])} finished cases kept in "
        f"{out / 'report.json'} (marked interrupted); finish with: {PROG} run --resume {out}"
    )
    return EXIT_SIGNAL.get(signal.Signals(signum), 128 + int(signum))


def _run_closed_loop(report: rp.Report, v: dict[str, Any], report_path: Path, timeout: float) -> None:
    """Append the closed-loop cases (digits logreg and MLP, each framework in its own process)
    for the selected adapters that have a closed-loop runner; the report is rewritten after
    each framework so nothing is lost if a later one crashes or hangs."""
    from conformance.closed_loop.suite import (
        FRAMEWORKS,
        FULL_TASKS,
        TASKS,
        closed_loop_cases,
        run_in_subprocess,
    )

    if v["device"] != "cpu":
        _say(f"note: closed loop runs on the CPU only; not run for --device {v['device']}")
        return
    frameworks = [a for a in v["adapter"] if a in FRAMEWORKS]
    if "torch" not in frameworks and frameworks:
        frameworks.insert(0, "torch")  # the naive-port comparison needs the torch run
    if not frameworks:
        _say("note: closed loop: none of the selected adapters has a closed-loop task")
        return
    records: list[dict[str, Any]] = []
    cases: list[dict[str, Any]] = report["cases"]  # type: ignore[assignment]
    base = len(cases)
    steps = v["closed_loop_steps"]
    for task in FULL_TASKS if v["full"] else TASKS:
        for fw in frameworks:
            _say(f"  closed loop: {fw} {task} ({steps} steps)")
            records.append(run_in_subprocess(fw, task, steps, "float64", 0, timeout=timeout))
            del cases[base:]
            cases.extend(closed_loop_cases(records))
            rp.write_atomic(report_path, report)


def _run_distributed(
    report: rp.Report,
    v: dict[str, Any],
    report_path: Path,
    out: Path,
) -> None:
    """Append the distributed tier's cases (``conformance.distributed``) for the selected
    adapters: torch strategies when ``torch`` is selected, JAX sharding with ``optax``, federated
    averaging for both; the report is rewritten after every case so nothing is lost."""
    from conformance.distributed import cases as dist
    from conformance.distributed import problem

    adapters = set(v["adapter"])
    # --implementation and --dtype narrow the tier as they narrow the run; its scenarios are its
    # own (dist_basic, dist_eps, dist_groups) and it runs the first seed
    impls = [
        i
        for i in (v["implementation"] or problem.TORCH_IMPLEMENTATIONS)
        if i in problem.TORCH_IMPLEMENTATIONS
    ]
    dtypes = [d for d in (v["dtype"] or problem.DTYPES) if d in problem.DTYPES]
    strategies = dist.STRATEGIES if "torch" in adapters and impls else ()
    jax = "optax" in adapters
    federated = [f for f in ("torch", "optax") if f in adapters]
    if not dtypes or not (strategies or jax or federated):
        _say(
            "note: distributed: nothing to run (the tier needs the torch or optax adapter, "
            f"implementations {list(problem.TORCH_IMPLEMENTATIONS)} for torch, dtypes {list(problem.DTYPES)})"
        )
        return
    if len(v["seeds"]) > 1:
        _say(f"note: distributed: runs seed {v['seeds'][0]} only (of {v['seeds']})")
    cases: list[dict[str, Any]] = report["cases"]  # type: ignore[assignment]
    _say("  distributed: " + ", ".join([*strategies, *(["jax sharding"] if jax else [])]) + " …")

    done: list[str] = []
    t0 = time.monotonic()

    total = [0]

    def plan(n: int) -> None:
        total[0] = n
        report["envelope"]["planned"] = len(cases) + n
        rp.write_atomic(report_path, report)
        _say(f"  distributed: {n} cases planned")

    def emit(case: dict[str, Any]) -> None:
        cases.append(case)
        rp.write_atomic(report_path, report)
        done.append(outcome.status(case))
        if len(done) % 25 == 0:  # the summary lists the non-conforming ones, known findings applied
            _say(f"    {len(done)} of {total[0]} distributed cases in {time.monotonic() - t0:.0f} s")

    dist.run_distributed(
        out,
        world_sizes=(2, 4),
        on_case=emit,
        strategies=strategies,
        implementations=impls,
        dtypes=dtypes,
        seed=v["seeds"][0],
        jax=jax,
        federated=bool(federated),
        federated_frameworks=federated,
        nccl=v["device"] == "cuda",
        diagnose=not v["no_diagnose"],
        on_plan=plan,
    )


def _apply_known_findings(
    report: rp.Report, path: str | None, report_path: Path, verbose: bool = False
) -> None:
    """Mark the cases the known findings explain; say which entries look fixed or were observed
    on other framework versions."""
    from conformance.expectations import mark_known

    if not path:
        return
    cases: list[dict[str, Any]] = report["cases"]  # type: ignore[assignment]
    res = mark_known(cases, _read_findings(path), report["envelope"]["frameworks"])
    for f in res.fixed:
        _say(f"note: known finding {f.label} matches cases here but none diverges: fixed? ({path}:{f.line})")
    for label, why in res.other_version.items():
        _say(
            f"note: known finding {label} does not apply here ({'; '.join(why)}): its cases are "
            "reported as unexpected; confirm and update the entry"
        )
    if verbose and res.not_run:
        _say(f"note: {len(res.not_run)} known findings match no case of this run (other devices or adapters)")
    rp.write_atomic(report_path, report)


# -- other commands -------------------------------------------------------------------------
def _load(option: str, directory: str) -> rp.Report:
    try:
        return rp.load(Path(directory))
    except FileNotFoundError:
        raise opt.UsageError(option, directory, "no report.json there") from None
    except (OSError, ValueError) as exc:
        raise opt.UsageError(option, directory, f"not a readable report: {exc}") from None


def cmd_summary(ns: argparse.Namespace) -> int:
    from conformance.report.markdown import render_markdown

    text = render_markdown(_load("DIR", ns.dir), title=ns.title)
    if ns.md:
        try:
            Path(ns.md).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise opt.UsageError("--md", ns.md, f"cannot be written: {exc.strerror}") from None
    else:
        print(text)
    return 0


def cmd_report(ns: argparse.Namespace) -> int:
    report = _load("DIR", ns.dir)
    _render(report, Path(ns.dir), html=not ns.no_html, verbose=ns.verbose, table=ns.table)
    return outcome.exit_code(report)


def cmd_list(ns: argparse.Namespace) -> int:
    from adapters.registry import available_adapters
    from conformance.runner import installed
    from conformance.scenarios import SCENARIOS

    if ns.json:
        print(
            json.dumps(
                {
                    "scenarios": [s.to_json() for s in SCENARIOS],
                    "adapters": [
                        {"name": n, "spec": spec, "installed": installed(n)[0], "why": installed(n)[1]}
                        for n, spec in available_adapters().items()
                    ],
                },
                indent=2,
            )
        )
        return 0
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

    cpu, gpu = _load("CPU_DIR", ns.cpu_dir), _load("GPU_DIR", ns.gpu_dir)
    if ns.strict and ns.known_findings is not None:
        raise opt.UsageError("--known-findings", ns.known_findings, "cannot be combined with --strict")
    findings = (
        None
        if ns.strict
        else str(
            opt.readable_file("--known-findings", ns.known_findings)
            if ns.known_findings
            else _shipped_findings()
        )
    )
    out = opt.out_dir(ns.out, ns.force)
    if ns.force:
        opt.clear_previous(out)
    rows = compare_reports(Path(ns.cpu_dir), Path(ns.gpu_dir))
    env = make_envelope(f"{PROG} " + " ".join(shlex.quote(a) for a in sys.argv[1:]), cpu["envelope"]["seeds"])
    env["frameworks"] = {**cpu["envelope"]["frameworks"], **gpu["envelope"]["frameworks"]}
    env["devices"] = cpu["envelope"]["devices"] + [
        d for d in gpu["envelope"]["devices"] if d not in cpu["envelope"]["devices"]
    ]
    env["precision"] = gpu["envelope"]["precision"]
    env["status"], env["planned"], env["known_findings"] = "complete", len(rows), findings
    report = rp.new_report(env)
    report["cases"] = rows  # type: ignore[typeddict-item]
    rp.write_atomic(out / "report.json", report)
    _apply_known_findings(report, findings, out / "report.json")
    print(f"report: {out / 'report.json'} ({len(rows)} cpu_vs_gpu cases)")
    _render(report, out)
    return outcome.exit_code(report)


# -- parser ---------------------------------------------------------------------------------
def _findings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--known-findings",
        "--xfails-file",
        dest="known_findings",
        metavar="FILE",
        default=None,
        help="known findings to accept (default: the shipped "
        "conformance/expectations/known_findings.txt; format in that file); "
        "--xfails-file is an alias",
    )
    p.add_argument(
        "--strict",
        "--no-known-findings",
        dest="strict",
        action="store_true",
        help="apply no known findings: every divergence fails the exit status",
    )


def build_parser() -> argparse.ArgumentParser:
    from conformance.worker import add_selection_args

    ap = _Parser(
        prog=PROG, description="The AdamW conformance suite (docs/conformance).", epilog=EXIT_STATUS_HELP
    )
    ap.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    r = sub.add_parser("run", help="run the suite over installed adapters", epilog=EXIT_STATUS_HELP)
    r.add_argument(
        "--adapter",
        action="append",
        default=None,
        help="built-in name, entry point, 'keras' (every installed Keras backend), "
        "package.module:factory, or a wrapper spec: torch:pkg.Class (any torch optimizer), "
        "optax:pkg.factory, keras[-jax|-tensorflow|-torch]:pkg.Class, numpy:pkg.Class "
        "(docs/adapters/generic.md); repeatable; default: every installed built-in adapter",
    )
    r.add_argument(
        "--adapter-arg",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="a constructor argument for every wrapper spec (repeatable; VALUE as JSON, else a "
        "string; same as SPEC?KEY=VALUE)",
    )
    add_selection_args(r)
    r.add_argument(
        "--out", default=None, metavar="DIR", help="output directory (default: adamw-conformance-report)"
    )
    r.add_argument(
        "--force", action="store_true", help="replace an earlier run in --out (removes only its report files)"
    )
    r.add_argument(
        "--resume", metavar="DIR", default=None, help="finish an interrupted run in DIR with its own options"
    )
    r.add_argument("--jobs", default="2", metavar="N", help="worker processes at a time (default 2)")
    r.add_argument(
        "--threads",
        default=None,
        metavar="N",
        help="threads per worker (default: cores // jobs, at least 1; OMP_NUM_THREADS etc. you set win)",
    )
    r.add_argument(
        "--timeout",
        default=None,
        metavar="SECONDS",
        help="seconds per adapter worker (default 300; 3600 with --full)",
    )
    r.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (in a pipe: no per-adapter progress lines)",
    )
    r.add_argument(
        "--no-render", action="store_true", help="write report.json only: no terminal summary, plots or HTML"
    )
    r.add_argument(
        "--verbose",
        action="store_true",
        help="the full case table and every non-conforming case, not only a summary",
    )
    r.add_argument(
        "--closed-loop",
        action="store_true",
        help="also train the closed-loop tasks (digits logistic regression and MLP) "
        "in every selected framework and the reference (implied by --full)",
    )
    r.add_argument(
        "--closed-loop-steps", default=None, metavar="N", help="steps per closed-loop task (default 200)"
    )
    r.add_argument(
        "--distributed",
        action="store_true",
        help="also run the distributed tier: torch DDP, ZeRO and FSDP2 at 2 and 4 ranks (gloo; "
        "NCCL with --device cuda), DCP checkpoint resume, JAX sharding, federated averaging "
        "(implied by --full; docs/conformance/distributed.md)",
    )
    _findings_args(r)
    r.set_defaults(func=cmd_run)
    p = sub.add_parser("report", help="re-render a report directory (exit status as for run)")
    p.add_argument("dir", metavar="DIR", help="a directory holding report.json")
    p.add_argument("--no-html", action="store_true", help="terminal summary only")
    p.add_argument("--table", action="store_true", help="also print the full case table")
    p.add_argument("--verbose", action="store_true", help="list every non-conforming case")
    p.set_defaults(func=cmd_report)
    ls = sub.add_parser("list", help="list scenarios and adapters")
    ls.add_argument("--json", action="store_true", help="as JSON")
    ls.set_defaults(func=cmd_list)
    c = sub.add_parser(
        "compare", help="cpu_vs_gpu: compare a CPU report with a GPU report", epilog=EXIT_STATUS_HELP
    )
    c.add_argument("cpu_dir", metavar="CPU_DIR", help="report directory of the CPU run")
    c.add_argument("gpu_dir", metavar="GPU_DIR", help="report directory of the matched CUDA run")
    c.add_argument("--out", default="adamw-conformance-cpu-vs-gpu", metavar="DIR", help="output directory")
    c.add_argument("--force", action="store_true", help="replace an earlier comparison in --out")
    _findings_args(c)
    c.set_defaults(func=cmd_compare)
    sm = sub.add_parser("summary", help="write a report as Markdown")
    sm.add_argument("dir", metavar="DIR", help="a directory holding report.json")
    sm.add_argument("--title", default="Conformance report", help="the document's title")
    sm.add_argument("--md", default=None, metavar="FILE", help="write to FILE instead of stdout")
    sm.set_defaults(func=cmd_summary)
    v = sub.add_parser(
        "vectors",
        add_help=False,
        help="the test vectors: 'verify --adapter NAME' runs an implementation "
        "against them, 'lint' checks the files against the JSON Schema",
    )
    v.set_defaults(func=None)
    for name, text in (
        (
            "identify",
            "fingerprint an optimizer: which profile, knobs and flags reproduce it "
            "(see 'adamw-conformance identify --help')",
        ),
        (
            "matrix",
            "merge the reports of many runs (one per framework release) into the "
            "conformance history (see 'adamw-conformance matrix --help')",
        ),
        (
            "bench",
            "step time of every installed implementation against the memory roofline "
            "(see 'adamw-conformance bench --help')",
        ),
    ):
        sub.add_parser(name, add_help=False, help=text).set_defaults(func=None)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    import numpy as np

    np.seterr(all="ignore")
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["vectors"]:
        from conformance.vectors import vectors_main

        return vectors_main(args[1:])
    if args[:1] == ["identify"]:
        from conformance.identify import identify_main

        return identify_main(args[1:])
    if args[:1] == ["matrix"]:
        from conformance.history import matrix_main

        return matrix_main(args[1:])
    if args[:1] == ["bench"]:
        from conformance.bench import bench_main

        return bench_main(args[1:])
    try:
        ns = build_parser().parse_args(args)
        if ns.command == "run" and ns.out is None and not ns.resume:
            ns.out = "adamw-conformance-report"
        rc: int = ns.func(ns)
        return rc
    except SystemExit as exc:  # argparse: --help / --version (0) or a usage error (2)
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    except opt.UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as exc:
        _say(f"{PROG}: interrupted by {exc}")
        return EXIT_SIGNAL.get(signal.Signals(exc.signum), 130)
    except KeyboardInterrupt:
        _say(f"{PROG}: interrupted")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
