"""Plugging in an adapter: ``package.module:factory`` specs, the ``adamw_ref.adapters`` entry-point
group, and clear errors for bad specs. The tiny adapter here is the one in docs/adapters/index.md.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")

import adamw_ref  # noqa: E402
from adamw_ref import KNOB_FIELDS, AdamWConfig, get_profile  # noqa: E402
from adapters import (  # noqa: E402
    Adapter,
    AdapterError,
    AdapterInfo,
    CanonicalState,
    OptimizerRun,
    Support,
    UnsupportedConfig,
    available_adapters,
    load_adapter,
)


class TinyRun:
    """The reference stepping flat float64 copies of numpy arrays."""

    def __init__(self, config: AdamWConfig, params: Mapping[str, Any]) -> None:
        self.config = config
        self.shapes = {n: np.shape(p) for n, p in params.items()}
        self.flat = {n: [float(x) for x in np.ravel(p)] for n, p in params.items()}
        self.st = adamw_ref.init(self.flat, config)

    def step(self, grads: Mapping[str, Any]) -> None:
        g = {n: None if x is None else [float(v) for v in np.ravel(x)] for n, x in grads.items()}
        new, self.st = adamw_ref.step(self.flat, g, self.st, self.config)
        self.flat = {n: list(v) for n, v in new.items()}

    def _shaped(self, d: Mapping[str, Any]) -> dict[str, Any]:
        return {n: np.asarray(d[n], dtype=np.float64).reshape(self.shapes[n]) for n in d}

    def params(self) -> dict[str, Any]:
        return self._shaped(self.flat)

    def state(self) -> CanonicalState:
        vmax = None if self.st.v_max is None else self._shaped(self.st.v_max)
        return CanonicalState(self.st.step, self._shaped(self.st.m), self._shaped(self.st.v), vmax)

    def save(self, path: Path) -> None:
        Path(path).write_text(
            json.dumps(
                {
                    "params": {n: [x.hex() for x in v] for n, v in self.flat.items()},
                    "state": adamw_ref.state_to_json(self.st),
                }
            )
        )

    def load(self, path: Path) -> None:
        doc = json.loads(Path(path).read_text())
        self.flat = {n: [float.fromhex(x) for x in v] for n, v in doc["params"].items()}
        self.st = adamw_ref.state_from_json(doc["state"])

    def set_state(self, params: Mapping[str, Any], state: CanonicalState) -> None:
        raise NotImplementedError("teacher forcing is not needed by this example")

    def close(self) -> None:
        pass


class TinyAdapter:
    """Torch-profile AdamW computed by the reference itself, cpu/float64 only."""

    def __init__(self) -> None:
        native = get_profile("torch").config.knobs()
        knobs = {k: {json.dumps(v).strip('"'): Support.NATIVE} for k, v in native.items()}
        self.info = AdapterInfo(
            name="tiny",
            framework="adamw_ref",
            profile="torch",
            implementations=("python",),
            devices=("cpu",),
            dtypes=("float64",),
            knobs=knobs,
            features={"frozen": Support.NATIVE, "save_load": Support.NATIVE},
        )

    def versions(self) -> dict[str, str]:
        return {"adamw_ref": adamw_ref.__version__}

    def native_defaults(self) -> AdamWConfig:
        return get_profile("torch").config

    def to_native(self, config: AdamWConfig, implementation: str | None = None) -> dict[str, Any]:
        for knob, allowed in self.info.knobs.items():
            value = json.dumps(config.knobs()[knob]).strip('"')
            if value not in allowed:
                raise UnsupportedConfig(self.info.name, knob, value)
        return {
            "lr": config.lr,
            "betas": (config.beta1, config.beta2),
            "eps": config.eps,
            "weight_decay": config.weight_decay,
        }

    def create(
        self,
        config: AdamWConfig,
        params: Mapping[str, Any],
        *,
        implementation: str | None = None,
        device: str = "cpu",
        dtype: str = "float64",
    ) -> TinyRun:
        self.to_native(config, implementation)
        if device != "cpu" or dtype != "float64":
            raise AdapterError(f"tiny: only cpu/float64, got {device}/{dtype}")
        return TinyRun(config, params)


def _not_an_adapter() -> int:
    return 42


def _factory_that_fails() -> TinyAdapter:
    raise RuntimeError("boom")


HERE = "tests.adapters.test_adapter_plugin"


def test_tiny_adapter_loads_by_spec_and_runs(tmp_path: Path) -> None:
    a = load_adapter(f"{HERE}:TinyAdapter")
    assert isinstance(a, Adapter) and a.info.name == "tiny"
    assert set(a.info.knobs) == set(KNOB_FIELDS)
    cfg = get_profile("torch").config.replace(lr=0.1, weight_decay=0.5)
    run = a.create(cfg, {"w": np.array([[1.0, -2.0]]), "s": np.array(3.0)}, dtype="float64")
    assert isinstance(run, OptimizerRun)
    run.step({"w": np.array([[0.5, 0.5]]), "s": None})
    # Hand derivation of update 1 (k=1): m_hat = g, v_hat = g^2, u = g/(|g|+eps) ~ sign(g);
    # theta = theta(1 - lr*wd) - lr*u = 1*0.95 - 0.1*0.5/(0.5+1e-8) for the first entry.
    w = run.params()["w"]
    assert w.shape == (1, 2)
    assert w[0, 0] == pytest.approx(0.95 - 0.1 * 0.5 / (0.5 + 1e-8), rel=1e-15)
    assert run.params()["s"] == 3.0 and run.state().step == 1
    run.save(tmp_path / "s.json")
    other = a.create(cfg, {"w": np.zeros((1, 2)), "s": np.array(0.0)})
    other.load(tmp_path / "s.json")
    assert np.array_equal(other.params()["w"], w)
    with pytest.raises(UnsupportedConfig, match="eps_placement"):
        a.to_native(cfg.replace(eps_placement="before_bias_correction"))


def test_instance_spec_loads_too() -> None:
    global TINY
    TINY = TinyAdapter()
    from adapters.validation import unchecked

    # the instance itself is used (not a copy), behind the input checks every adapter gets
    assert unchecked(load_adapter(f"{HERE}:TINY")) is TINY


def test_entry_point_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution on sys.path declaring ``[adamw_ref.adapters] tiny-ep = ...`` is found."""
    (tmp_path / "tiny_plugin_pkg.py").write_text(
        textwrap.dedent(f"""
        from {HERE} import TinyAdapter
        def make():
            return TinyAdapter()
    """)
    )
    dist = tmp_path / "tiny_plugin_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-plugin-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[adamw_ref.adapters]\ntiny-ep = tiny_plugin_pkg:make\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert available_adapters()["tiny-ep"] == "tiny_plugin_pkg:make"
    assert load_adapter("tiny-ep").info.name == "tiny"
    sys.modules.pop("tiny_plugin_pkg", None)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:Factory", "cannot import 'no_such_module_xyz'"),
        (f"{HERE}:NoSuchFactory", "has no 'NoSuchFactory'"),
        (f"{HERE}:_not_an_adapter", "is not an Adapter"),
        ("math:pi", "is not an Adapter"),
        ("module_only:", "expected 'package.module:factory'"),
        (":factory_only", "expected 'package.module:factory'"),
        ("no-such-adapter-name", "unknown adapter 'no-such-adapter-name'"),
    ],
)
def test_bad_specs_give_clear_errors(spec: str, message: str) -> None:
    with pytest.raises(AdapterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_adapter(spec)


def test_failing_factory_is_reported_as_adapter_error() -> None:
    with pytest.raises(AdapterError, match="boom"):
        load_adapter(f"{HERE}:_factory_that_fails")


def test_builtin_torch_names_resolve() -> None:
    pytest.importorskip("torch")
    assert load_adapter("torch").info.name == "torch"
    assert load_adapter("torch-adam").info.name == "torch-adam"
