"""Plan and execute cases in-process: one adapter, one (implementation, device, dtype, scenario,
mode, seed) at a time. Used by the worker subprocess and by the pytest plugin.

Free-running (``free``): the implementation runs the whole recorded gradient stream from the
initial parameters. Teacher-forced (``teacher_forced``): before each step its parameters and
moments are overwritten with the binary64 reference's (``set_state``), so each step's error is
local. Expected values: the binary64 reference on the dtype-rounded inputs; ``exact`` means
bitwise equal to the reference computed *in* the dtype. An implementation that keeps its state
in another precision says so through the adapter's optional ``expected_config``
(:func:`expected_config`).

Bit-exact profiles: a CPU float32 case of an implementation with an operation-order profile
(:data:`conformance.tolerance.OPORDER_PROFILES`) is also predicted by that profile
(:mod:`adamw_ref.oporder`) and compared at 0 ulp, parameters after every step and the moments the
run's ``state()`` exposes: the case's ``bit_exact`` record (:func:`bit_exact_record`), graded
beside the verdict without changing it.
"""

from __future__ import annotations

import shlex
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from adamw_ref import PROFILES, AdamWConfig, ConfigError, InputError, State, get_profile, oporder
from adamw_ref.knobs import StepCountScope
from adapters.errors import FrameworkUnavailable, UnsupportedConfig
from adapters.protocol import Adapter, CanonicalState, Support
from adapters.reference.oracle import RefStepper, arithmetic, round_to
from conformance import compare as cmp
from conformance import diagnose as dg
from conformance import tolerance
from conformance.report import schema as rp
from conformance.scenarios import Scenario
from conformance.scenarios import get as get_scenario

DEFAULT_DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class CaseSpec:
    adapter: str
    implementation: str
    device: str
    dtype: str
    scenario: str
    mode: str
    seed: int

    @property
    def id(self) -> str:
        return rp.case_id(
            self.adapter, self.implementation, self.device, self.dtype, self.scenario, self.mode, self.seed
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load(name_or_spec: str) -> Adapter:
    """:func:`adapters.registry.load_adapter`, instantiating a returned adapter *class*."""
    from adapters.registry import load_adapter

    obj: Any = load_adapter(name_or_spec)
    if isinstance(obj, type):
        obj = obj()
    return obj  # type: ignore[no-any-return]


def repro_command(c: CaseSpec) -> str:
    return " ".join(
        shlex.quote(x)
        for x in [
            "adamw-conformance",
            "run",
            "--adapter",
            c.adapter,
            "--implementation",
            c.implementation,
            "--device",
            c.device,
            "--dtype",
            c.dtype,
            "--scenario",
            c.scenario,
            "--mode",
            c.mode,
            "--seeds",
            str(c.seed),
            "--out",
            "adamw-repro",
            "--force",
        ]
    )


def plan(
    adapter: Adapter,
    adapter_name: str,
    scenarios: Sequence[Scenario],
    *,
    dtypes: Sequence[str] | None = None,
    modes: Sequence[str] = ("free", "teacher_forced"),
    seeds: Sequence[int] = (0,),
    device: str = "cpu",
    implementations: Sequence[str] | None = None,
    all_teacher_forced: bool = True,
) -> list[CaseSpec]:
    """Every case for this adapter: each scenario's dtypes (or ``dtypes``) that the adapter
    supports. Teacher-forced cases only for scenarios that allow them and, unless
    ``all_teacher_forced``, only for the ``quick`` ones (keeps the default run short)."""
    info = adapter.info
    # ``implementations`` filters adapters that have one of them; others keep all of theirs.
    impls = [i for i in info.implementations if not implementations or i in implementations]
    if not impls:
        impls = list(info.implementations)
    # impossible combinations are never planned (torch's capturable variants need CUDA)
    runs_on = getattr(info, "runs_on", None)
    impls = [i for i in impls if runs_on is None or runs_on(i, device)]
    out = []
    for impl in impls:
        for sc in scenarios:
            wanted = dtypes if dtypes else [d for d in sc.dtypes]
            for dt in wanted:
                if dt not in sc.dtypes and dtypes is None:
                    continue
                if dt not in info.dtypes:
                    continue
                for mode in modes:
                    if mode == "teacher_forced" and not (
                        sc.teacher_forced and (all_teacher_forced or "quick" in sc.tags)
                    ):
                        continue
                    for seed in seeds:
                        out.append(CaseSpec(adapter_name, impl, device, dt, sc.id, mode, seed))
    # float64 cases last: they turn on process-wide switches (JAX's jax_enable_x64) under which
    # narrower dtypes compute differently (Optax float32 under x64: docs/bitexact/findings.md), so
    # every float32/16-bit case runs as it would in a float32 program.
    return sorted(out, key=lambda c: c.dtype == "float64")


def base_config(adapter: Adapter) -> tuple[str, AdamWConfig]:
    prof = adapter.info.profile
    if prof in PROFILES:
        return prof, get_profile(prof).config
    return prof, adapter.native_defaults()


def _skip_reason(adapter: Adapter, sc: Scenario, c: CaseSpec) -> str | None:
    info = adapter.info
    for feat in sc.features:
        sup = info.features.get(feat, Support.UNSUPPORTED)
        if Support(sup) is Support.UNSUPPORTED:
            return f"{info.name} does not support feature {feat!r} (AdapterInfo.features)"
    for key, reason in info.skips.items():
        if key in c.id or key == c.scenario:
            return f"{info.name} skips {key!r}: {reason}"
    if c.device not in info.devices:
        return f"{info.name} does not support device {c.device!r}"
    return None


def blank_case(
    c: CaseSpec, profile: str, steps: int, verdict: str, error: str | None = None
) -> dict[str, Any]:
    return {
        "id": c.id,
        "adapter": c.adapter,
        "implementation": c.implementation,
        "device": c.device,
        "dtype": c.dtype,
        "scenario": c.scenario,
        "mode": c.mode,
        "profile": profile,
        "seed": c.seed,
        "steps": steps,
        "verdict": verdict,
        "acceptable_flag": None,
        "metrics": {},
        "bound": {},
        "first_divergence": None,
        "diagnosis": None,
        "error": error,
        "repro": repro_command(c),
        "series": rp.empty_series(),
        "duration_s": 0.0,
    }


def _read_state(run: Any) -> dict[str, dict[str, Any]] | None:
    """The run's moments after a step as bit-exact slots (``m``, ``v``, ``v_max``), or None
    where the adapter does not expose them."""
    try:
        st = run.state()
    except Exception:
        return None
    out = {"m": dict(st.m), "v": dict(st.v)}
    if st.v_max is not None:
        out["v_max"] = dict(st.v_max)
    return {k: {n: np.asarray(a, np.float64) for n, a in d.items()} for k, d in out.items()}


def _run_free(
    adapter: Adapter,
    c: CaseSpec,
    cfg: AdamWConfig,
    p0: Mapping[str, Any],
    grads: Sequence[Mapping[str, Any]],
    states: list[dict[str, Any] | None] | None = None,
) -> list[dict[str, Any]]:
    """Parameters after every step; with ``states`` given, the moments after every step are
    appended to it too (:func:`_read_state`)."""
    run = adapter.create(
        cfg,
        {k: round_to(v, c.dtype) for k, v in p0.items()},
        implementation=c.implementation,
        device=c.device,
        dtype=c.dtype,
    )
    try:
        out = []
        for g in grads:
            run.step({k: None if v is None else round_to(v, c.dtype) for k, v in g.items()})
            out.append({k: np.asarray(v, np.float64) for k, v in run.params().items()})
            if states is not None:
                states.append(_read_state(run))
        return out
    finally:
        run.close()


def _read_param_steps(run: Any) -> dict[str, int] | None:
    """The run's per-parameter counts: ``state().param_steps``, else a ``param_steps()`` method
    (the torch runs have one), else None (the adapter keeps a global count only)."""
    ps = run.state().param_steps
    if ps is not None:
        return {k: int(x) for k, x in ps.items()}
    fn = getattr(run, "param_steps", None)
    return {k: int(x) for k, x in fn().items()} if callable(fn) else None


def _run_forced(
    adapter: Adapter,
    c: CaseSpec,
    cfg: AdamWConfig,
    p0: Mapping[str, Any],
    grads: Sequence[Mapping[str, Any]],
    ref: Sequence[tolerance.RefPoint],
    expected: AdamWConfig | None = None,
    states: list[dict[str, Any] | None] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Teacher forcing: before step t+1 the run gets the reference's state after step t,
    per-parameter counts (``CanonicalState.param_steps``) included. Where they matter
    (per-parameter scope and a parameter that missed a step), the run must read them back;
    an adapter that keeps a global count only cannot be forced there: the case is skipped.
    The run gets ``cfg``; the in-dtype emulation computes ``expected`` (default ``cfg``); with
    ``states`` given, the run's moments after every step are appended to it."""
    run = adapter.create(
        cfg,
        {k: round_to(v, c.dtype) for k, v in p0.items()},
        implementation=c.implementation,
        device=c.device,
        dtype=c.dtype,
    )
    emu = RefStepper(expected or cfg, {k: round_to(v, c.dtype) for k, v in p0.items()}, arithmetic(c.dtype))
    per_param = cfg.step_count_scope is StepCountScope.PER_PARAMETER
    checked = False
    got, emulated = [], []
    try:
        for t, g in enumerate(grads):
            pt = ref[t]
            ps = None if pt.param_steps is None else dict(pt.param_steps)
            rd = {k: round_to(v, c.dtype) for k, v in pt.params.items()}
            run.set_state(
                rd,
                CanonicalState(
                    step=t,
                    m=dict(pt.m),
                    v=dict(pt.v),
                    v_max=None if pt.v_max is None else dict(pt.v_max),
                    param_steps=ps,
                ),
            )
            if per_param and ps is not None and not checked and any(n != t for n in ps.values()):
                checked = True
                back = _read_param_steps(run)
                if back is None or any(back.get(k) != n for k, n in ps.items()):
                    raise UnsupportedConfig(
                        c.adapter,
                        "teacher_forced",
                        "param_steps",
                        "per-parameter step counts (frozen parameters) cannot be set: after "
                        f"set_state with param_steps={ps} the run reports {back} (global count "
                        "only); this scenario runs free only for this adapter",
                    )
            emu.set_state(
                rd,
                t,
                {k: round_to(v, c.dtype) for k, v in pt.m.items()},
                {k: round_to(v, c.dtype) for k, v in pt.v.items()},
                None if pt.v_max is None else {k: round_to(v, c.dtype) for k, v in pt.v_max.items()},
                ps,
            )
            gr = {k: None if v is None else round_to(v, c.dtype) for k, v in g.items()}
            run.step(gr)
            emu.step(gr)
            got.append({k: np.asarray(v, np.float64) for k, v in run.params().items()})
            emulated.append(emu.params())
            if states is not None:
                states.append(_read_state(run))
        return got, emulated
    finally:
        run.close()


def _rounded_hparams(cfg: AdamWConfig, dtype: str) -> AdamWConfig | None:
    """``cfg`` with lr, betas, eps, wd rounded to ``dtype``; None if a beta rounds to 1
    (bfloat16: 0.999 -> 1.0), where the allowance would excuse anything."""
    f = {
        k: float(round_to(getattr(cfg, k), dtype))
        for k in ("lr", "beta1", "beta2", "eps", "weight_decay", "eps_root")
    }
    if f["beta1"] >= 1.0 or f["beta2"] >= 1.0:
        return None
    return cfg.replace(**f)


def expected_config(adapter: Adapter, cfg: AdamWConfig, implementation: str) -> AdamWConfig:
    """What the reference computes for ``implementation`` run with ``cfg``: the adapter's optional
    ``expected_config(cfg, implementation)`` (an implementation that keeps its state in another
    precision names it there, e.g. Optax's ``jit-mu-bfloat16`` with ``m_dtype="bfloat16"``),
    else ``cfg``."""
    fn = getattr(adapter, "expected_config", None)
    if not callable(fn):
        return cfg
    out = fn(cfg, implementation)
    return out if isinstance(out, AdamWConfig) else cfg


# -- bit_exact: the case against its operation-order profile --------------------------------------


def _f32_flat(x: Any) -> list[float]:
    return [float(v) for v in np.asarray(round_to(x, "float32"), np.float64).ravel()]


def _point(
    params: Mapping[str, Any], state: State[Any] | None, shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, dict[str, Any]]:
    """A predicted step as bit-exact slots, each array in its parameter's shape."""

    def shaped(d: Mapping[str, Any]) -> dict[str, Any]:
        return {n: np.asarray(d[n], np.float64).reshape(shapes[n]) for n in shapes}

    out = {"params": shaped(params)}
    if state is not None:
        out["m"], out["v"] = shaped(state.m), shaped(state.v)
        if state.v_max is not None:
            out["v_max"] = shaped(state.v_max)
    return out


def predict_free(
    profile: str, cfg: AdamWConfig, p0: Mapping[str, Any], grads: Sequence[Mapping[str, Any]]
) -> list[dict[str, dict[str, Any]]]:
    """The profile's prediction of a free-running float32 case after steps 1..T (raises
    :class:`~adamw_ref.errors.ConfigError` where the profile does not cover ``cfg``)."""
    shapes = {n: tuple(np.shape(v)) for n, v in p0.items()}
    traj = oporder.predict_trajectory(
        profile,
        cfg,
        {n: _f32_flat(v) for n, v in p0.items()},
        [{n: None if v is None else _f32_flat(v) for n, v in g.items()} for g in grads],
    )
    return [_point(traj.params[t], traj.states[t], shapes) for t in range(1, len(traj.params))]


def predict_forced(
    profile: str, cfg: AdamWConfig, ref: Sequence[tolerance.RefPoint], grads: Sequence[Mapping[str, Any]]
) -> list[dict[str, dict[str, Any]]]:
    """The profile's prediction of a teacher-forced float32 case: step t+1 from the forced
    state (the binary64 reference after step t rounded to float32, as ``set_state`` stores it)."""
    oporder.check_supported(profile, cfg)
    impl = oporder.IMPLEMENTATIONS[profile]
    plat = oporder.PLATFORMS[oporder.DEFAULT_PLATFORM]
    shapes = {n: tuple(np.shape(v)) for n, v in ref[0].params.items()}
    out = []
    for t, g in enumerate(grads):
        pt = ref[t]
        state: State[Any] = State(
            step=t,
            param_steps=dict(pt.param_steps) if pt.param_steps is not None else dict.fromkeys(shapes, t),
            m={n: tuple(_f32_flat(a)) for n, a in pt.m.items()},
            v={n: tuple(_f32_flat(a)) for n, a in pt.v.items()},
            v_max=None if pt.v_max is None else {n: tuple(_f32_flat(a)) for n, a in pt.v_max.items()},
        )
        cur = {n: _f32_flat(a) for n, a in pt.params.items()}
        grad = {n: None if v is None else _f32_flat(v) for n, v in g.items()}
        # one step of the profile from a given state (adamw_ref.oporder has no public API for it)
        new, after = oporder._step(impl, cfg, plat, cur, grad, state)
        out.append(_point(new, after, shapes))
    return out


def _predictable(p0: Mapping[str, Any], grads: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a case is small enough to predict (:data:`tolerance.MAX_PREDICTED_VALUES`)."""
    return sum(int(np.size(v)) for v in p0.values()) * len(grads) <= tolerance.MAX_PREDICTED_VALUES


def bit_exact_record(
    profile: str,
    mode: str,
    cfg: AdamWConfig,
    p0: Mapping[str, Any],
    grads: Sequence[Mapping[str, Any]],
    ref: Sequence[tolerance.RefPoint],
    got: Sequence[Mapping[str, Any]],
    states: Sequence[Mapping[str, Any] | None],
) -> dict[str, Any]:
    """The case's ``bit_exact`` record (:func:`conformance.tolerance.grade_bit_exact`): its
    parameters after every step and, where the adapter exposes them, its moments, against the
    prediction of ``profile`` (``adamw_ref.oporder``) for the same inputs."""
    platform = oporder.DEFAULT_PLATFORM
    if not _predictable(p0, grads):
        size = sum(int(np.size(v)) for v in p0.values()) * len(grads)
        return tolerance.not_predicted(
            profile, f"{size} element-steps: over {tolerance.MAX_PREDICTED_VALUES} not predicted", platform
        )
    try:
        if mode == "free":
            predicted = predict_free(profile, cfg, p0, grads)
        else:
            predicted = predict_forced(profile, cfg, ref, grads)
    except (ConfigError, InputError) as exc:
        return tolerance.not_predicted(profile, f"{type(exc).__name__}: {exc}", platform)
    have = [{"params": p, **(st or {})} for p, st in zip(got, states, strict=False)]
    if len(states) < len(got):
        have += [{"params": p} for p in got[len(states) :]]
    return tolerance.grade_bit_exact(profile, predicted, have, platform)


class Executor:
    """Runs cases of one adapter; caches free-running trajectories for diagnosis."""

    def __init__(self, adapter: Adapter, diagnose: bool = True, diagnose_budget: float | None = None) -> None:
        self.adapter = adapter
        self.do_diagnose = diagnose
        self.budget = diagnose_budget  # seconds of knob search in total; None = unlimited
        self._spent = 0.0
        self._free: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self._diag: dict[tuple[Any, ...], dict[str, Any] | None] = {}
        self.last_trajectory: list[dict[str, Any]] | None = None

    def run(self, c: CaseSpec) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.last_trajectory = None
        profile = self.adapter.info.profile
        try:
            sc = get_scenario(c.scenario)
            case = self._run(c, sc)
        except (UnsupportedConfig, FrameworkUnavailable) as exc:
            case = blank_case(c, profile, 0, "skipped", f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # an implementation's failure is a result, not a crash
            tb = traceback.format_exc(limit=6)
            case = blank_case(c, profile, 0, "error", f"{type(exc).__name__}: {exc}\n{tb[-2000:]}")
        case["duration_s"] = round(time.perf_counter() - t0, 4)
        return case

    def _run(self, c: CaseSpec, sc: Scenario) -> dict[str, Any]:
        profile, base = base_config(self.adapter)
        reason = _skip_reason(self.adapter, sc, c)
        if reason:
            return blank_case(c, profile, sc.steps, "skipped", reason)
        try:
            cfg = sc.config(base)
        except ConfigError as exc:
            return blank_case(c, profile, sc.steps, "skipped", f"ConfigError: {exc}")
        self.adapter.to_native(cfg, c.implementation)  # UnsupportedConfig -> skipped
        want = expected_config(self.adapter, cfg, c.implementation)  # what the reference computes
        p0, grads = sc.inputs(c.seed)
        spec = tolerance.spec_for(c.dtype, c.device, "ref_vs_impl")
        ref = dg.reference_points(want, p0, grads, c.dtype)
        key = (c.implementation, c.device, c.dtype, c.scenario, c.seed)
        profile_op = tolerance.oporder_profile(self.adapter.info.name, c.implementation, c.device, c.dtype)
        # the moments after every step, for the bit-exact comparison (not kept for huge cases)
        states: list[dict[str, Any] | None] | None = [] if profile_op and _predictable(p0, grads) else None
        if c.mode == "free":
            got = _run_free(self.adapter, c, cfg, p0, grads, states)
            self._free[key] = got
            emulated = [p.params for p in dg.reference_points(want, p0, grads, c.dtype, True)[1:]]
        elif c.mode == "teacher_forced":
            got, emulated = _run_forced(self.adapter, c, cfg, p0, grads, ref, want, states)
        else:
            raise ValueError(f"mode={c.mode!r}: the worker runs 'free' or 'teacher_forced'")
        self.last_trajectory = got
        bounds = tolerance.step_bounds(want, ref, grads, spec, c.mode)
        res = cmp.compare([p.params for p in ref[1:]], got, bounds, c.dtype, emulated)
        verdict = "exact" if res.exact else ("within_bound" if res.max_ratio <= 1 else "divergent")
        case = blank_case(c, profile, sc.steps, verdict)
        case.update(
            metrics=res.metrics,
            first_divergence=res.first_divergence,
            series={"step": res.series_step, "err": res.series_err},
            bound={
                "kind": spec.kind,
                "dtype": c.dtype,
                "device": c.device,
                "c_step": spec.c_step,
                "unit_roundoff": spec.unit_roundoff,
                "max_ratio": res.max_ratio,
            },
        )
        if profile_op:
            case["bit_exact"] = bit_exact_record(profile_op, c.mode, want, p0, grads, ref, got, states or [])
        if verdict == "divergent":
            self._explain(case, c, cfg, want, p0, grads, spec, key)
        return case

    def _explain(
        self,
        case: dict[str, Any],
        c: CaseSpec,
        cfg: AdamWConfig,
        want: AdamWConfig,
        p0: Mapping[str, Any],
        grads: Sequence[Mapping[str, Any]],
        spec: tolerance.ToleranceSpec,
        key: tuple[Any, ...],
    ) -> None:
        """Look for an allowed deviation or a diagnosis of a divergent case: the adapter runs
        ``cfg``, the reference (and the knob search around it) computes ``want``."""
        if key not in self._free:
            self._free[key] = _run_free(self.adapter, c, cfg, p0, grads)
        got = self._free[key]
        cfg = want
        # Allowed deviation 1: hyperparameters stored in the dtype (lr, betas, eps, wd rounded).
        rounded = _rounded_hparams(cfg, c.dtype)
        if (
            c.mode == "free"
            and rounded is not None
            and rounded != cfg
            and dg.score(rounded, p0, grads, got, c.dtype, spec) <= 1.0
        ):
            case["verdict"], case["acceptable_flag"] = "acceptable", "hyperparameters_rounded_to_dtype"
            return
        if not self.do_diagnose:
            return
        if key not in self._diag:
            if self.budget is not None and self._spent >= self.budget:
                case["diagnosis"] = {
                    "explained_by": None,
                    "kind": None,
                    "candidates": [],
                    "detail": f"not diagnosed: the knob-search budget ({self.budget:g} s) of this "
                    "run is spent; rerun the repro command (it diagnoses)",
                }
                return
            t0 = time.perf_counter()
            self._diag[key] = dg.diagnose(cfg, p0, grads, got, c.dtype, spec)
            self._spent += time.perf_counter() - t0
        case["diagnosis"] = self._diag[key]
        flag = dg.acceptable_flag(case["diagnosis"], cfg)
        if flag:
            case["verdict"], case["acceptable_flag"] = "acceptable", flag


def iter_cases(ex: Executor, cases: Iterable[CaseSpec]) -> Iterable[dict[str, Any]]:
    for c in cases:
        yield ex.run(c)
