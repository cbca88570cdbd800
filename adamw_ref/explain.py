r"""``adamw-ref explain``: one AdamW step with every intermediate, "computed by hand".

:func:`trace_step` runs :func:`adamw_ref.step.step` itself with a recorder that keeps each
intermediate, so the printed numbers are the ones the reference computes.
:func:`render` prints a trace as text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from adamw_ref.arithmetic import BINARY64_ARITHMETIC, Arithmetic
from adamw_ref.config import AdamWConfig
from adamw_ref.knobs import (
    ScheduleCount,
)
from adamw_ref.state import State
from adamw_ref.step import Grads, Params, step

Vec = list[Any]


@dataclass
class ParamTrace:
    """Every intermediate of one parameter's update (vectors are per element)."""

    name: str
    k: int
    lr_t: Any
    lam_t: Any
    s: Any
    bc1: Any
    bc2: Any
    rows: list[tuple[str, str, Vec]] = field(default_factory=list)

    def add(self, key: str, label: str, values: Sequence[Any]) -> None:
        self.rows.append((key, label, list(values)))

    def get(self, key: str) -> Vec:
        for k, _, vs in self.rows:
            if k == key:
                return vs
        raise KeyError(key)


@dataclass
class StepTrace:
    """One optimizer step: the counts, schedule values, and a :class:`ParamTrace` per parameter."""

    t: int
    count: int
    eta: float
    omega: float
    params: dict[str, ParamTrace]
    frozen: list[str]
    new_params: dict[str, tuple[Any, ...]]
    new_state: State[Any]


class _TraceRecorder:
    def __init__(self) -> None:
        self.params: dict[str, ParamTrace] = {}
        self._current: ParamTrace | None = None

    def begin(self, name: str, k: int, scalars: Mapping[str, Any]) -> None:
        self._current = ParamTrace(name=name, k=k, lr_t=scalars["lr_t"], lam_t=scalars["lam_t"],
                                   s=scalars["s"], bc1=scalars["bc1"], bc2=scalars["bc2"])
        self.params[name] = self._current

    def add(self, key: str, label: str, values: Sequence[Any]) -> None:
        assert self._current is not None
        self._current.add(key, label, values)


def trace_step(
    params: Params,
    grads: Grads,
    state: State[Any],
    config: AdamWConfig,
    arithmetic: Arithmetic[Any] = BINARY64_ARITHMETIC,
) -> StepTrace:
    """:func:`adamw_ref.step` itself, run with a recorder that keeps every intermediate."""
    recorder = _TraceRecorder()
    new_params, new_state = step(params, grads, state, config, arithmetic, recorder=recorder)
    t = state.step + 1
    count = state.step if config.schedule_count is ScheduleCount.PRE_INCREMENT else t
    frozen = [name for name in params if grads[name] is None]
    return StepTrace(t=t, count=count, eta=config.lr_schedule(count),
                     omega=config.wd_schedule(count), params=recorder.params, frozen=frozen,
                     new_params=new_params, new_state=new_state)


def format_number(x: Any, arithmetic: Arithmetic[Any], hex_too: bool = False) -> str:
    """Shortest round-trip decimal (``repr``) of a float, or a Decimal's string; ``hex_too`` adds
    ``float.hex``."""
    if isinstance(x, Decimal):
        return str(x)
    text = repr(float(x))
    return f"{text} [{float(x).hex()}]" if hex_too else text


def _fmt_vec(vs: Sequence[Any], arithmetic: Arithmetic[Any], hex_too: bool) -> str:
    items = [format_number(x, arithmetic, hex_too) for x in vs]
    return items[0] if len(items) == 1 else "[" + ", ".join(items) + "]"


def render(trace: StepTrace, config: AdamWConfig, arithmetic: Arithmetic[Any],
           hex_too: bool = False) -> str:
    """A human-readable listing of one :class:`StepTrace`."""
    sc = "pre_increment: c = t-1" if config.schedule_count is ScheduleCount.PRE_INCREMENT \
        else "post_increment: c = t"
    lines = [f"step t = {trace.t}   schedule count c = {trace.count} ({sc})",
             f"  eta(c) = {trace.eta!r}   omega(c) = {trace.omega!r}"]
    for name in trace.frozen:
        lines.append(f"  parameter {name!r}: frozen (gradient None): unchanged")
    def f(x: Any) -> str:
        return format_number(x, arithmetic, hex_too)

    for name, tr in trace.params.items():
        lines.append(f"  parameter {name!r}: bias-correction index k = {tr.k}")
        lines.append(f"    {'lr_t = lr*eta(c)':<44} = {f(tr.lr_t)}")
        lines.append(f"    {'lambda_t = weight_decay*omega(c)':<44} = {f(tr.lam_t)}")
        lines.append(f"    {'s (decay strength, ' + config.decay_scaling.value + ')':<44} = {f(tr.s)}")
        bc_label = "off" if not config.bias_correction else ""
        lines.append(f"    {'bc1 = 1 - beta1^k ' + bc_label:<44} = {f(tr.bc1)}")
        lines.append(f"    {'bc2 = 1 - beta2^k ' + bc_label:<44} = {f(tr.bc2)}")
        for _, label, vs in tr.rows:
            lines.append(f"    {label:<44} = {_fmt_vec(vs, arithmetic, hex_too)}")
    return "\n".join(lines)


def trace_to_json(trace: StepTrace) -> dict[str, Any]:
    """A JSON-ready dict of the trace (numbers as ``repr`` strings for floats, ``str`` for Decimals)."""

    def enc(x: Any) -> str:
        return str(x) if isinstance(x, Decimal) else repr(float(x))

    out: dict[str, Any] = {"t": trace.t, "count": trace.count, "eta": trace.eta,
                           "omega": trace.omega, "frozen": list(trace.frozen), "params": {}}
    for name, tr in trace.params.items():
        entry: dict[str, Any] = {"k": tr.k, "lr_t": enc(tr.lr_t), "lambda_t": enc(tr.lam_t),
                                 "s": enc(tr.s), "bc1": enc(tr.bc1), "bc2": enc(tr.bc2)}
        for key, _, vs in tr.rows:
            entry[key] = [enc(x) for x in vs]
        out["params"][name] = entry
    return out


def explain_steps(params: Mapping[str, Sequence[Any]], grads: Sequence[Grads],
                  state: State[Any], config: AdamWConfig,
                  arithmetic: Arithmetic[Any] = BINARY64_ARITHMETIC) -> list[StepTrace]:
    """Trace consecutive steps, each starting from the previous one's parameters and state."""
    current: Mapping[str, Sequence[Any]] = {k: tuple(arithmetic.vec(v)) for k, v in params.items()}
    out: list[StepTrace] = []
    for g in grads:
        tr = trace_step(current, g, state, config, arithmetic)
        out.append(tr)
        current, state = tr.new_params, tr.new_state
    return out
