"""The conformance report: versioned JSON schema, TypedDicts and atomic I/O.

Layout (schema ``adamw-conformance/report`` version ``1.2``)::

    {"schema": "adamw-conformance/report", "schema_version": "1.2",
     "envelope": Envelope, "cases": [Case, ...]}

One ``Case`` is one (adapter, implementation, device, dtype, scenario, mode, seed) run.
Verdicts, from best to worst: ``exact`` (bitwise equal to the reference computed *in* the dtype;
the metrics are measured against the binary64 reference, so they may show a few ulps),
``within_bound`` (inside the derived tolerance), ``acceptable`` (a deviation the spec allows; the
flag naming it is in ``acceptable_flag``), ``divergent``, ``error`` (crash/hang/exception),
``skipped`` (the adapter lacks a feature the scenario needs; reason in ``error``).
Renderers (:mod:`conformance.report`) read only these fields.

**Bit-exact profiles** (1.2, optional ``bit_exact``): a CPU float32 case of an implementation
with an operation-order profile (:mod:`adamw_ref.oporder`) is also compared with that profile's
prediction at 0 ulp, every element of the parameters after every step and of ``m``, ``v``
(``v_max``) where the adapter exposes them: ``verdict`` ``bit_exact``, ``not_bit_exact`` (a
finding, whatever the case's own verdict) or ``not_covered`` (the profile does not model the
configuration; ``reason``), ``fraction`` of the elements predicted exactly, the largest distance
and a histogram of the mismatches in ulps, the first mismatch. It never changes ``verdict``.

**Numbers are lossless.** JSON has no NaN or infinity, so a non-finite float in a numeric field
(metrics, first divergence, bound, series, candidate scores) is written as the string ``"nan"``,
``"inf"`` or ``"-inf"`` (:func:`encode_nonfinite`) and read back as the float (:func:`load`).
Version 1.0 reports clamped such values to the largest double (``1.7976931348623157e+308``);
:func:`load` still reads them, turning that sentinel into ``inf`` (1.0 could not tell NaN from
infinity). Finite floats are written with Python's shortest round-trip ``repr``.

The envelope's ``status`` is ``complete`` or ``interrupted`` (a run stopped by a signal; ``run
--resume DIR`` finishes it), ``planned`` the number of cases the workers planned, and ``options``
the run's options, from which ``--resume`` restarts it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

SCHEMA = "adamw-conformance/report"
SCHEMA_VERSION = "1.2"
#: Versions :func:`load` reads (1.0: non-finite values clamped to the largest double; 1.2 added
#: the optional ``bit_exact`` record of a case).
READABLE_VERSIONS: tuple[str, ...] = ("1.0", "1.1", "1.2")
LARGEST = 1.7976931348623157e308
NONFINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}

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
    precision: dict[str, Any]  # {"tf32": {...}, "matmul": ..., "threads": {...}}
    seeds: list[int]
    env: dict[str, str]  # ADAMW_* environment variables
    status: NotRequired[Literal["running", "complete", "interrupted"]]
    planned: NotRequired[int]  # cases the workers planned (an interrupted run has fewer rows)
    options: NotRequired[dict[str, Any]]  # the run's options, for --resume
    known_findings: NotRequired[str | None]  # the known-findings file applied, or None


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


class BitSlot(TypedDict):
    exact: int
    elements: int


class BitMismatch(TypedDict):
    step: int  # 1 = after the first step
    slot: str  # params | m | v | v_max
    param: str
    index: list[int]
    predicted: float
    got: float
    ulp: float


class BitExact(TypedDict):
    """The case against its operation-order profile (tolerance ``bit_exact``: 0 ulp)."""

    profile: str  # adamw_ref.oporder implementation, e.g. "torch:fused"
    platform: str  # adamw_ref.oporder platform (elementary functions of the machine)
    verdict: Literal["bit_exact", "not_bit_exact", "not_covered"]
    reason: str | None  # why not covered
    elements: int  # values compared (every step, every slot)
    exact: int  # of them bit-identical to the prediction
    fraction: float | None  # exact / elements; None when not covered
    slots: dict[str, BitSlot]
    max_ulp: float | None
    ulp_histogram: dict[str, int]  # mismatches per ulp-distance bucket
    first_mismatch: BitMismatch | None


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
    expected: NotRequired[str | None]  # the known-findings entry this case matched
    bit_exact: NotRequired[BitExact]  # schema 1.2: against the operation-order profile


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


def encode_nonfinite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``"nan"``, ``"inf"`` or ``"-inf"`` (and
    numpy scalars/arrays made plain), ready for strict JSON."""
    if isinstance(obj, float):
        if obj != obj:
            return "nan"
        if obj in (float("inf"), float("-inf")):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, dict):
        return {k: encode_nonfinite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode_nonfinite(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return encode_nonfinite(obj.tolist())
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON (no NaN literals) with non-finite floats encoded as strings."""
    return json.dumps(encode_nonfinite(obj), allow_nan=False, **kwargs)


def _real(x: Any, sentinel: bool) -> Any:
    if isinstance(x, str) and x in NONFINITE:
        return NONFINITE[x]
    if sentinel and isinstance(x, float) and abs(x) >= LARGEST:
        return float("inf") if x > 0 else float("-inf")
    return x


def decode_case(case: dict[str, Any], sentinel: bool = False) -> dict[str, Any]:
    """Turn the encoded non-finite values of one case's numeric fields back into floats
    (``sentinel``: also read a 1.0 report's largest-double clamp as infinity). In place."""
    for m in (case.get("metrics") or {}).values():
        if isinstance(m, dict):
            for k, v in m.items():
                m[k] = _real(v, sentinel)
    fd = case.get("first_divergence")
    if isinstance(fd, dict):
        for k in ("expected", "got", "abs_err", "ulp"):
            if k in fd:
                fd[k] = _real(fd[k], sentinel)
    bound = case.get("bound")
    if isinstance(bound, dict):
        for k, v in bound.items():
            bound[k] = _real(v, sentinel)
    series = case.get("series")
    if isinstance(series, dict) and isinstance(series.get("err"), list):
        series["err"] = [_real(v, sentinel) for v in series["err"]]
    bits = case.get("bit_exact")
    if isinstance(bits, dict):
        bits["max_ulp"] = _real(bits.get("max_ulp"), sentinel)
        fm = bits.get("first_mismatch")
        if isinstance(fm, dict):
            for k in ("predicted", "got", "ulp"):
                if k in fm:
                    fm[k] = _real(fm[k], sentinel)
    diag = case.get("diagnosis")
    if isinstance(diag, dict):
        for cand in diag.get("candidates") or []:
            if isinstance(cand, dict) and "score" in cand:
                cand["score"] = _real(cand["score"], sentinel)
    return case


def write_atomic(path: Path, report: Report | dict[str, Any]) -> None:
    """Write JSON to ``path`` via a temp file in the same directory + ``os.replace``; the file
    gets the permissions a plain ``open`` would give it (0666 minus the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(encode_nonfinite(report), fh, indent=1, allow_nan=False, default=_json_default)
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
    """Load a report (a file, or a directory holding ``report.json``), check its schema tag and
    version, and decode non-finite numbers (see the module docstring)."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    with open(p, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        tag = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{p}: schema is {tag!r}, expected {SCHEMA!r}")
    version = str(data.get("schema_version", ""))
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise ValueError(f"{p}: schema_version {version!r} is not compatible with {SCHEMA_VERSION!r}")
    sentinel = version == "1.0"
    for case in data.get("cases") or []:
        if isinstance(case, dict):
            decode_case(case, sentinel)
    return data  # type: ignore[return-value]


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
