"""The conformance report: versioned JSON schema, TypedDicts and atomic I/O.

Layout (schema ``adamw-conformance/report`` version ``1.0``)::

    {"schema": "adamw-conformance/report", "schema_version": "1.0",
     "envelope": Envelope, "cases": [Case, ...]}

One ``Case`` is one (adapter, implementation, device, dtype, scenario, mode, seed) run.
Verdicts, from best to worst: ``exact`` (bitwise equal to the reference rounded to the dtype),
``within_bound`` (inside the derived tolerance), ``acceptable`` (a deviation the spec allows; the
flag naming it is in ``acceptable_flag``), ``divergent``, ``error`` (crash/hang/exception),
``skipped`` (the adapter lacks a feature the scenario needs; reason in ``error``).
Renderers (conformance/render.py) read only these fields.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

SCHEMA = "adamw-conformance/report"
SCHEMA_VERSION = "1.0"

Verdict = Literal["exact", "within_bound", "acceptable", "divergent", "error", "skipped"]
Mode = Literal["free", "teacher_forced", "closed_loop", "cpu_vs_gpu"]
VERDICTS: tuple[str, ...] = ("exact", "within_bound", "acceptable", "divergent", "error", "skipped")
PASSING: frozenset[str] = frozenset({"exact", "within_bound", "acceptable"})
MODES: tuple[str, ...] = ("free", "teacher_forced", "closed_loop", "cpu_vs_gpu")


class Device(TypedDict):
    kind: Literal["cpu", "cuda"]
    model: str
    driver: str | None
    runtime: str | None


class Envelope(TypedDict):
    suite_version: str
    spec_version: str
    commit: str | None
    created: str  # ISO 8601 UTC
    command: str
    python: str
    platform: str
    frameworks: dict[str, str]  # name -> version
    devices: list[Device]
    precision: dict[str, Any]  # {"tf32": {...}, "matmul": ...}
    seeds: list[int]
    env: dict[str, str]  # ADAMW_* environment variables


class TensorMetrics(TypedDict):
    max_abs: float
    max_rel: float
    max_ulp: float


class Bound(TypedDict):
    """Tolerance used for grading (see docs/conformance/tolerance.md)."""

    kind: str  # ref_vs_impl | cpu_vs_gpu | impl_vs_impl
    dtype: str
    device: str
    c_step: float  # roundings per step (c in c*u*scale)
    unit_roundoff: float
    max_ratio: float  # max over steps/elements of err / bound (<= 1 means within bound)
    ulp_budget: NotRequired[float]


class FirstDivergence(TypedDict):
    step: int
    param: str
    index: list[int]
    expected: float
    got: float
    abs_err: float
    ulp: float


class Candidate(TypedDict):
    name: str
    score: float  # max err/bound ratio of the candidate against the implementation; lower better


class Diagnosis(TypedDict):
    explained_by: str | None  # e.g. "profile keras3" or "eps_placement=inside_sqrt"
    kind: Literal["profile", "knob"] | None
    detail: str
    candidates: list[Candidate]


class Series(TypedDict):
    step: list[int]
    err: list[float]  # max over params of err/bound per step (bound ratio)


class Case(TypedDict):
    id: str
    adapter: str
    implementation: str
    device: str
    dtype: str
    scenario: str
    mode: Mode
    profile: str
    seed: int
    steps: int
    verdict: Verdict
    acceptable_flag: str | None
    metrics: dict[str, TensorMetrics]
    bound: Bound | dict[str, Any]
    first_divergence: FirstDivergence | None
    diagnosis: Diagnosis | None
    error: str | None
    repro: str
    series: Series
    duration_s: float
    expected: NotRequired[str | None]  # known-findings entry matched (run --xfails-file)


class Report(TypedDict):
    schema: str
    schema_version: str
    envelope: Envelope
    cases: list[Case]


def case_id(
    adapter: str, implementation: str, device: str, dtype: str, scenario: str, mode: str, seed: int
) -> str:
    """Stable, test-id-like identifier of a case."""
    return f"{adapter}[{implementation}]-{device}-{dtype}-{scenario}-{mode}-s{seed}"


def empty_series() -> Series:
    return {"step": [], "err": []}


def new_report(envelope: Envelope) -> Report:
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "envelope": envelope, "cases": []}


def write_atomic(path: Path, report: Report | dict[str, Any]) -> None:
    """Write JSON to ``path`` via a temp file in the same directory + ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=1, allow_nan=False, default=_json_default)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(obj: object) -> object:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load(path: Path) -> Report:
    """Load a report (a file, or a directory holding ``report.json``) and check its schema tag."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    with open(p, encoding="utf-8") as fh:
        data = json.load(fh)
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{p}: schema is {data.get('schema')!r}, expected {SCHEMA!r}")
    major = str(data.get("schema_version", "")).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise ValueError(
            f"{p}: schema_version {data.get('schema_version')!r} is not compatible with {SCHEMA_VERSION!r}"
        )
    return data  # type: ignore[no-any-return]


def schema_path() -> Path:
    return Path(__file__).parent / "report.schema.json"


def validate(report: Report | dict[str, Any]) -> None:
    """Validate against conformance/report/report.schema.json (needs ``jsonschema``)."""
    import jsonschema

    with open(schema_path(), encoding="utf-8") as fh:
        schema = json.load(fh)
    jsonschema.validate(report, schema)


def summarize(report: Report | dict[str, Any]) -> dict[str, int]:
    """Count of cases per verdict."""
    out = dict.fromkeys(VERDICTS, 0)
    for c in report["cases"]:
        out[c["verdict"]] = out.get(c["verdict"], 0) + 1
    return out
