"""Bad input to adapters used directly (issue 15): the same one-line AdapterError, naming the
input, from every adapter ``load_adapter`` returns (adapters/validation.py), where the frameworks
themselves would accept NaN initial parameters, drop an imaginary part or broadcast a gradient."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adamw_ref import get_profile
from adapters import AdapterError, UnsupportedConfig, load_adapter

CFG = get_profile("torch").config


def _create(adapter: str, params: Any) -> Any:
    a = load_adapter(adapter)
    return a.create(get_profile(a.info.profile).config, params, dtype="float64")  # its own profile


ADAPTERS = [
    a
    for a, mod in (("reference", "numpy"), ("torch", "torch"), ("optax", "optax"), ("mlx", "mlx"))
    if importlib.util.find_spec(mod) is not None
]

# (id, params, text the error must contain)
BAD_PARAMS: list[tuple[str, Any, str]] = [
    ("not a mapping", [1.0, 2.0], "params"),
    ("empty", {}, "params"),
    ("name not a string", {1: np.ones(2)}, "params name"),
    ("strings", {"w": ["a", "b"]}, "params['w']"),
    ("a string", {"w": "1.0"}, "params['w']"),
    ("None", {"w": None}, "params['w']"),
    ("complex", {"w": np.array([1 + 2j, 3.0])}, "dtype complex128"),
    ("bool", {"w": np.array([True, False])}, "dtype bool"),
    ("object", {"w": np.array([object()], dtype=object)}, "dtype object"),
    ("ragged", {"w": [[1.0], [1.0, 2.0]]}, "params['w']"),
    ("NaN initial", {"w": np.array([1.0, math.nan])}, "must be finite"),
    ("inf initial", {"w": np.array([math.inf])}, "must be finite"),
]


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize(
    "params,needle", [(p, n) for _, p, n in BAD_PARAMS], ids=[i for i, _, _ in BAD_PARAMS]
)
def test_bad_params_are_refused(adapter: str, params: Any, needle: str) -> None:
    with pytest.raises(AdapterError) as info:
        load_adapter(adapter).create(CFG, params, dtype="float64")
    msg = str(info.value)
    assert needle in msg and "\n" not in msg, msg


BAD_GRADS: list[tuple[str, Any, str]] = [
    ("wrong shape", {"w": np.zeros(4)}, "shape (4,)"),
    ("missing", {}, "missing ['w']"),
    ("unknown name", {"w": np.zeros((2, 2)), "b": np.zeros(1)}, "unknown ['b']"),
    ("complex", {"w": np.zeros((2, 2), dtype=complex)}, "dtype complex128"),
    ("strings", {"w": [["a", "b"], ["c", "d"]]}, "grads['w']"),
    ("not a mapping", [np.zeros((2, 2))], "grads"),
]


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("grads,needle", [(g, n) for _, g, n in BAD_GRADS], ids=[i for i, _, _ in BAD_GRADS])
def test_bad_grads_are_refused(adapter: str, grads: Any, needle: str) -> None:
    run = _create(adapter, {"w": np.ones((2, 2))})
    try:
        with pytest.raises(AdapterError) as info:
            run.step(grads)
        assert needle in str(info.value), str(info.value)
    finally:
        run.close()


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_nonfinite_gradients_propagate_as_the_spec_says(adapter: str) -> None:
    # not an error: NaN and infinities propagate by IEEE rules (documented in the spec)
    run = _create(adapter, {"w": np.ones(2)})
    run.step({"w": np.array([math.nan, 0.5])})
    p = run.params()["w"]
    assert math.isnan(p[0]) and math.isfinite(p[1])
    run.close()


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_load_of_a_missing_or_foreign_file(adapter: str, tmp_path: Path) -> None:
    run = _create(adapter, {"w": np.ones(2)})
    with pytest.raises(AdapterError, match="no such file"):
        run.load(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"\x00not a state\xff" * 10)
    with pytest.raises(AdapterError, match=r"junk\.npz"):
        run.load(junk)
    run.close()


@pytest.mark.parametrize(
    "spec,needle",
    [
        (123, "must be a string"),
        ("os:getcwd", "not an Adapter"),
        ("math:pi", "not an Adapter"),
        ("", "expected"),
        ("nosuchmodule_xyz:f", "cannot import"),
    ],
)
def test_bad_specs_are_refused_without_running_anything(spec: Any, needle: str) -> None:
    with pytest.raises(AdapterError, match=needle):
        load_adapter(spec)


def test_config_must_be_a_config() -> None:
    with pytest.raises(AdapterError, match="AdamWConfig"):
        load_adapter("reference").create({"lr": 0.1}, {"w": np.ones(2)})  # type: ignore[arg-type]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_group_naming_a_missing_parameter_is_refused(adapter: str) -> None:
    from adamw_ref import ParamGroup

    a = load_adapter(adapter)
    cfg = get_profile(a.info.profile).config.replace(groups=(ParamGroup(names=("biass",), weight_decay=0.0),))
    with pytest.raises(AdapterError, match=r"groups\[0\]\.names"):
        a.create(cfg, {"w": np.ones(2)}, dtype="float64")


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_state_precision_is_refused_where_not_computed(adapter: str) -> None:
    """A config asking for a narrower stored state (m_dtype etc.) must never be computed in full
    precision and judged as if it were: only the reference (which computes it) and the
    implementations that store exactly that (Optax's jit-mu-bfloat16 for m_dtype=bfloat16) run."""
    a = load_adapter(adapter)
    cfg = get_profile(a.info.profile).config.replace(m_dtype="bfloat16")
    params = {"w": np.ones(3)}
    if adapter == "reference":
        run = a.create(cfg, params, dtype="float32")
        run.step({"w": np.full(3, 0.1)})
        m = run.state().m["w"]  # stored in bfloat16: 8 significant bits
        assert all(
            float(x) == float(np.float32(x)) and (int(np.float32(x).view(np.uint32)) & 0xFFFF) == 0 for x in m
        )
        return
    with pytest.raises(UnsupportedConfig, match="state precision"):
        a.create(cfg, params, dtype="float32")
    if adapter == "optax":
        run = a.create(cfg, params, dtype="float32", implementation="jit-mu-bfloat16")
        run.step({"w": np.full(3, 0.1)})
        with pytest.raises(UnsupportedConfig, match="state precision"):
            a.create(
                cfg.replace(v_dtype="float16"), params, dtype="float32", implementation="jit-mu-bfloat16"
            )
