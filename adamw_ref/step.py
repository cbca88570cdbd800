r"""The canonical AdamW step: :func:`init`, :func:`step`, :func:`run_trajectory`.

For update number :math:`t` (``state.step = t-1`` before it) and each parameter with a gradient:

.. math::

   c &= t-1 \text{ (pre\_increment) or } t \text{ (post\_increment)};\quad
   k = t_{\text{scope}} + \text{offset} \\
   \alpha_t &= \alpha\,\eta(c),\quad \lambda_t=\lambda\,\omega(c),\quad
   s_t = \alpha_t\lambda_t \mid \eta(c)\lambda_t \mid \lambda_t \\
   g &\leftarrow \pm g \;(\text{maximize});\quad g \leftarrow g+\lambda_t\theta \;(\text{coupled\_l2}) \\
   \theta' &= (1-s_t)\theta \mid \theta/(1+s_t) \mid \theta \quad(\text{decay before the step}) \\
   m &= \beta_1 m + (1-\beta_1) g,\quad v = \beta_2 v + (1-\beta_2) g^2 \\
   \hat m &= m/(1-\beta_1^k),\quad \hat v = v/(1-\beta_2^k) \quad(\text{or } m, v \text{ without
   bias correction}) \\
   u &= \hat m/(\sqrt{\hat v+\epsilon_{root}}+\epsilon) \;\text{ or }\;
   \hat m\sqrt{1-\beta_2^k}/(\sqrt{v+\epsilon_{root}}+\hat\epsilon) \;(\text{epsilon hat}) \\
   \theta_t &= \theta' - \alpha_t u, \text{ then } (1-s_t)\theta_t \text{ or } \theta_t/(1+s_t)
   \text{ if the decay comes after the step.}

With ``added_to_update`` the last line is :math:`\theta-\alpha_t(u+\lambda_t\theta)` (``lr``
scaling), :math:`\theta-\eta(\alpha u+\lambda_t\theta)` (``schedule_multiplier``), or
:math:`\theta-(\alpha_t u+\lambda_t\theta)` (``unscaled``). AMSGrad replaces :math:`v` by its
running maximum (``raw_v``) or :math:`\hat v` by the maximum of :math:`\hat v` (``bias_corrected_v``).
Nesterov (Optax's NAdamW): :math:`\hat m=\beta_1 m/(1-\beta_1^{k+1})+(1-\beta_1)g/(1-\beta_1^k)`.

A parameter whose gradient is ``None`` is frozen for that step: nothing about it changes (no
decay, no moment update, its own ``param_steps`` stays). NaN and infinite gradients are not
skipped: they propagate by IEEE-754 rules, as in PyTorch.

State precision: with ``param_dtype``, ``m_dtype`` or ``v_dtype`` set, :math:`\theta_t`,
:math:`m_t` and :math:`v_t` (and :math:`v^{max}_t`) are rounded once to those formats when they
are stored, after the step computed with the unrounded values
(:func:`adamw_ref.update.store`).

The update of one parameter, phase by phase, is :func:`adamw_ref.update.update_parameter`; this
module validates the inputs, runs it for every parameter and assembles the new state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from adamw_ref.arithmetic import BINARY64_ARITHMETIC, Arithmetic
from adamw_ref.config import AdamWConfig
from adamw_ref.errors import InputError
from adamw_ref.state import State
from adamw_ref.storage import to_storage
from adamw_ref.update import (
    ParamUpdate,
    StepConstants,
    coefficients,
    step_constants,
    update_parameter,
)

N = TypeVar("N")

Params = Mapping[str, Sequence[Any]]
Grads = Mapping[str, Sequence[Any] | None]


def _check_params(params: Params, finite: bool) -> None:
    """Names are strings, values sequences of real numbers (``finite``: and finite, as initial
    parameters must be; a later step accepts NaN and infinities, which only IEEE propagation of a
    non-finite gradient produces)."""
    if not isinstance(params, Mapping) or len(params) == 0:
        raise InputError("params", params, "must be a non-empty mapping of name -> values")
    for name, values in params.items():
        if not isinstance(name, str):
            raise InputError("params name", name, "must be a string")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise InputError(f"params[{name!r}]", values, "must be a sequence of numbers")
        for i, x in enumerate(values):
            if isinstance(x, (bool, complex)) or not hasattr(x, "__float__"):
                raise InputError(f"params[{name!r}][{i}]", x, "must be a real number")
            if finite and not math.isfinite(float(x)):
                raise InputError(f"params[{name!r}][{i}]", x, "initial parameters must be finite")


def _check_groups(params: Params, config: AdamWConfig) -> None:
    """Every parameter a group names must exist: a misspelt name would silently do nothing."""
    for gi, group in enumerate(config.groups):
        for n in group.names:
            if n not in params:
                raise InputError(
                    f"groups[{gi}].names", n, f"names no parameter; parameters: {sorted(params)}"
                )


def _check_grads(params: Params, grads: Grads) -> None:
    if not isinstance(grads, Mapping):
        raise InputError("grads", grads, "must be a mapping of name -> values or None")
    missing = [n for n in params if n not in grads]
    extra = [n for n in grads if n not in params]
    if missing:
        raise InputError("grads", sorted(grads), f"missing gradients for {missing} (use None to freeze)")
    if extra:
        raise InputError("grads", sorted(grads), f"gradients for unknown parameters {extra}")
    for name, g in grads.items():
        if g is None:
            continue
        if isinstance(g, (str, bytes)) or not isinstance(g, Sequence):
            raise InputError(f"grads[{name!r}]", g, "must be a sequence of numbers or None")
        if len(g) != len(params[name]):
            raise InputError(
                f"grads[{name!r}]", f"length {len(g)}", f"parameter has length {len(params[name])}"
            )
        for i, x in enumerate(g):
            if isinstance(x, (bool, complex)) or not hasattr(x, "__float__"):
                raise InputError(f"grads[{name!r}][{i}]", x, "must be a real number")


def init(
    params: Params,
    config: AdamWConfig,
    arithmetic: Arithmetic[N] = BINARY64_ARITHMETIC,  # type: ignore[assignment]
) -> State[N]:
    """The state before the first step: zero moments (and ``v_max`` when ``amsgrad``), step 0."""
    if not isinstance(config, AdamWConfig):
        raise InputError("config", config, "must be an AdamWConfig")
    _check_params(params, finite=True)
    _check_groups(params, config)
    zero = arithmetic.const(0.0)
    zeros = {name: tuple(zero for _ in values) for name, values in params.items()}
    return State(
        step=0,
        param_steps={name: 0 for name in params},
        m=dict(zeros),
        v=dict(zeros),
        v_max=dict(zeros) if config.amsgrad else None,
    )


def _check_state(params: Params, state: State[Any], config: AdamWConfig) -> None:
    if not isinstance(state, State):
        raise InputError("state", state, "must be a State (from init)")
    if set(state.m) != set(params) or set(state.v) != set(params):
        raise InputError("state", sorted(state.m), f"names differ from params {sorted(params)}")
    if config.amsgrad and state.v_max is None:
        raise InputError("state.v_max", None, "amsgrad=True needs a state made with amsgrad")
    for name, values in params.items():
        if len(state.m[name]) != len(values) or len(state.v[name]) != len(values):
            raise InputError(f"state.m[{name!r}]", len(state.m[name]), f"params have {len(values)}")


def updates(
    params: Params,
    grads: Grads,
    state: State[N],
    config: AdamWConfig,
    arithmetic: Arithmetic[N] = BINARY64_ARITHMETIC,  # type: ignore[assignment]
) -> tuple[StepConstants[N], dict[str, ParamUpdate[N] | None]]:
    """Validate the inputs, then :func:`~adamw_ref.update.update_parameter` for every parameter
    with a gradient (``None``: frozen). :func:`step` assembles the result; ``explain`` reads it."""
    if not isinstance(config, AdamWConfig):
        raise InputError("config", config, "must be an AdamWConfig")
    _check_params(params, finite=False)
    _check_groups(params, config)
    _check_grads(params, grads)
    _check_state(params, state, config)
    A = arithmetic
    const = step_constants(state.step, config, A)
    out: dict[str, ParamUpdate[N] | None] = {}
    for name, raw in params.items():
        g = grads[name]
        if g is None:
            out[name] = None
            continue
        c = coefficients(name, state.param_steps[name] + 1, const, config, A)
        v_max = None if state.v_max is None else state.v_max[name]
        out[name] = update_parameter(
            A.vec(raw), A.vec(g), list(state.m[name]), list(state.v[name]), v_max, c, const, config, A
        )
    return const, out


def assemble(
    params: Params,
    state: State[N],
    const: StepConstants[N],
    done: Mapping[str, ParamUpdate[N] | None],
    arithmetic: Arithmetic[N] = BINARY64_ARITHMETIC,  # type: ignore[assignment]
) -> tuple[dict[str, tuple[N, ...]], State[N]]:
    """The new parameters and state from :func:`updates` (the stored values: rounded to the
    state-precision formats when the config sets them); a frozen parameter keeps everything."""
    new_params: dict[str, tuple[N, ...]] = {}
    m: dict[str, tuple[N, ...]] = {}
    v: dict[str, tuple[N, ...]] = {}
    v_max: dict[str, tuple[N, ...]] | None = None if state.v_max is None else {}
    steps: dict[str, int] = {}
    for name, raw in params.items():
        u = done[name]
        if u is None:
            new_params[name] = tuple(arithmetic.vec(raw))
            m[name], v[name], steps[name] = state.m[name], state.v[name], state.param_steps[name]
            if v_max is not None and state.v_max is not None:
                v_max[name] = state.v_max[name]
            continue
        new_params[name] = tuple(u.theta)
        kept = u.stored
        m[name] = tuple(kept.m if kept else u.moments.m)
        v[name] = tuple(kept.v if kept else u.moments.v)
        steps[name] = state.param_steps[name] + 1
        vm = kept.v_max if kept else u.second.v_max
        if v_max is not None and vm is not None:
            v_max[name] = tuple(vm)
    return new_params, State(step=const.t, param_steps=steps, m=m, v=v, v_max=v_max)


def step(
    params: Params,
    grads: Grads,
    state: State[N],
    config: AdamWConfig,
    arithmetic: Arithmetic[N] = BINARY64_ARITHMETIC,  # type: ignore[assignment]
) -> tuple[dict[str, tuple[N, ...]], State[N]]:
    """One AdamW update. Returns the new parameters and the new state; inputs are not modified."""
    const, done = updates(params, grads, state, config, arithmetic)
    return assemble(params, state, const, done, arithmetic)


@dataclass(frozen=True)
class Trajectory:
    """Parameters and state after every step; index 0 is the initial point."""

    params: list[dict[str, tuple[Any, ...]]]
    states: list[State[Any]]

    def __len__(self) -> int:
        return len(self.states) - 1


def run_trajectory(
    params: Params,
    grads: Iterable[Grads],
    config: AdamWConfig,
    arithmetic: Arithmetic[Any] = BINARY64_ARITHMETIC,
) -> Trajectory:
    """Run :func:`step` over a gradient stream, keeping every intermediate point. With
    ``param_dtype`` set the initial parameters are rounded to it first (they are stored so)."""
    state: State[Any] = init(params, config, arithmetic)
    current = {k: tuple(to_storage(arithmetic.vec(v), config.param_dtype)) for k, v in params.items()}
    out_p = [current]
    out_s = [state]
    for g in grads:
        current, state = step(current, g, state, config, arithmetic)
        out_p.append(current)
        out_s.append(state)
    return Trajectory(params=out_p, states=out_s)
