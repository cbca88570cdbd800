"""The suite's ``bit_exact`` tolerance: cases against their operation-order profiles (issue 13).

Expected values are derived by hand (ulp distances of chosen binary32 values, element counts of
the scenarios, the storage grid of bfloat16) or computed independently of the code under test
(the framework run directly, ``adamw_ref.oporder.predict_trajectory`` called directly).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adamw_ref import get_profile
from conformance import compare as cmp
from conformance import diagnose as dg
from conformance import execute, tolerance
from conformance.execute import CaseSpec, Executor
from conformance.report import markdown, outcome, schema
from conformance.report.html import page_context, render_html
from conformance.scenarios import get as get_scenario


def _f32(bits: int) -> float:
    return float(struct.unpack("<f", struct.pack("<I", bits))[0])


def _bits(x: float) -> int:
    return int(struct.unpack("<I", struct.pack("<f", x))[0])


def _step(x: float, k: int) -> float:
    """``x`` moved ``k`` binary32 values up (by integer arithmetic on the bit patterns)."""
    b = _bits(x)
    order = b if b < 0x80000000 else -(b & 0x7FFFFFFF)
    order += k
    return _f32(order if order >= 0 else (0x80000000 | -order))


# -- ulp distances and grading, against hand-derived values ------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "ulps"),
    [
        (1.0, 1.0, 0.0),
        (1.0, 1.0 + 2.0**-23, 1.0),
        (1.0, 2.0, 2.0**23),  # every binary32 value of [1, 2)
        (-0.0, 0.0, 0.0),
        (2.0**-149, -(2.0**-149), 2.0),  # through both zeros: -min, (-0 = +0), +min
        (0.0, 2.0**-126, 2.0**23),  # the subnormals below the smallest normal
        (float("nan"), float("nan"), 0.0),
        (float("nan"), 1.0, math.inf),
    ],
)
def test_ulp_distance_hand_derived(a: float, b: float, ulps: float) -> None:
    assert float(tolerance.ulp_distance([a], [b])[0]) == ulps
    assert float(tolerance.ulp_distance([b], [a])[0]) == ulps


finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(x=finite32, k=st.integers(-1000, 1000))
def test_ulp_distance_counts_binary32_steps(x: float, k: int) -> None:
    y = _step(x, k)
    if not math.isfinite(y):
        return
    assert float(tolerance.ulp_distance([x], [y])[0]) == abs(k) or (x == 0.0 and y == 0.0)


def _pt(w: list[float], m: list[float] | None = None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"params": {"w": np.array(w, np.float64)}}
    if m is not None:
        out["m"] = {"w": np.array(m, np.float64)}
    return out


def test_grade_bit_exact_counts_every_element_and_finds_the_first_mismatch() -> None:
    pred = [_pt([1.0, 2.0, 3.0], [0.5, 0.5, 0.5]), _pt([1.5, 2.5, 3.5], [0.25, 0.25, 0.25])]
    off = _step(2.5, 3)  # 3 ulps above the prediction
    got = [_pt([1.0, 2.0, 3.0], [0.5, 0.5, 0.5]), _pt([1.5, off, 3.5], [0.25, 0.25, 0.25])]
    rec = tolerance.grade_bit_exact("torch:fused", pred, got)
    assert rec["verdict"] == "not_bit_exact"
    assert (rec["elements"], rec["exact"]) == (12, 11)  # 2 steps x 3 elements x 2 slots
    assert rec["fraction"] == 11 / 12
    assert rec["slots"] == {"params": {"exact": 5, "elements": 6}, "m": {"exact": 6, "elements": 6}}
    assert rec["max_ulp"] == 3.0
    assert rec["ulp_histogram"] == {"2-15": 1}
    assert rec["first_mismatch"] == {
        "step": 2,
        "slot": "params",
        "param": "w",
        "index": [1],
        "predicted": 2.5,
        "got": off,
        "ulp": 3.0,
    }
    same = tolerance.grade_bit_exact("torch:fused", pred, pred)
    assert same["verdict"] == "bit_exact" and same["fraction"] == 1.0 and same["first_mismatch"] is None


def test_grade_bit_exact_compares_only_what_both_sides_have() -> None:
    pred = [_pt([1.0, 2.0], [0.5, 0.5])]
    got = [_pt([1.0, 2.0])]  # an adapter that exposes no moments
    rec = tolerance.grade_bit_exact("mlx:default", pred, got)
    assert (rec["verdict"], rec["elements"], list(rec["slots"])) == ("bit_exact", 2, ["params"])


def test_signed_zero_is_not_bit_exact() -> None:
    rec = tolerance.grade_bit_exact("torch:fused", [_pt([0.0])], [_pt([-0.0])])
    assert rec["verdict"] == "not_bit_exact" and rec["max_ulp"] == 0.0


@pytest.mark.parametrize(
    ("adapter", "impl", "device", "dtype", "profile"),
    [
        ("torch", "fused", "cpu", "float32", "torch:fused"),
        ("torch", "forloop", "cpu", "float32", "torch:forloop"),
        ("torch", "foreach", "cuda", "float32", None),
        ("torch", "foreach", "cpu", "float64", None),
        ("torch", "forloop-tensor-lr", "cpu", "float32", None),
        ("optax", "nojit", "cpu", "float32", "optax:nojit"),
        ("optax", "jit-mu-bfloat16", "cpu", "float32", None),
        ("keras-torch", "default", "cpu", "float32", "keras-torch:default"),
        ("mlx", "default", "cpu", "float32", "mlx:default"),
        ("reference", "emulated", "cpu", "float32", None),
    ],
)
def test_which_cases_have_a_profile(
    adapter: str, impl: str, device: str, dtype: str, profile: str | None
) -> None:
    assert tolerance.oporder_profile(adapter, impl, device, dtype) == profile


def test_bit_exact_is_a_zero_ulp_tolerance() -> None:
    spec = tolerance.spec_for("float32", "cpu", "bit_exact")
    assert spec.c_step == 0.0 and spec.kind == "bit_exact"


# -- the executor: real torch against its profile -------------------------------------------------


class _Nudged:
    """The torch adapter, with one parameter element reported one ulp up after one step."""

    def __init__(self, inner: Any, at_step: int) -> None:
        self.inner, self.at_step = inner, at_step

    @property
    def info(self) -> Any:
        return self.inner.info

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create(self, *args: Any, **kwargs: Any) -> Any:
        return _NudgedRun(self.inner.create(*args, **kwargs), self.at_step)


class _NudgedRun:
    def __init__(self, run: Any, at_step: int) -> None:
        self.run, self.at_step, self.t = run, at_step, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.run, name)

    def step(self, grads: Mapping[str, Any]) -> None:
        self.run.step(grads)
        self.t += 1

    def params(self) -> dict[str, Any]:
        out = {k: np.array(v, np.float64) for k, v in self.run.params().items()}
        if self.t == self.at_step:
            w = out["w"].ravel()
            w[5] = _step(float(w[5]), 1)
            out["w"] = w.reshape(out["w"].shape)
        return out


@pytest.fixture(scope="module")
def torch_adapter() -> Any:
    pytest.importorskip("torch")
    return execute.load("torch")


def _spec(impl: str, scenario: str, mode: str = "free") -> CaseSpec:
    return CaseSpec("torch", impl, "cpu", "float32", scenario, mode, 0)


@pytest.mark.parametrize("impl", ["forloop", "foreach", "fused"])
@pytest.mark.parametrize("mode", ["free", "teacher_forced"])
def test_torch_cases_are_bit_exact_against_their_profiles(torch_adapter: Any, impl: str, mode: str) -> None:
    case = Executor(torch_adapter, diagnose=False).run(_spec(impl, "basic", mode))
    rec = case["bit_exact"]
    # basic: w (6, 4) and b (4,), 40 steps; params, m and v after every step
    assert rec["profile"] == f"torch:{impl}"
    assert (rec["verdict"], rec["elements"], rec["exact"]) == ("bit_exact", 3 * 28 * 40, 3 * 28 * 40)
    assert case["verdict"] in ("exact", "within_bound")


def test_the_executor_grades_what_torch_computes(torch_adapter: Any) -> None:
    """The record's counts equal those of torch.optim.AdamW run directly against
    ``predict_trajectory`` called directly (amsgrad: v_max compared too)."""
    import torch

    from adamw_ref.oporder import predict_trajectory

    sc = get_scenario("amsgrad")
    cfg = sc.config(get_profile("torch").config)
    p0, grads = sc.inputs(0)
    f32 = {k: np.asarray(v, np.float32) for k, v in p0.items()}
    ts = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in f32.items()}
    opt = torch.optim.AdamW(
        list(ts.values()),
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        amsgrad=True,
        fused=True,
    )
    pred = predict_trajectory(
        "torch:fused",
        cfg,
        {k: v.ravel().tolist() for k, v in f32.items()},
        [{k: np.asarray(v, np.float32).ravel().tolist() for k, v in g.items()} for g in grads],
    )
    exact = total = 0
    for t, g in enumerate(grads, start=1):
        for k, p in ts.items():
            p.grad = torch.from_numpy(np.asarray(g[k], np.float32).copy())
        opt.step()
        for k, p in ts.items():
            st_ = opt.state[p]
            for got, want in (
                (p.detach(), pred.params[t][k]),
                (st_["exp_avg"], pred.states[t].m[k]),
                (st_["exp_avg_sq"], pred.states[t].v[k]),
                (st_["max_exp_avg_sq"], pred.states[t].v_max[k]),  # type: ignore[index]
            ):
                same = got.numpy().ravel().view(np.uint32) == np.asarray(want, np.float32).view(np.uint32)
                exact += int(same.sum())
                total += same.size
    case = Executor(torch_adapter, diagnose=False).run(_spec("fused", "amsgrad"))
    rec = case["bit_exact"]
    assert (rec["exact"], rec["elements"]) == (exact, total) == (4 * 28 * 40, 4 * 28 * 40)
    assert set(rec["slots"]) == {"params", "m", "v", "v_max"}


def test_one_ulp_off_is_a_finding_not_silently_within_bound(torch_adapter: Any, tmp_path: Path) -> None:
    case = Executor(_Nudged(torch_adapter, at_step=7), diagnose=False).run(_spec("fused", "basic"))
    rec = case["bit_exact"]
    assert case["verdict"] == "within_bound"  # one ulp is well inside the bound ...
    assert rec["verdict"] == "not_bit_exact"  # ... but not what torch computes
    assert (rec["elements"] - rec["exact"], rec["max_ulp"]) == (1, 1.0)
    assert rec["first_mismatch"]["step"] == 7
    assert (rec["first_mismatch"]["param"], rec["first_mismatch"]["index"]) == ("w", [1, 1])  # 5 = 1*4+1
    report = json.loads(schema.dumps(_report([case])))
    schema.validate(report)
    assert [c["id"] for c in outcome.bit_exact_findings(report)] == [case["id"]]
    md = markdown.render_markdown(report)
    findings = md.split("### Findings: cases not bit-exact against their profile", 1)[1]
    assert case["id"] in findings.split("## Findings", 1)[0]
    assert outcome.exit_code(report) == 0  # a finding to read, not a failed run
    page = render_html(report, tmp_path, plots=[]).read_text(encoding="utf-8")
    assert 'id="bit-exact"' in page and case["id"] in page and "not_bit_exact" in page


def test_a_configuration_outside_the_profile_is_not_covered(torch_adapter: Any) -> None:
    case = Executor(torch_adapter, diagnose=False).run(_spec("fused", "warmup_cosine"))
    # torch's profile covers any lr schedule: warmup_cosine is predicted
    assert case["bit_exact"]["verdict"] == "bit_exact"
    rec = execute.bit_exact_record(
        "optax:jit", "free", get_profile("torch").config, {"w": [1.0]}, [{"w": [0.5]}], [], [], []
    )
    assert rec["verdict"] == "not_covered" and rec["fraction"] is None and "ConfigError" in rec["reason"]


# -- reports --------------------------------------------------------------------------------------


def _report(cases: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema": schema.SCHEMA,
        "schema_version": schema.SCHEMA_VERSION,
        "envelope": {
            "suite_version": "0",
            "spec_version": "0",
            "commit": None,
            "created": "2026-01-01T00:00:00Z",
            "command": "run",
            "python": "3.11",
            "platform": "linux",
            "frameworks": {},
            "devices": [{"kind": "cpu", "model": "x86", "driver": None, "runtime": None}],
            "precision": {},
            "seeds": [0],
            "env": {},
        },
        "cases": cases,
    }


def _case(row: tuple[str, str], verdict: str, exact: int, elements: int, cid: str) -> dict[str, Any]:
    c = execute.blank_case(
        CaseSpec(row[0], row[1], "cpu", "float32", cid, "free", 0), "torch", 5, "within_bound"
    )
    c["bit_exact"] = {
        "profile": f"{row[0]}:{row[1]}",
        "platform": "x86_64-amd-mkl-glibc",
        "verdict": verdict,
        "reason": None if verdict != "not_covered" else "ConfigError: x",
        "elements": elements,
        "exact": exact,
        "fraction": None if verdict == "not_covered" else exact / elements,
        "slots": {},
        "max_ulp": None if verdict == "not_covered" else (0.0 if exact == elements else 2.0),
        "ulp_histogram": {},
        "first_mismatch": None,
    }
    return c


def test_fraction_per_implementation_in_every_rendering(tmp_path: Path) -> None:
    cases = [
        _case(("optax", "jit"), "bit_exact", 100, 100, "a"),
        _case(("optax", "jit"), "not_bit_exact", 50, 100, "b"),
        _case(("optax", "jit"), "not_covered", 0, 0, "c"),
        _case(("torch", "fused"), "bit_exact", 30, 30, "d"),
    ]
    cases.append(
        execute.blank_case(
            CaseSpec("reference", "emulated", "cpu", "float32", "e", "free", 0), "x", 5, "exact"
        )
    )
    report = _report(cases)
    schema.validate(report)
    rows = {r.row: r for r in outcome.bit_exact_rows(report)}
    assert set(rows) == {"optax[jit]", "torch[fused]"}
    assert (rows["optax[jit]"].exact, rows["optax[jit]"].elements, rows["optax[jit]"].fraction) == (
        150,
        200,
        0.75,
    )
    assert rows["optax[jit]"].counts == {"bit_exact": 1, "not_bit_exact": 1, "not_covered": 1}
    assert rows["torch[fused]"].fraction == 1.0
    md = markdown.render_markdown(report)
    assert "| optax[jit] | `optax:jit` | 1 | **1** | 1 | 0.75 (150/200) | 2 |" in md
    assert "| torch[fused] | `torch:fused` | 1 | 0 | 0 | 1 (30/30) | 0 |" in md
    ctx = page_context(report)
    assert [(r["row"], r["fraction"]) for r in ctx["bit_exact"]["rows"]] == [
        ("optax[jit]", "0.75"),
        ("torch[fused]", "1"),
    ]
    assert [v["id"] for v in ctx["bit_exact"]["findings"]] == [cases[1]["id"]]
    assert "2 of 3 predicted cases bit-exact (180 of 230 elements" in outcome.bit_exact_sentence(report)
    # a report without bit_exact records renders as before
    plain = _report([cases[-1]])
    assert outcome.bit_exact_rows(plain) == [] and "Bit-exact profiles" not in markdown.render_markdown(plain)


def test_a_fraction_just_below_one_does_not_print_as_one() -> None:
    report = _report([_case(("torch", "fused"), "not_bit_exact", 9_999_999, 10_000_000, "a")])
    assert "| 0.999999 (9999999/10000000) |" in markdown.render_markdown(report)


def test_bit_exact_record_round_trips_through_report_json(tmp_path: Path) -> None:
    c = _case(("torch", "fused"), "not_bit_exact", 1, 2, "a")
    c["bit_exact"]["max_ulp"] = math.inf
    mismatch = {"step": 1, "slot": "params", "param": "w", "index": [0]}
    c["bit_exact"]["first_mismatch"] = {**mismatch, "predicted": 1.0, "got": math.nan, "ulp": math.inf}
    path = tmp_path / "report.json"
    schema.write_atomic(path, _report([c]))  # type: ignore[arg-type]
    assert json.loads(path.read_text())["cases"][0]["bit_exact"]["max_ulp"] == "inf"
    back = schema.load(path)["cases"][0]["bit_exact"]
    assert back["max_ulp"] == math.inf and math.isnan(back["first_mismatch"]["got"])


# -- state precision judged as such -----------------------------------------------------------------


def test_stored_gap_is_one_storage_ulp_only_across_a_rounding_boundary() -> None:
    cfg = get_profile("optax").config.replace(m_dtype="bfloat16")
    gap = tolerance.StoredGap(cfg, 2.0**-24, 12.0)
    # bfloat16 holds 8 significant bits: 1 and 1 + 2**-7 are neighbours, 1 + 2**-8 the boundary
    one = np.array([1.0])  # the reference's stored value: 1 + 2**-8 is a tie, rounded to even
    near = gap._gap(np.array([1.0 + 2.0**-8]), np.array([2.0**-20]), one, "bfloat16")
    far = gap._gap(np.array([1.0 + 2.0**-10]), np.array([2.0**-20]), one, "bfloat16")
    assert near.tolist() == [2.0**-7] and far.tolist() == [0.0]


def test_stored_gap_is_one_sided_around_the_references_stored_value() -> None:
    """x = 1 + 0.45 ulp is stored as 1 by the reference; an implementation within 0.8 ulp of x
    stores 1 + 2**-7 (x + 0.8 ulp = 1 + 1.25 ulp) or 1 - 2**-8 (x - 0.8 ulp = 1 - 0.35 ulp, and
    the spacing below 1 is 2**-8): at most one ulp from the reference's 1, although the two ends
    lie 1.5 ulp apart (the width the bound used before, which doubled a carried difference)."""
    cfg = get_profile("optax").config.replace(m_dtype="bfloat16")
    gap = tolerance.StoredGap(cfg, 2.0**-24, 12.0)
    ulp = 2.0**-7
    got = gap._gap(np.array([1.0 + 0.45 * ulp]), np.array([0.8 * ulp]), np.array([1.0]), "bfloat16")
    assert got.tolist() == [ulp]


NARROW_FIELDS = [
    ("m_dtype", "bfloat16"),
    ("m_dtype", "float16"),
    ("v_dtype", "bfloat16"),
    ("param_dtype", "bfloat16"),
    ("param_dtype", "float16"),
]


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    scenario=st.sampled_from(["basic", "eps_dominated", "frozen", "maximize", "warmup_cosine"]),
    field=st.sampled_from(NARROW_FIELDS),
    mode=st.sampled_from(["free", "teacher_forced"]),
)
def test_an_honest_narrow_state_implementation_is_within_the_bound(
    seed: int, scenario: str, field: tuple[str, str], mode: str
) -> None:
    """The reference computed *in* float32 with the state stored narrow (what a correct
    ``mu_dtype`` implementation computes) stays within the bound of the binary64 reference with
    the same storage: rounding the stored moments the other way near a boundary is allowed."""
    sc = get_scenario(scenario)
    cfg = sc.config(get_profile("optax").config).replace(**{field[0]: field[1]})
    p0, grads = sc.inputs(seed)
    ref = dg.reference_points(cfg, p0, grads, "float32")
    spec = tolerance.spec_for("float32")
    if mode == "free":
        got = [p.params for p in dg.reference_points(cfg, p0, grads, "float32", True)[1:]]
    else:  # one float32 step from each reference state
        from adapters.reference.oracle import RefStepper, arithmetic, round_to

        got = []
        for t, g in enumerate(grads):
            r = RefStepper(cfg, {k: round_to(v, "float32") for k, v in p0.items()}, arithmetic("float32"))
            pt = ref[t]
            r.set_state(
                {k: round_to(v, "float32") for k, v in pt.params.items()},
                t,
                {k: round_to(v, "float32") for k, v in pt.m.items()},
                {k: round_to(v, "float32") for k, v in pt.v.items()},
                None,
                pt.param_steps,
            )
            r.step({k: None if v is None else round_to(v, "float32") for k, v in g.items()})
            got.append(r.params())
    bounds = tolerance.step_bounds(cfg, ref, grads, spec, mode)
    assert cmp.compare([p.params for p in ref[1:]], got, bounds, "float32").max_ratio <= 1.0


def test_optax_mu_dtype_is_judged_against_m_dtype() -> None:
    from adapters.optax.adapter import OptaxAdamW

    cfg = get_profile("optax").config
    a = OptaxAdamW()
    assert a.expected_config(cfg, "jit-mu-bfloat16") == cfg.replace(m_dtype="bfloat16")
    assert a.expected_config(cfg, "jit-mu-float16").m_dtype == "float16"
    assert a.expected_config(cfg, "jit") == cfg and a.expected_config(cfg, "nojit") == cfg
    assert execute.expected_config(object(), cfg, "jit-mu-bfloat16") == cfg  # type: ignore[arg-type]


def test_optax_mu_bfloat16_rounds_only_beta1() -> None:
    """Finding (docs/bitexact/findings.md): under jit Optax's ``mu_dtype=bfloat16`` first moment
    is ``fl_bf16(fl32((1-b1) g) + fl32(mu * bf16(b1)))`` with the product *not* rounded to
    bfloat16, checked step by step (numpy, independent of the adapter's code) on two scenarios;
    the reference's ``m_dtype="bfloat16"`` differs only in using b1 itself."""
    pytest.importorskip("optax")
    ml_dtypes = pytest.importorskip("ml_dtypes")
    from adapters.reference.oracle import round_to

    bf16 = ml_dtypes.bfloat16
    adapter = execute.load("optax")
    for name in ("basic", "maximize"):
        sc = get_scenario(name)
        cfg = sc.config(get_profile("optax").config)
        p0, grads = sc.inputs(3)
        run = adapter.create(
            cfg,
            {k: round_to(v, "float32") for k, v in p0.items()},
            implementation="jit-mu-bfloat16",
            dtype="float32",
        )
        b1, c1 = np.float32(bf16(cfg.beta1)), np.float32(1.0 - cfg.beta1)
        assert float(b1) == 0.8984375
        prev = {k: np.zeros(np.shape(v), np.float32) for k, v in p0.items()}
        sign = -1.0 if cfg.maximize else 1.0
        for g in grads:
            run.step({k: round_to(v, "float32") for k, v in g.items()})
            got = run.state().m
            for k in prev:
                gk = np.asarray(round_to(g[k], "float32"), np.float32) * np.float32(sign)
                want = (c1 * gk + prev[k] * b1).astype(bf16).astype(np.float32)
                np.testing.assert_array_equal(np.asarray(got[k], np.float32), want)
            prev = {k: np.asarray(got[k], np.float32) for k in prev}
        run.close()


def test_cases_too_large_to_predict_keep_no_states(
    torch_adapter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tolerance, "MAX_PREDICTED_VALUES", 28 * 40 - 1)  # basic: 28 elements, 40 steps
    case = Executor(torch_adapter, diagnose=False).run(_spec("fused", "basic"))
    rec = case["bit_exact"]
    assert rec["verdict"] == "not_covered" and rec["reason"].startswith("1120 element-steps")


def test_stored_parameters_without_their_unrounded_value_get_one_rounding_each_side() -> None:
    """Where the reference did not record the unrounded parameter (a RefPoint made elsewhere),
    the bound is the carried difference plus 2 u_s |theta|: 0.25 + 2 * 2**-8 * 2 for bfloat16."""
    cfg = get_profile("torch").config.replace(param_dtype="bfloat16")
    gap = tolerance.StoredGap(cfg, 2.0**-24, 12.0)
    point = tolerance.RefPoint({"w": np.array([2.0])}, {"w": np.zeros(1)}, {"w": np.zeros(1)}, None)
    assert gap.param_gap("w", point, np.array([0.25])).tolist() == [0.25 + 2.0**-6]
    known = tolerance.RefPoint(point.params, point.m, point.v, None, params_unrounded={"w": np.array([2.0])})
    assert gap.param_gap("w", known, np.array([2.0**-20])).tolist() == [0.0]  # no boundary within reach
