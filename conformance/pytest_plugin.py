"""The conformance suite as pytest tests, for adopters' CI.

Select the implementation with ``--adapter NAME|pkg.mod:factory`` or the environment variable
``ADAMW_CONFORMANCE_ADAPTER`` (default: ``reference``)::

    python -m pytest conformance/test_suite.py --adapter torch
    ADAMW_CONFORMANCE_ADAPTER=mypkg.adamw:MyAdapter python -m pytest -p conformance.pytest_plugin \\
        --pyargs conformance.test_suite

One test per case (id = the report's case id). A ``skipped`` case skips with the adapter's reason;
``divergent``/``error`` fail with the first divergence, the diagnosis and a repro command.
``--skips-file`` / ``--xfails-file``: lines of test-id substrings, ``#`` comments; an entry that
matches no collected test is warned about. ``pytest_report_header`` names the adapter, its
framework versions, devices and precision settings.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytest

ENV = "ADAMW_CONFORMANCE_ADAPTER"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("adamw-conformance")
    g.addoption(
        "--adapter",
        default=None,
        help=f"adapter name or package.module:factory (env {ENV}; default reference)",
    )
    g.addoption("--skips-file", default=None, help="file of test-id substrings to skip")
    g.addoption("--xfails-file", default=None, help="file of test-id substrings to xfail")
    g.addoption(
        "--conformance-dtype",
        action="append",
        default=None,
        help="dtype(s) to test (default: each scenario's dtypes)",
    )
    g.addoption("--conformance-scenario", action="append", default=None, help="scenario id(s)")
    g.addoption("--conformance-seeds", default=None, help="seeds, e.g. 0-19 (default 0)")
    g.addoption("--conformance-device", default="cpu", choices=["cpu", "cuda"])
    g.addoption("--conformance-full", action="store_true", help="long scenarios, all seeds")


def _adapter_spec(config: pytest.Config) -> str:
    return str(config.getoption("--adapter") or os.environ.get(ENV) or "reference")


def _state(config: pytest.Config) -> dict[str, Any]:
    st: dict[str, Any] | None = getattr(config, "_adamw_conformance", None)
    if st is None:
        from conformance.execute import Executor, load

        spec = _adapter_spec(config)
        st = {"spec": spec, "error": None, "adapter": None, "executor": None}
        try:
            adapter = load(spec)
            st["adapter"] = adapter
            st["executor"] = Executor(adapter)
        except Exception as exc:  # reported by the test, not as a collection crash
            st["error"] = f"{type(exc).__name__}: {exc}"
        config._adamw_conformance = st  # type: ignore[attr-defined]
    return st


def pytest_report_header(config: pytest.Config) -> list[str]:
    st = _state(config)
    lines = [f"adamw-conformance adapter: {st['spec']}"]
    if st["error"]:
        return [*lines, f"  adapter failed to load: {st['error']}"]
    from conformance.worker import device_info, precision_info

    ad = st["adapter"]
    info = ad.info
    lines.append(
        f"  framework {info.framework}, profile {info.profile}, implementations "
        f"{list(info.implementations)}, dtypes {list(info.dtypes)}"
    )
    lines.append("  versions: " + ", ".join(f"{k} {v}" for k, v in ad.versions().items()))
    dev = config.getoption("--conformance-device")
    lines.append("  devices: " + "; ".join(f"{d['kind']}: {d['model']}" for d in device_info(dev)))
    prec = precision_info()
    if prec:
        lines.append(f"  precision: {prec}")
    env = {k: v for k, v in os.environ.items() if k.startswith("ADAMW_")}
    if env:
        lines.append(f"  env: {env}")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conformance_case" not in metafunc.fixturenames:
        return
    cfg = metafunc.config
    st = _state(cfg)
    if st["error"]:
        metafunc.parametrize("conformance_case", [None], ids=[f"load[{st['spec']}]"])
        return
    from conformance.execute import plan
    from conformance.scenarios import select
    from conformance.worker import parse_seeds

    full = bool(cfg.getoption("--conformance-full"))
    cases = plan(
        st["adapter"],
        st["spec"],
        select(cfg.getoption("--conformance-scenario"), full=full),
        dtypes=cfg.getoption("--conformance-dtype"),
        seeds=parse_seeds(cfg.getoption("--conformance-seeds"), full),
        device=cfg.getoption("--conformance-device"),
        all_teacher_forced=True,
    )
    metafunc.parametrize("conformance_case", cases, ids=[c.id for c in cases])


@pytest.fixture(scope="session")
def conformance_executor(request: pytest.FixtureRequest) -> Any:
    st = _state(request.config)
    if st["error"]:
        pytest.fail(f"adapter {st['spec']!r} failed to load: {st['error']}")
    return st["executor"]


def _read_list(path: str) -> list[str]:
    from conformance.expectations import read_entries  # one parser for CLI and pytest expectation files

    return read_entries(path)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for opt in ("--skips-file", "--xfails-file"):
        path = config.getoption(opt)
        if not path:
            continue
        for entry in _read_list(path):
            hits = [it for it in items if entry in it.nodeid]
            if not hits:
                warnings.warn(f"{opt} {path}: entry {entry!r} matches no test", stacklevel=1)
            mark = (
                pytest.mark.skip(reason=f"skips file: {entry}")
                if opt == "--skips-file"
                else pytest.mark.xfail(reason=f"xfails file: {entry}", strict=False)
            )
            for it in hits:
                it.add_marker(mark)


def check_case(executor: Any, case_spec: Any) -> dict[str, Any]:
    """Run one case; skip or fail the calling test as its verdict says."""
    from conformance.report.schema import PASSING

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
