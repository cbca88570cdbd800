"""Planted bugs as plain numpy optimizers (the ``numpy:`` wrapper's protocol).

:class:`Honest` is a small, independent numpy AdamW with PyTorch's semantics (decoupled
multiplicative decay before the step, :math:`\\epsilon` after the bias correction, per-parameter
step counts, AMSGrad over the raw :math:`v`), written from the update equations, not from the
reference's code. Each planted class changes exactly one thing (a class attribute) and still
claims profile torch through the wrapper::

    adamw-conformance run --adapter numpy:tests.conformance.planted_numpy.Honest
    adamw-conformance identify numpy:tests.conformance.planted_numpy.EpsHat

Protocol (``adapters/generic/numpy_wrapper.py``): ``Class(params, lr=..., betas=..., eps=...,
weight_decay=..., amsgrad=..., maximize=...)``, ``.step(grads)`` (``None`` freezes a parameter),
``.params``, and ``set_lr(lr)`` for learning-rate schedules (called before each step with
:math:`\\alpha\\eta(c)`, :math:`c` the count before the increment). Arithmetic runs in the
parameters' dtype with Python-float scalars, as torch does.

:data:`PLANTS` maps ``(field, value)`` (the labels of ``benchmarks/identifiability.py``) to the
class; ``schedule_count=post_increment`` cannot be planted here (the wrapper hands over
:math:`\\eta(c)` at the pre-increment count, and a class cannot see :math:`\\eta(c+1)`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class Honest:
    """AdamW with torch's semantics; the class attributes are the knobs a plant changes."""

    eps_placement = "after_bias_correction"
    decay_scaling = "lr"  # "schedule_multiplier": s = eta * wd; "unscaled": s = wd
    decay_form = "multiplicative"  # "proximal", "added_to_update", "coupled_l2", "none"
    decay_timing = "before_step"
    bias_correction = True
    amsgrad_mode = "raw_v"
    step_count_scope = "per_parameter"
    bias_correction_offset = 0
    force_maximize: bool | None = None  # planted: negate (True) or not (False) whatever is asked
    force_amsgrad: bool | None = None
    nesterov = False
    eps_root = 0.0

    def __init__(
        self,
        params: dict[str, np.ndarray[Any, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
    ) -> None:
        self.params = {k: np.array(v, copy=True) for k, v in params.items()}
        self.base_lr = self.lr = float(lr)
        self.b1, self.b2 = float(betas[0]), float(betas[1])
        self.eps, self.wd = float(eps), float(weight_decay)
        self.amsgrad = amsgrad if self.force_amsgrad is None else self.force_amsgrad
        self.maximize = maximize if self.force_maximize is None else self.force_maximize
        self.m = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.vmax = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.steps = dict.fromkeys(self.params, 0)
        self.t = 0

    def set_lr(self, lr: float) -> None:
        self.lr = float(lr)

    def _strength(self) -> float:
        if self.decay_scaling == "lr":
            return self.lr * self.wd
        if self.decay_scaling == "schedule_multiplier":
            eta = self.lr / self.base_lr if self.base_lr else 0.0
            return eta * self.wd
        return self.wd

    def _decay(self, p: np.ndarray[Any, Any], s: float) -> np.ndarray[Any, Any]:
        if self.decay_form == "proximal":
            return p / (1.0 + s)
        return p * (1.0 - s)

    def step(self, grads: dict[str, np.ndarray[Any, Any] | None]) -> None:
        self.t += 1
        s = self._strength()
        shrinks = self.wd != 0.0 and self.decay_form in ("multiplicative", "proximal")
        for name, g in grads.items():
            if g is None:
                continue
            p = self.params[name]
            self.steps[name] += 1
            k = (
                self.steps[name] if self.step_count_scope == "per_parameter" else self.t
            ) + self.bias_correction_offset
            g = -g if self.maximize else g
            if self.decay_form == "coupled_l2" and self.wd != 0.0:
                g = g + self.wd * p
            if shrinks and self.decay_timing == "before_step":
                p = self._decay(p, s)
            m = self.b1 * self.m[name] + (1.0 - self.b1) * g
            v = self.b2 * self.v[name] + (1.0 - self.b2) * (g * g)
            self.m[name], self.v[name] = m, v
            bc1 = 1.0 - self.b1**k if self.bias_correction else 1.0
            bc2 = 1.0 - self.b2**k if self.bias_correction else 1.0
            if self.amsgrad and self.amsgrad_mode == "raw_v":
                self.vmax[name] = v = np.maximum(self.vmax[name], v)
                v_hat = v / bc2
            elif self.amsgrad:
                self.vmax[name] = v_hat = np.maximum(self.vmax[name], v / bc2)
            else:
                v_hat = v / bc2
            if self.nesterov:
                bc1n = 1.0 - self.b1 ** (k + 1) if self.bias_correction else 1.0
                m_hat = self.b1 * m / bc1n + (1.0 - self.b1) * g / bc1
            else:
                m_hat = m / bc1
            if self.eps_placement == "after_bias_correction":
                u = m_hat / (np.sqrt(v_hat + self.eps_root) + self.eps)
            else:  # epsilon hat: sqrt(bc2) * m_hat / (sqrt(v) + eps)
                u = math.sqrt(bc2) * m_hat / (np.sqrt(v_hat * bc2 + self.eps_root) + self.eps)
            if self.decay_form == "added_to_update" and self.wd != 0.0:
                if self.decay_scaling == "lr":
                    p = p - self.lr * (u + self.wd * p)
                elif self.decay_scaling == "schedule_multiplier":
                    p = p - (self.lr / self.base_lr) * (self.base_lr * u + self.wd * p)
                else:
                    p = p - (self.lr * u + self.wd * p)
            else:
                p = p - self.lr * u
            if shrinks and self.decay_timing == "after_step":
                p = self._decay(p, s)
            self.params[name] = np.asarray(p, dtype=self.params[name].dtype)


#: (field, value) -> the attributes a plant overrides.
PLANTS: dict[tuple[str, Any], dict[str, Any]] = {
    ("eps_placement", "before_bias_correction"): {"eps_placement": "before_bias_correction"},
    ("decay_scaling", "schedule_multiplier"): {"decay_scaling": "schedule_multiplier"},
    ("decay_scaling", "unscaled"): {"decay_scaling": "unscaled"},
    ("decay_form", "proximal"): {"decay_form": "proximal"},
    ("decay_form", "added_to_update"): {"decay_form": "added_to_update"},
    ("decay_form", "coupled_l2"): {"decay_form": "coupled_l2"},
    ("decay_form", "none"): {"decay_form": "none"},
    ("decay_timing", "after_step"): {"decay_timing": "after_step"},
    ("bias_correction", False): {"bias_correction": False},
    ("amsgrad_mode", "bias_corrected_v"): {"amsgrad_mode": "bias_corrected_v"},
    ("step_count_scope", "global"): {"step_count_scope": "global"},
    ("bias_correction_offset", 1): {"bias_correction_offset": 1},
    ("bias_correction_offset", 2): {"bias_correction_offset": 2},
    ("maximize", True): {"force_maximize": True},
    ("amsgrad", True): {"force_amsgrad": True},
    ("nesterov", True): {"nesterov": True},
    ("eps_root", 1e-8): {"eps_root": 1e-8},
}


def class_name(field: str, value: Any) -> str:
    """The module attribute of the plant ``field=value`` (``Plant_decay_form_proximal``)."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return "Plant_" + f"{field}_{text}".replace(".", "_").replace("-", "m")


def plantable(field: str, value: Any) -> bool:
    """Whether the plant ``field=value`` exists here."""
    return (field, value) in PLANTS


for (_field, _value), _attrs in PLANTS.items():
    _name = class_name(_field, _value)
    globals()[_name] = type(
        _name, (Honest,), {**_attrs, "__doc__": f"Honest with {_field}={_value} planted."}
    )
