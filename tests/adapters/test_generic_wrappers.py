r"""Generic wrappers, part 1: the spec grammar and the ``numpy:`` wrapper (numpy only).

The numpy optimizers below are written here, from the equations, against the numpy protocol of
:mod:`adapters.generic.numpy_wrapper`: :class:`NumpyAdamW` is an honest AdamW of the ``torch``
profile (per-parameter counts, decay :math:`\theta(1-\alpha\lambda)` before the step, epsilon
after bias correction); with ``decoupled=False`` it is Adam + L2 (the ``adam_l2`` profile).

Rounding bound: ``2 E_T`` from :mod:`tests.adapters.trajectory_bounds`, where it is derived
(first order, derived, not fitted); one teacher-forced step uses one step of it, as the Optax and
Keras tests do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")

from adamw_ref import (  # noqa: E402
    BINARY32_ARITHMETIC,
    AdamWConfig,
    ParamGroup,
    StepCountScope,
    WarmupCosine,
    get_profile,
)
from adapters import AdapterError, CanonicalState, Support, UnsupportedConfig, load_adapter  # noqa: E402
from adapters.registry import expand_spec, parse_spec  # noqa: E402
from tests.adapters.trajectory_bounds import SHAPES, flat, make_data, reference, rounding_bound  # noqa: E402

U64, U32 = 2.0**-53, 2.0**-24
T_MAIN, T_FEAT = 200, 60
HERE = "tests.adapters.test_generic_wrappers"
SPEC = f"numpy:{HERE}.NumpyAdamW"
BASE = get_profile("torch").config.replace(lr=1e-2, weight_decay=0.1)


class NumpyAdamW:
    """AdamW (torch profile) on numpy arrays, in the arrays' own dtype; the full protocol."""

    def __init__(
        self,
        params: Mapping[str, Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        decoupled: bool = True,
    ) -> None:
        self._p = {n: np.array(a, copy=True) for n, a in params.items()}
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, betas[0], betas[1], eps, weight_decay
        self.amsgrad, self.decoupled = amsgrad, decoupled
        self.k = dict.fromkeys(self._p, 0)
        self.m = {n: np.zeros_like(a) for n, a in self._p.items()}
        self.v = {n: np.zeros_like(a) for n, a in self._p.items()}
        self.vmax = {n: np.zeros_like(a) for n, a in self._p.items()}

    @property
    def params(self) -> dict[str, Any]:
        return self._p

    def set_lr(self, lr: float) -> None:
        self.lr = lr

    def step(self, grads: Mapping[str, Any]) -> None:
        for n, g in grads.items():
            if g is None:
                continue
            p = self._p[n]
            t = p.dtype.type
            self.k[n] += 1
            k = self.k[n]
            if self.decoupled:
                p *= t(1 - self.lr * self.wd)
            else:
                g = g + t(self.wd) * p
            self.m[n] = t(self.b1) * self.m[n] + t(1 - self.b1) * g
            self.v[n] = t(self.b2) * self.v[n] + t(1 - self.b2) * g * g
            v = self.v[n]
            if self.amsgrad:
                self.vmax[n] = v = np.maximum(self.vmax[n], v)
            denom = np.sqrt(v) / t(np.sqrt(1 - self.b2**k)) + t(self.eps)
            p -= t(self.lr / (1 - self.b1**k)) * self.m[n] / denom

    def state_dict(self) -> dict[str, Any]:
        return {"p": self._p, "k": self.k, "m": self.m, "v": self.v, "vmax": self.vmax, "lr": self.lr}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        self._p, self.k, self.lr = dict(d["p"]), dict(d["k"]), d["lr"]
        self.m, self.v, self.vmax = dict(d["m"]), dict(d["v"]), dict(d["vmax"])

    def adam_state(self) -> dict[str, Any]:
        return {"step": dict(self.k), "m": self.m, "v": self.v, "v_max": self.vmax if self.amsgrad else None}

    def load_adam_state(self, st: Mapping[str, Any]) -> None:
        self._p = {n: np.array(a) for n, a in st["params"].items()}
        self.k = dict(st["step"])
        self.m = {n: np.array(a) for n, a in st["m"].items()}
        self.v = {n: np.array(a) for n, a in st["v"].items()}
        if st.get("v_max") is not None:
            self.vmax = {n: np.array(a) for n, a in st["v_max"].items()}


class BareAdamW:
    """Only the required protocol: no set_lr, no state_dict, no adam_state."""

    def __init__(self, params: Mapping[str, Any], lr: float = 1e-3, weight_decay: float = 1e-2) -> None:
        self.inner = NumpyAdamW(params, lr=lr, weight_decay=weight_decay)

    @property
    def params(self) -> dict[str, Any]:
        return self.inner.params

    def step(self, grads: Mapping[str, Any]) -> None:
        self.inner.step(grads)


class StrictAdamW(NumpyAdamW):
    """Rejects every learning rate but its default."""

    def __init__(self, params: Mapping[str, Any], lr: float = 1e-3, weight_decay: float = 1e-2) -> None:
        if lr != 1e-3:
            raise ValueError(f"lr={lr} rejected")
        super().__init__(params, lr=lr, weight_decay=weight_decay)


class DebiasedAdamW(NumpyAdamW):
    """Reports the bias-corrected moments under the canonical names (as StableAdamW stores them):
    the probe must refuse to teacher-force it."""

    def adam_state(self) -> dict[str, Any]:
        st = super().adam_state()
        bc1 = {n: 1 - self.b1 ** max(k, 1) for n, k in self.k.items()}
        st["m"] = {n: m / bc1[n] for n, m in self.m.items()}
        return st


def drive(spec: str, cfg: AdamWConfig, params: Any, grads: list[Any], dtype: str = "float64") -> Any:
    run = load_adapter(spec).create(cfg, params, dtype=dtype)
    for g in grads:
        run.step(g)
    return run


def ratio(got: Mapping[str, Any], cfg: AdamWConfig, params: Any, grads: list[Any], u: float) -> float:
    """max |got - reference(cfg)| / (2 E_T) over all elements (<= 1: within the bound)."""
    ref = reference(cfg, params, grads)
    tol = rounding_bound(ref, [flat(g) for g in grads], cfg, u)
    worst = 0.0
    for n, arr in got.items():
        diff = np.abs(np.ravel(arr) - np.array(ref.params[-1][n], dtype=np.float64))
        if diff.size:
            worst = max(worst, float(np.max(diff / np.maximum(tol[n], 1e-300))))
    return worst


@pytest.fixture(scope="module")
def main_data() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return make_data(0, T_MAIN)


@pytest.fixture(scope="module")
def feat_data() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return make_data(1, T_FEAT)


# -- the spec grammar (imports no framework) ----------------------------------------------------
def test_parse_spec_kinds() -> None:
    assert parse_spec("torch").kind == "builtin"
    assert parse_spec("torch").module == "adapters.torch.adapter"
    assert parse_spec("mypkg.mymod:factory").kind == "plugin"
    s = parse_spec("torch:torch.optim.Adam?weight_decay=0.01&betas=[0.9,0.99]&profile=adam_l2&x=adamw")
    assert (s.kind, s.module, s.attr) == ("torch", "torch.optim", "Adam")
    assert dict(s.kwargs) == {"weight_decay": 0.01, "betas": [0.9, 0.99], "x": "adamw"}
    assert s.profile == "adam_l2" and s.claimed_profile == "adam_l2"
    s = parse_spec("keras-jax:mypkg.opt:Outer.Inner?amsgrad=true")
    assert (s.kind, s.module, s.attr, s.backend) == ("keras-jax", "mypkg.opt", "Outer.Inner", "jax")
    assert dict(s.kwargs) == {"amsgrad": True}
    assert parse_spec("optax:optax.adamw").claimed_profile == "optax"
    assert parse_spec("keras:keras.optimizers.AdamW").claimed_profile == "keras3"
    assert parse_spec("numpy:m.C?name=a%26b").kwargs == {"name": "a&b"}  # percent-decoded


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("torch:AdamW", "expected torch:package.module.Name"),
        ("optax:", "expected optax:package.module.Name"),
        ("torch:torch.optim.AdamW?lr", "is not key=value"),
        ("torch:torch.optim.AdamW?lr=", "empty value"),
        ("torch:torch.optim.AdamW?lr=1&lr=2", "given twice"),
        ("torch:torch.optim.AdamW?profile=nope", "profile 'nope' unknown"),
        ("torch:torch.optim.AdamW?1x=2", "is not key=value"),
        ("mypkg.mymod:factory?x=1", "only follow a wrapper kind"),
        ("module_only:", "expected 'package.module:factory'"),
        ("no-such-adapter-name", "unknown adapter 'no-such-adapter-name'"),
        ("", "expected a name"),
    ],
)
def test_bad_specs_are_one_line_errors_naming_the_spec(spec: str, message: str) -> None:
    with pytest.raises(AdapterError) as exc:
        parse_spec(spec)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert repr(spec) in str(exc.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("numpy:no_such_module_xyz.Opt", "cannot import 'no_such_module_xyz'"),
        (f"numpy:{HERE}.NoSuchClass", "has no 'NoSuchClass'"),
        ("numpy:math.pi", "is not a class with a step() method"),
        (f"numpy:{HERE}.NumpyAdamW?no_such_arg=1", "takes no argument 'no_such_arg'"),
        (f"numpy:{HERE}.NumpyAdamW?betas=3", "betas=3 is not a pair"),
        (f"numpy:{HERE}.NumpyAdamW?amsgrad=7", "amsgrad=7 is not a bool"),
        ("keras:keras.optimizers.AdamW", "means every installed backend"),
    ],
)
def test_bad_targets_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(AdapterError) as exc:
        load_adapter(spec)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_a_constructor_that_rejects_an_argument_is_one_line() -> None:
    with pytest.raises(AdapterError) as exc:  # the constructor's own refusal, at create
        load_adapter(f"numpy:{HERE}.StrictAdamW").create(BASE, {"w": np.zeros(2)})
    assert "rejected" in str(exc.value) and "\n" not in str(exc.value)


def test_an_entry_point_may_name_a_wrapper_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "np_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: np-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[adamw_ref.adapters]\nnp-adamw = {SPEC}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    parsed = parse_spec("np-adamw")
    assert (parsed.kind, parsed.module, parsed.attr) == ("entry_point", "numpy", f"{HERE}.NumpyAdamW")
    assert load_adapter("np-adamw").info.name == SPEC


def test_expand_spec() -> None:
    import importlib.util

    assert expand_spec("torch:torch.optim.AdamW") == ["torch:torch.optim.AdamW"]
    assert expand_spec("reference") == ["reference"]
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    want = [
        f"keras-{b}:keras.optimizers.AdamW?amsgrad=true"
        for b in ("tensorflow", "jax", "torch")
        if importlib.util.find_spec(b) is not None
    ]
    assert expand_spec("keras:keras.optimizers.AdamW?amsgrad=true") == want


# -- the numpy wrapper --------------------------------------------------------------------------
def test_capabilities_are_discovered() -> None:
    info = load_adapter(SPEC).info
    assert info.profile == "torch" and info.implementations == ("default",) and info.devices == ("cpu",)
    f = info.features
    assert f["amsgrad"] is Support.NATIVE and f["maximize"] is Support.EMULATED
    assert f["lr_schedule"] is Support.NATIVE and f["save_load"] is Support.NATIVE
    assert f["groups"] is Support.EMULATED and f["frozen"] is Support.NATIVE
    assert f["nesterov"] is f["eps_root"] is f["wd_schedule"] is Support.UNSUPPORTED
    # every knob: the claimed profile's value native, the others unsupported
    torch_knobs = get_profile("torch").config.knobs()
    for knob, table in info.knobs.items():
        own = (
            str(torch_knobs[knob]).lower() if isinstance(torch_knobs[knob], bool) else str(torch_knobs[knob])
        )
        assert {v for v, s in table.items() if s is Support.NATIVE} == {own}, knob
    bare = load_adapter(f"numpy:{HERE}.BareAdamW").info.features
    assert bare["lr_schedule"] is bare["save_load"] is bare["amsgrad"] is Support.UNSUPPORTED


def test_native_defaults_read_from_the_signature() -> None:
    assert load_adapter(SPEC).native_defaults() == get_profile("torch").config
    pinned = load_adapter(SPEC + "?amsgrad=true&betas=[0.9,0.99]").native_defaults()
    assert pinned == get_profile("torch").config.replace(amsgrad=True, beta2=0.99)
    # BareAdamW takes no betas/eps/amsgrad: they stay at the claimed profile's values
    assert load_adapter(f"numpy:{HERE}.BareAdamW").native_defaults() == get_profile("torch").config


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_trajectory_matches_the_torch_profile(main_data: Any, dtype: str) -> None:
    params, grads = main_data
    run = drive(SPEC, BASE, params, grads, dtype)
    got = run.params()
    u = U64 if dtype == "float64" else U32
    assert ratio(got, BASE, params, grads, u) <= 1.0
    if dtype == "float32":  # also the exact-binary32 reference, within the same bound
        ref32 = reference(BASE, params, grads, BINARY32_ARITHMETIC)
        tol = rounding_bound(reference(BASE, params, grads), [flat(g) for g in grads], BASE, u)
        for n in SHAPES:
            assert np.all(np.abs(got[n].ravel() - np.array(ref32.params[-1][n])) <= tol[n])
    st = run.state()
    assert st.step == T_MAIN and st.param_steps == dict.fromkeys(SHAPES, T_MAIN)
    assert got["s"].shape == () and got["z"].shape == (0,)


@pytest.mark.parametrize("profile", ["keras3", "adam_l2", "paper", "hf_legacy"])
def test_other_profiles_do_not_match(main_data: Any, profile: str) -> None:
    params, grads = main_data
    other = get_profile(profile).config.replace(lr=BASE.lr, weight_decay=BASE.weight_decay, eps=BASE.eps)
    got = drive(SPEC, BASE, params, grads).params()
    assert ratio(got, other, params, grads, U64) > 1.0


def test_constructor_override_takes_effect(main_data: Any) -> None:
    """``?decoupled=false`` (an argument the spec does not map) makes it Adam + L2."""
    params, grads = main_data
    l2 = load_adapter(SPEC + "?decoupled=false")
    got = drive(SPEC + "?decoupled=false", BASE, params, grads).params()
    assert ratio(got, BASE, params, grads, U64) > 1.0
    assert (
        ratio(got, get_profile("adam_l2").config.replace(lr=1e-2, weight_decay=0.1), params, grads, U64)
        <= 1.0
    )
    assert l2.info.profile == "torch"  # claimed (the suite shows the claim false) ...
    claimed = load_adapter(SPEC + "?decoupled=false&profile=adam_l2")  # ... or claimed right
    assert claimed.info.profile == "adam_l2"
    assert claimed.info.knobs["decay_form"]["coupled_l2"] is Support.NATIVE


def test_pinned_hyperparameter_refuses_other_values(feat_data: Any) -> None:
    params, grads = feat_data
    a = load_adapter(SPEC + "?amsgrad=true")
    with pytest.raises(UnsupportedConfig) as exc:
        a.to_native(BASE)
    assert exc.value.field == "amsgrad" and "pins amsgrad=True" in str(exc.value)
    cfg = BASE.replace(amsgrad=True)
    assert a.to_native(cfg)["amsgrad"] is True
    run = drive(SPEC + "?amsgrad=true", cfg, params, grads)
    assert ratio(run.params(), cfg, params, grads, U64) <= 1.0
    st = run.state()
    assert st.v_max is not None and all(np.all(st.v_max[n] >= st.v[n]) for n in SHAPES)


def _frozen(grads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {n: (None if n == "w.bias" and t % 3 == 0 else g) for n, g in gs.items()}
        for t, gs in enumerate(grads)
    ]


FEATURES: dict[str, AdamWConfig] = {
    "schedule": BASE.replace(lr_schedule=WarmupCosine(10, T_FEAT, final=0.1)),
    "maximize": BASE.replace(maximize=True),
    "mask": BASE.exclude_from_decay(["w"]),
    "group_lr": BASE.replace(groups=(ParamGroup(("w",), lr=0.03), ParamGroup(("s",), weight_decay=0.0))),
    "frozen": BASE,
}


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_feature_trajectories_match(feat_data: Any, feature: str) -> None:
    params, grads = feat_data
    if feature == "frozen":
        grads = _frozen(grads)
    cfg = FEATURES[feature]
    got = drive(SPEC, cfg, params, grads).params()
    assert ratio(got, cfg, params, grads, U64) <= 1.0
    if feature != "frozen":
        assert ratio(got, BASE, params, grads, U64) > 1.0  # the feature really acted
    else:  # per-parameter counts: a global count does not match
        glob = BASE.replace(step_count_scope=StepCountScope.GLOBAL)
        assert ratio(got, glob, params, grads, U64) > 1.0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_save_load_continues_bit_exactly(feat_data: Any, dtype: str, tmp_path: Path) -> None:
    params, grads = feat_data
    cfg = FEATURES["schedule"].replace(amsgrad=True).exclude_from_decay(["s"])
    whole = drive(SPEC, cfg, params, grads, dtype)
    first = drive(SPEC, cfg, params, grads[:25], dtype)
    first.save(tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz", allow_pickle=False) as f:  # raises if pickle were needed
        assert all(f[k].dtype != object for k in f.files)
    second = load_adapter(SPEC).create(cfg, {n: np.zeros(s) for n, s in SHAPES.items()}, dtype=dtype)
    second.load(tmp_path / "s.npz")
    for g in grads[25:]:
        second.step(g)
    for n in SHAPES:
        assert np.array_equal(second.params()[n], whole.params()[n])
        assert np.array_equal(second.state().m[n], whole.state().m[n])


def _one_step_tolerance(cfg: AdamWConfig, ref: Any, k: int, u: float) -> dict[str, Any]:
    """One step of the module bound: ``2 (4u|theta| + (K + C_k) u |D|)``."""
    b1, b2 = cfg.beta1, cfg.beta2
    cancel = b1 / (1 - b1) + b2 / (2 * (1 - b2)) + 4 * (b1**k / (1 - b1**k) + b2**k / (2 * (1 - b2**k)))
    out = {}
    for n in SHAPES:
        want = np.array(ref.params[k][n])
        prev = np.abs(np.array(ref.params[k - 1][n]))
        step = np.abs(want - prev) + cfg.lr * cfg.weight_decay * prev
        out[n] = 2 * (4 * u * prev + (12 + cancel) * u * step)
    return out


def test_set_state_teacher_forcing_one_step(feat_data: Any) -> None:
    params, grads = feat_data
    ref = reference(BASE, params, grads)
    k = 30
    st = ref.states[k]
    canon = CanonicalState(
        step=k,
        m={n: np.reshape(st.m[n], SHAPES[n]) for n in SHAPES},
        v={n: np.reshape(st.v[n], SHAPES[n]) for n in SHAPES},
        v_max=None,
        param_steps=dict(st.param_steps) if st.param_steps else None,
    )
    run = load_adapter(SPEC).create(BASE, {n: np.zeros(s) for n, s in SHAPES.items()}, dtype="float64")
    run.set_state({n: np.reshape(ref.params[k][n], SHAPES[n]) for n in SHAPES}, canon)
    assert run.state().step == k and run.param_steps() == dict.fromkeys(SHAPES, k)
    run.step(grads[k])
    tol = _one_step_tolerance(BASE, ref, k + 1, U64)
    for n in SHAPES:
        assert np.all(np.abs(run.params()[n].ravel() - np.array(ref.params[k + 1][n])) <= tol[n]), n


@pytest.mark.parametrize(
    ("cls", "reason"),
    [
        ("BareAdamW", "has no adam_state() / load_adam_state()"),
        ("DebiasedAdamW", "not the spec's raw moment"),
    ],
)
def test_state_that_cannot_be_mapped_is_refused_with_the_reason(
    cls: str, reason: str, tmp_path: Path
) -> None:
    run = load_adapter(f"numpy:{HERE}.{cls}").create(BASE, {"w": np.zeros(3)}, dtype="float64")
    canon = CanonicalState(step=1, m={"w": np.zeros(3)}, v={"w": np.zeros(3)}, v_max=None)
    for call, what in (
        (lambda: run.set_state({"w": np.zeros(3)}, canon), "teacher_forced"),
        (run.state, "state"),
    ):
        with pytest.raises(UnsupportedConfig) as exc:
            call()
        assert exc.value.field == what and reason in str(exc.value)
    with pytest.raises(AdapterError, match="state_dict"):
        load_adapter(f"numpy:{HERE}.BareAdamW").create(BASE, {"w": np.zeros(3)}).save(tmp_path / "x.npz")


def test_refusals_name_the_knob_or_hyperparameter() -> None:
    a = load_adapter(SPEC)
    for change, field in [
        ({"eps_placement": "before_bias_correction"}, "eps_placement"),
        ({"decay_form": "coupled_l2"}, "decay_form"),
        ({"step_count_scope": "global"}, "step_count_scope"),
        ({"nesterov": True}, "nesterov"),
        ({"eps_root": 1e-8}, "eps_root"),
    ]:
        with pytest.raises(UnsupportedConfig) as exc:
            a.to_native(BASE.replace(**change))
        assert exc.value.field == field, change
    bare = load_adapter(f"numpy:{HERE}.BareAdamW")
    with pytest.raises(UnsupportedConfig) as exc:
        bare.to_native(BASE.replace(beta2=0.99))
    assert exc.value.field == "beta2" and "takes no beta2 argument" in str(exc.value)
    with pytest.raises(UnsupportedConfig) as exc:
        bare.to_native(FEATURES["schedule"])
    assert exc.value.field == "lr_schedule" and "set_lr" in str(exc.value)


def test_the_suite_skips_unsupported_features_with_the_reason() -> None:
    from conformance.execute import CaseSpec, Executor

    ex = Executor(load_adapter(f"numpy:{HERE}.BareAdamW"), diagnose=False)
    spec = f"numpy:{HERE}.BareAdamW"
    sched = ex.run(CaseSpec(spec, "default", "cpu", "float64", "warmup_cosine", "free", 0))
    assert sched["verdict"] == "skipped" and "lr_schedule" in sched["error"]
    tf = ex.run(CaseSpec(spec, "default", "cpu", "float64", "basic", "teacher_forced", 0))
    assert tf["verdict"] == "skipped" and "adam_state" in tf["error"]
    free = ex.run(CaseSpec(spec, "default", "cpu", "float64", "basic", "free", 0))
    assert free["verdict"] in ("exact", "within_bound"), free
