"""The conformance suite as pytest tests, for adopters' CI.

The plug-in is not registered by installing the package: it is active only where asked for, by
``-p conformance.pytest_plugin``, by ``PYTEST_PLUGINS=conformance.pytest_plugin``, or by running
the shipped module by path (``conformance/conftest.py`` registers it then, unless it already is)::

    ADAMW_CONFORMANCE_ADAPTER=mypkg.adamw:MyAdapter python -m pytest -p conformance.pytest_plugin \\
        --pyargs conformance.test_suite
    python -m pytest -p conformance.pytest_plugin --pyargs conformance.test_suite --adamw-adapter torch
    python -m pytest path/to/conformance/test_suite.py --adamw-adapter torch --adamw-quick

Options (all prefixed, so they cannot clash with a project's own): ``--adamw-adapter`` (or
``ADAMW_CONFORMANCE_ADAPTER``; default ``reference``) and the selection options of
``adamw-conformance run`` -- ``--adamw-scenario``, ``--adamw-dtype``, ``--adamw-mode``,
``--adamw-seeds``, ``--adamw-device``, ``--adamw-implementation``, ``--adamw-quick``,
``--adamw-full`` -- which plan exactly the CLI's cases (one planner:
:func:`conformance.worker.plan_cases`). Bad values, and an adapter that cannot be loaded, stop
the run before collection with one usage error (exit status 4).

One test per case (id = the report's case id). A ``skipped`` case skips with the adapter's reason;
``divergent``/``error`` fail with the first divergence, the diagnosis and a repro command.
``--adamw-skips-file`` / ``--adamw-xfails-file``: lines of test-id substrings, ``#`` comments; an
entry that matches no collected test is warned about. ``pytest_report_header`` names the adapter,
its framework versions, devices and precision settings.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from adapters.protocol import Adapter
    from conformance.execute import CaseSpec, Executor
    from conformance.options import UsageError as CliUsageError

ENV = "ADAMW_CONFORMANCE_ADAPTER"
#: The name ``-p``, ``PYTEST_PLUGINS`` and ``conformance/conftest.py`` register the plug-in under.
PLUGIN_NAME = "conformance.pytest_plugin"
#: Seconds of knob search per session, as the CLI's worker (unbounded with ``--adamw-full``).
DIAGNOSE_BUDGET = 10.0


@dataclass
class _State:
    spec: str
    source: str  # where the adapter spec came from, for error messages
    selection: argparse.Namespace
    skips: list[tuple[str, int]] = field(default_factory=list)  # (entry, line in the file)
    xfails: list[tuple[str, int]] = field(default_factory=list)
    adapter: Adapter | None = None
    executor: Executor | None = None
    late_error: str | None = None  # the adapter failed to load during collection


_STATE = pytest.StashKey[_State]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("adamw-conformance", "AdamW conformance suite (conformance.pytest_plugin)")
    g.addoption(
        "--adamw-adapter",
        default=None,
        metavar="NAME|PKG.MOD:FACTORY",
        help=f"adapter under test (env {ENV}; default reference)",
    )
    g.addoption("--adamw-skips-file", default=None, metavar="FILE", help="test-id substrings to skip")
    g.addoption("--adamw-xfails-file", default=None, metavar="FILE", help="test-id substrings to xfail")
    g.addoption(
        "--adamw-scenario", action="append", default=None, metavar="ID", help="scenario id (repeatable)"
    )
    g.addoption(
        "--adamw-dtype",
        action="append",
        default=None,
        metavar="DTYPE",
        help="dtype (repeatable; default: each scenario's dtypes)",
    )
    g.addoption("--adamw-mode", action="append", default=None, metavar="MODE", help="free or teacher_forced")
    g.addoption(
        "--adamw-seeds", default=None, metavar="SEEDS", help="e.g. 0,3 or 0-19 (default 0; --adamw-full: 0-4)"
    )
    g.addoption("--adamw-device", default="cpu", metavar="DEVICE", help="cpu (default) or cuda")
    g.addoption(
        "--adamw-implementation",
        action="append",
        default=None,
        metavar="IMPL",
        help="implementation (repeatable; default as adamw-conformance run)",
    )
    g.addoption("--adamw-quick", action="store_true", help="the quick scenario subset")
    g.addoption("--adamw-full", action="store_true", help="long runs, all seeds, all scenarios")


def _choices() -> dict[str, list[str]]:
    """The CLI's allowed values per selection option (``dtype``, ``mode``, ``device``)."""
    from conformance.worker import add_selection_args

    ap = argparse.ArgumentParser(add_help=False)
    add_selection_args(ap)
    return {a.dest: [str(c) for c in a.choices] for a in ap._actions if a.choices}


def _as_ours(exc: CliUsageError) -> pytest.UsageError:
    """The CLI's one-line usage error, naming this plug-in's option (``--seeds`` -> ``--adamw-seeds``)."""
    option = exc.option.replace("--", "--adamw-", 1)
    return pytest.UsageError(str(type(exc)(option, exc.value, exc.reason)))


def _selection(config: pytest.Config) -> argparse.Namespace:
    """The options checked and normalised as ``adamw-conformance run`` does
    (:mod:`conformance.options`), as the selection namespace the CLI's worker plans from;
    :class:`pytest.UsageError` on a bad value."""
    from conformance import options as opt

    def once(values: list[str] | None) -> list[str] | None:
        return list(dict.fromkeys(values)) if values else None

    quick, full = bool(config.getoption("adamw_quick")), bool(config.getoption("adamw_full"))
    if quick and full:
        raise pytest.UsageError("--adamw-quick: cannot be combined with --adamw-full")
    ns = argparse.Namespace(
        scenario=config.getoption("adamw_scenario"),
        dtype=once(config.getoption("adamw_dtype")),
        mode=once(config.getoption("adamw_mode")),
        seeds=config.getoption("adamw_seeds"),
        device=config.getoption("adamw_device"),
        implementation=once(config.getoption("adamw_implementation")),
        quick=quick,
        full=full,
    )
    choices = _choices()
    for dest in ("dtype", "mode", "device"):
        given = getattr(ns, dest)
        for value in [given] if isinstance(given, str) else given or []:
            if value not in choices[dest]:
                allowed = ", ".join(choices[dest])
                raise pytest.UsageError(f"--adamw-{dest} {value!r}: expected one of {allowed}")
    try:
        ns.device = opt.device(ns.device)  # cuda: a device must be visible
        ns.scenario = opt.scenarios(ns.scenario)
        # the worker gets the seeds as the CLI passes them: an explicit, duplicate-free list
        ns.seeds = ",".join(map(str, opt.seeds(ns.seeds, full)))
    except opt.UsageError as exc:
        raise _as_ours(exc) from None
    return ns


def _read(option: str, path: str | None) -> list[tuple[str, int]]:
    if not path:
        return []
    from conformance.expectations import read_findings  # one parser for CLI and pytest expectation files

    try:
        return [(f.pattern, f.line) for f in read_findings(path)]
    except ValueError as exc:  # ExpectationFileError: unreadable file or malformed line
        raise pytest.UsageError(f"--adamw-{option}-file {path!r}: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    """Check every option value now: one usage error, before anything is collected."""
    given = config.getoption("adamw_adapter")
    spec, source = (given, "--adamw-adapter") if given else (os.environ.get(ENV), ENV)
    config.stash[_STATE] = _State(
        spec=spec or "reference",
        source=source if spec else "default",
        selection=_selection(config),
        skips=_read("skips", config.getoption("adamw_skips_file")),
        xfails=_read("xfails", config.getoption("adamw_xfails_file")),
    )


def _on_path(directory: str) -> None:
    """Put ``directory`` first on ``sys.path`` if it is not there, as ``adamw-conformance run``
    does (its worker runs as ``python -m``): a ``mymod:factory`` spec in the directory pytest was
    started from loads also where that is not on ``sys.path`` (the ``pytest`` script, ``python -P``)."""
    if os.path.abspath(directory) not in {os.path.abspath(p or os.curdir) for p in sys.path}:
        sys.path.insert(0, directory)


def _load(config: pytest.Config) -> _State:
    """The state with the adapter loaded; :class:`pytest.UsageError` if it cannot be."""
    st = config.stash[_STATE]
    if st.adapter is not None:
        return st
    from conformance.execute import Executor, load
    from conformance.worker import disable_reduced_precision

    if ":" in st.spec:
        _on_path(str(config.invocation_params.dir))
    try:
        adapter = load(st.spec)
    except Exception as exc:
        where = "" if st.source == "default" else f" (from {st.source})"
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise pytest.UsageError(f"adapter {st.spec!r}{where} cannot be loaded: {detail}") from None
    info, sel = adapter.info, st.selection
    if sel.device not in info.devices:
        raise pytest.UsageError(
            f"--adamw-device {sel.device!r}: adapter {st.spec!r} does not run on it "
            f"(devices: {', '.join(info.devices)})"
        )
    for impl in sel.implementation or []:
        if impl not in info.implementations:
            raise pytest.UsageError(
                f"--adamw-implementation {impl!r}: adapter {st.spec!r} has no such implementation "
                f"(implementations: {', '.join(info.implementations)})"
            )
    disable_reduced_precision()  # as the CLI's worker: no TF32 or reduced-precision matmuls
    budget = None if st.selection.full else DIAGNOSE_BUDGET
    st.adapter, st.executor = adapter, Executor(adapter, diagnose_budget=budget)
    return st


def pytest_sessionstart(session: pytest.Session) -> None:
    _load(session.config)  # before the header (the terminal reporter's sessionstart runs last)


def pytest_report_header(config: pytest.Config) -> list[str]:
    from conformance.worker import device_info, precision_info

    st = _load(config)
    assert st.adapter is not None
    info = st.adapter.info
    lines = [
        f"adamw-conformance adapter: {st.spec}",
        f"  framework {info.framework}, profile {info.profile}, implementations "
        f"{list(info.implementations)}, dtypes {list(info.dtypes)}",
        "  versions: " + ", ".join(f"{k} {v}" for k, v in st.adapter.versions().items()),
        "  devices: " + "; ".join(f"{d['kind']}: {d['model']}" for d in device_info(st.selection.device)),
    ]
    prec = precision_info()
    if prec:
        lines.append(f"  precision: {prec}")
    env = {k: v for k, v in os.environ.items() if k.startswith("ADAMW_")}
    if env:
        lines.append(f"  env: {env}")
    return lines


def plan_cases(config: pytest.Config) -> list[CaseSpec]:
    """The cases ``adamw-conformance run --adapter SPEC`` with the same selection runs."""
    from conformance.worker import plan_cases as worker_plan

    st = _load(config)
    assert st.adapter is not None
    return worker_plan(st.adapter, st.spec, st.selection)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conformance_case" not in metafunc.fixturenames:
        return
    try:
        cases = plan_cases(metafunc.config)
    except pytest.UsageError as exc:
        # Only where the plug-in was registered after the session started (by conftest.py, for
        # ``--pyargs`` without ``-p``): collection ends with this one error (see below).
        metafunc.config.stash[_STATE].late_error = str(exc)
        cases = []
    metafunc.parametrize("conformance_case", cases, ids=[c.id for c in cases])


@pytest.fixture(scope="session")
def conformance_executor(request: pytest.FixtureRequest) -> Executor:
    st = _load(request.config)
    assert st.executor is not None
    return st.executor


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    st = config.stash[_STATE]
    if st.late_error:
        pytest.exit(st.late_error, returncode=pytest.ExitCode.USAGE_ERROR)
    for opt, entries in (("skips", st.skips), ("xfails", st.xfails)):
        path = config.getoption(f"adamw_{opt}_file")
        for entry, line in entries:
            hits = [it for it in items if entry in it.nodeid]
            if not hits:  # reported at the entry's line of the file
                msg = f"--adamw-{opt}-file {path}: entry {entry!r} matches no test"
                warnings.warn_explicit(msg, UserWarning, str(path), line)
            mark = (
                pytest.mark.skip(reason=f"skips file: {entry}")
                if opt == "skips"
                else pytest.mark.xfail(reason=f"xfails file: {entry}", strict=False)
            )
            for it in hits:
                it.add_marker(mark)


def check_case(executor: Any, case_spec: Any) -> dict[str, Any]:
    """Run one case; skip or fail the calling test as its verdict says."""
    import numpy as np

    from conformance.report.schema import PASSING

    with np.errstate(all="ignore"):  # as the CLI's worker: overflow in nan_inf scenarios is data
        case: dict[str, Any] = executor.run(case_spec)
    if case["verdict"] == "skipped":
        pytest.skip(case["error"] or "skipped")
    if case["verdict"] not in PASSING:
        diag = case.get("diagnosis") or {}
        pytest.fail(
            f"{case['verdict']}: {case['id']}\n"
            f"  bound ratio: {case['bound'].get('max_ratio')}\n"
            f"  first divergence: {case['first_divergence']}\n"
            f"  diagnosis: {diag.get('detail')}\n"
            f"  error: {case['error']}\n"
            f"  repro: {case['repro']}",
            pytrace=False,
        )
    return case
