"""The bad inputs of the error-parity table (the categories of ``tests/adapters/
test_bad_input_adapters.py`` and ``tests/reference/test_bad_input.py``), as data.

Every row starts from one valid problem (:func:`inputs`): parameters ``w`` (2, 3) and ``b`` (3,)
in float32, three steps of fixed gradients with a zero element in each parameter, and
``lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2``; the row changes one thing.
``spec_refuses`` is what the specification says (docs/spec.md; the reference column of the table
checks it): initial parameters must be real and finite, a gradient has its parameter's shape and
exists for exactly the parameters (``None`` freezes one), ``lr, eps, weight_decay`` are finite and
``>= 0``, ``0 <= beta < 1``, a group names existing parameters. Zero-size and 0-d parameters,
``lr = 0`` and ``eps = 0`` are valid (``eps = 0`` gives ``0/0 = NaN`` where a gradient is 0 from
rest, by IEEE rules).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STEPS = 3
HYPER: dict[str, float] = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2}
_W = np.array([[0.5, -1.0, 1.5], [-2.0, 2.5, -3.0]], dtype=np.float32)
_B = np.array([0.1, 0.2, 0.3], dtype=np.float32)
_GW = np.array([[0.1, -0.2, 0.0], [0.4, -0.5, 0.6]], dtype=np.float32)
_GB = np.array([0.01, 0.0, -0.03], dtype=np.float32)

_LR = ("lr", "learning rate", "learning_rate")
_BETA = ("beta", "b1", "b2")
_EPS = ("eps", "epsilon")
_WD = ("weight_decay", "weight decay")
_SHAPE = ("shape", "size", "length", "dimension", "broadcast")


@dataclass(frozen=True)
class Row:
    """One bad input. ``keywords``: an error naming the problem mentions one of them."""

    id: str
    category: str
    title: str
    spec_refuses: bool
    keywords: tuple[str, ...] = ()
    hyper: dict[str, float] = field(default_factory=dict)
    spec_note: str = ""


def _hyper_rows() -> list[Row]:
    rows: list[tuple[str, str, str, float, tuple[str, ...], bool, str]] = [
        ("lr_nan", "lr = NaN", "lr", math.nan, _LR, True, ""),
        ("lr_inf", "lr = inf", "lr", math.inf, _LR, True, ""),
        ("lr_negative", "lr = -0.01", "lr", -1e-2, _LR, True, ""),
        ("lr_zero", "lr = 0 (valid: nothing moves)", "lr", 0.0, _LR, False, "valid: nothing moves"),
        ("beta1_one", "beta1 = 1", "beta1", 1.0, _BETA, True, ""),
        ("beta2_one", "beta2 = 1", "beta2", 1.0, _BETA, True, ""),
        ("beta1_above_one", "beta1 = 1.5", "beta1", 1.5, _BETA, True, ""),
        ("beta2_above_one", "beta2 = 1.5", "beta2", 1.5, _BETA, True, ""),
        ("beta1_negative", "beta1 = -0.1", "beta1", -0.1, _BETA, True, ""),
        ("beta2_nan", "beta2 = NaN", "beta2", math.nan, _BETA, True, ""),
        (
            "eps_zero",
            "eps = 0 (valid; 0/0 where a gradient is 0 from rest)",
            "eps",
            0.0,
            _EPS,
            False,
            "valid: NaN where a gradient is 0 from rest (0/0), by IEEE rules",
        ),
        ("eps_negative", "eps = -1e-8", "eps", -1e-8, _EPS, True, ""),
        ("eps_nan", "eps = NaN", "eps", math.nan, _EPS, True, ""),
        ("wd_negative", "weight_decay = -0.01", "weight_decay", -1e-2, _WD, True, ""),
        ("wd_nan", "weight_decay = NaN", "weight_decay", math.nan, _WD, True, ""),
    ]
    return [
        Row(rid, "hyperparameters", title, refuses, kw, {key: value}, note)
        for rid, title, key, value, kw, refuses, note in rows
    ]


ROWS: tuple[Row, ...] = (
    Row("param_nan", "parameters", "NaN in an initial parameter", True, ("nan", "finite")),
    Row("param_inf", "parameters", "+inf in an initial parameter", True, ("inf", "finite")),
    Row(
        "param_complex",
        "parameters",
        "complex64 parameters (and gradients)",
        True,
        ("complex", "real number"),
        spec_note="the spec is real-valued; torch (not fused), Optax, Keras and MLX take complex "
        "parameters on purpose (|g|^2 in v): outside the spec rather than nonsense",
    ),
    Row("param_bool", "parameters", "bool parameters", True, ("bool", "floating", "dtype", "real number")),
    Row(
        "param_int",
        "parameters",
        "int32 parameters (valid numbers: the spec converts them to its float format)",
        False,
        ("int", "floating", "dtype"),
        spec_note="valid: real numbers, converted to the float format",
    ),
    Row(
        "param_object",
        "parameters",
        "object-dtype parameters (an object() among floats)",
        True,
        ("object", "dtype", "real number"),
    ),
    Row("param_string", "parameters", "string parameters", True, ("str", "unicode", "dtype", "real number")),
    Row("params_empty", "parameters", "no parameters at all", True, ("empty", "parameter", "no ")),
    Row(
        "param_zero_size",
        "parameters",
        "a zero-size (0,) parameter besides the others (valid)",
        False,
        spec_note="valid",
    ),
    Row(
        "param_0d",
        "parameters",
        "a 0-d (scalar) parameter besides the others (valid)",
        False,
        spec_note="valid",
    ),
    Row(
        "grad_broadcastable",
        "gradients",
        "a (3,) gradient for the (2, 3) parameter: broadcasts",
        True,
        _SHAPE,
    ),
    Row("grad_wrong_shape", "gradients", "a (4,) gradient for the (2, 3) parameter", True, _SHAPE),
    Row(
        "grad_transposed", "gradients", "a (3, 2) gradient for the (2, 3) parameter: same size", True, _SHAPE
    ),
    Row(
        "grad_missing",
        "gradients",
        "no gradient for parameter b (absent, not None)",
        True,
        ("missing", "absent"),
    ),
    Row(
        "grad_extra",
        "gradients",
        "a gradient for c, which is no parameter",
        True,
        ("unknown", "extra", "number of"),
    ),
    *_hyper_rows(),
    Row(
        "group_unknown_name",
        "groups",
        "decay switched off for 'biass' (meant: b), a name no parameter has",
        True,
        ("biass", "mask"),
    ),
    Row(
        "device_mismatch",
        "devices",
        "parameters on the GPU, gradients on the CPU",
        True,
        ("device", "cuda"),
    ),
)
BY_ID: dict[str, Row] = {r.id: r for r in ROWS}


@dataclass
class Inputs:
    """A row's problem: parameters, gradients per step (a name absent = no gradient), the
    hyperparameters, and the names a decay-exclusion group names."""

    params: dict[str, Any]
    grads: list[dict[str, Any]]
    hyper: dict[str, float]
    exclude: tuple[str, ...] = ()


def inputs(row_id: str) -> Inputs:
    """The problem of row ``row_id`` (numpy arrays, float32 unless the row says otherwise)."""
    row = BY_ID[row_id]
    params: dict[str, Any] = {"w": _W.copy(), "b": _B.copy()}
    grads: list[dict[str, Any]] = [{"w": _GW * (1 + t), "b": _GB * (1 + t)} for t in range(STEPS)]
    hyper = {**HYPER, **row.hyper}
    exclude: tuple[str, ...] = ()
    rid = row.id
    if rid == "param_nan":
        params["w"][0, 1] = np.nan
    elif rid == "param_inf":
        params["w"][0, 1] = np.inf
    elif rid == "param_complex":
        params = {n: (a + 0.5j * a).astype(np.complex64) for n, a in params.items()}
        grads = [{n: (g - 0.25j * g).astype(np.complex64) for n, g in step.items()} for step in grads]
    elif rid == "param_bool":
        params = {n: a > 0 for n, a in params.items()}
    elif rid == "param_int":
        params = {n: np.round(a * 2).astype(np.int32) for n, a in params.items()}
    elif rid == "param_object":
        params = {n: a.astype(object) for n, a in params.items()}
        params["w"][0, 1] = object()
    elif rid == "param_string":
        params = {n: a.astype(str) for n, a in params.items()}
    elif rid == "params_empty":
        params, grads = {}, [{} for _ in range(STEPS)]
    elif rid == "param_zero_size":
        params["z"] = np.zeros((0,), dtype=np.float32)
        grads = [{**g, "z": np.zeros((0,), dtype=np.float32)} for g in grads]
    elif rid == "param_0d":
        params["s"] = np.array(0.75, dtype=np.float32)
        grads = [{**g, "s": np.array(0.125 * (1 + t), dtype=np.float32)} for t, g in enumerate(grads)]
    elif rid == "grad_broadcastable":
        grads = [{**g, "w": g["w"][1].copy()} for g in grads]
    elif rid == "grad_wrong_shape":
        grads = [{**g, "w": np.resize(g["w"], (4,))} for g in grads]
    elif rid == "grad_transposed":
        grads = [{**g, "w": g["w"].T.copy()} for g in grads]
    elif rid == "grad_missing":
        grads = [{"w": g["w"]} for g in grads]
    elif rid == "grad_extra":
        grads = [{**g, "c": np.ones(2, dtype=np.float32)} for g in grads]
    elif rid == "group_unknown_name":
        exclude = ("biass",)
    return Inputs(params, grads, hyper, exclude)
