r"""``adamw-ref explain``: one AdamW step with every intermediate, "computed by hand".

:func:`trace_step` runs the reference's own update (:func:`adamw_ref.step.updates`, the same
call :func:`adamw_ref.step` makes) and reads every intermediate off the phases it returns
(:class:`adamw_ref.update.ParamUpdate`), so the printed numbers are the ones the reference
computes; the arithmetic is not instrumented. :func:`render` prints a trace as text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from adamw_ref.arithmetic import BINARY64_ARITHMETIC, Arithmetic
from adamw_ref.config import AdamWConfig
from adamw_ref.knobs import AmsgradMode, DecayForm, DecayScaling, EpsPlacement, ScheduleCount
from adamw_ref.state import State
from adamw_ref.step import Grads, Params, assemble, updates
from adamw_ref.update import Decay, ParamUpdate

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


Row = tuple[str, str, Vec]


def _decay_rows(d: Decay[Any], cfg: AdamWConfig, A: Arithmetic[Any], before: bool) -> list[Row]:
    mult = cfg.decay_form is DecayForm.MULTIPLICATIVE
    factor: Row = ("decay_factor", "1 - s" if mult else "1 + s", [d.factor])
    if before:
        label = "theta' = (1 - s)*theta_{t-1}" if mult else "theta' = theta_{t-1}/(1 + s)"
        return [
            factor,
            ("theta_decayed", label, d.value),
            ("decay_term", "decay term theta_{t-1} - theta' (shown)", A.sub(d.before, d.value)),
        ]
    return [
        ("theta_step", "theta_step = theta_{t-1} - delta", d.before),
        factor,
        ("decay_term", "decay term theta_step - theta_t (shown)", A.sub(d.before, d.value)),
    ]


def _moment_rows(u: ParamUpdate[Any], cfg: AdamWConfig) -> list[Row]:
    mo = u.moments
    rows: list[Row] = [
        ("m_prev", "m_{t-1}", mo.m_prev),
        ("v_prev", "v_{t-1}", mo.v_prev),
        ("m", "m = beta1*m_{t-1} + (1-beta1)*g", mo.m),
        ("g2", "g*g", mo.g2),
        ("v", "v = beta2*v_{t-1} + (1-beta2)*g*g", mo.v),
    ]
    if u.second.v_max is not None:
        rows.append(
            (
                "v_max",
                "v_max = max(v_max_{t-1}, v)"
                if cfg.amsgrad_mode is AmsgradMode.RAW_V
                else "v_hat_max = max(v_hat_max_{t-1}, v/bc2)",
                u.second.v_max,
            )
        )
    rows.append(
        (
            "m_hat",
            "m_hat = beta1*m/(1-beta1^(k+1)) + (1-beta1)*g/(1-beta1^k)" if cfg.nesterov else "m_hat = m/bc1",
            u.m_hat,
        )
    )
    return rows


def _direction_rows(u: ParamUpdate[Any], cfg: AdamWConfig) -> list[Row]:
    d = u.direction
    if cfg.eps_placement is EpsPlacement.AFTER_BIAS_CORRECTION:
        return [
            ("v_hat", "v_hat = v/bc2" if d.derived else "v_hat = v_hat_max", d.second),
            ("sqrt", "sqrt(v_hat + eps_root)", d.root),
            ("denom", "denom = sqrt(v_hat + eps_root) + eps", d.denom),
            ("u", "u = m_hat/denom", d.u),
        ]
    rows: list[Row] = [("v_used", "v = v_hat_max*bc2", d.second)] if d.derived else []
    return [
        *rows,
        ("sqrt", "sqrt(v + eps_root)", d.root),
        ("denom", "denom = sqrt(v + eps_root) + eps_hat", d.denom),
        ("ratio", "m_hat/denom", d.ratio or []),
        ("sqrt_bc2", "sqrt(bc2)", [d.sqrt_bc2]),
        ("u", "u = (m_hat/denom)*sqrt(bc2)", d.u),
    ]


def _apply_rows(u: ParamUpdate[Any], cfg: AdamWConfig) -> list[Row]:
    a = u.applied
    if a.decay_term is None:
        return [("delta", "delta = lr_t*u", a.delta)]
    rows: list[Row] = [("decay_term", "lambda_t*theta_{t-1}", a.decay_term)]
    if cfg.decay_scaling is DecayScaling.LR:
        return [
            *rows,
            ("update", "u + lambda_t*theta", a.update or []),
            ("delta", "delta = lr_t*(u + lambda_t*theta)", a.delta),
        ]
    if cfg.decay_scaling is DecayScaling.SCHEDULE_MULTIPLIER:
        return [
            *rows,
            ("update", "alpha*u + lambda_t*theta", a.update or []),
            ("delta", "delta = eta*(alpha*u + lambda_t*theta)", a.delta),
        ]
    return [*rows, ("delta", "delta = lr_t*u + lambda_t*theta", a.delta)]


def rows_of(u: ParamUpdate[Any], cfg: AdamWConfig, A: Arithmetic[Any]) -> list[Row]:
    """Every intermediate of one parameter's update as ``(key, label, values)``, in the order the
    update forms them (the "shown" decay terms are differences computed for display only)."""
    g = u.gradient
    rows: list[Row] = [("theta_prev", "theta_{t-1}", u.theta_prev), ("g_in", "g (given)", g.given)]
    if g.negated is not None:
        rows.append(("g_max", "g <- -g (maximize)", g.negated))
    if g.l2_term is not None:
        rows += [
            ("l2_term", "lambda_t*theta (coupled L2)", g.l2_term),
            ("g_l2", "g <- g + lambda_t*theta", g.value),
        ]
    if u.decay_before is not None:
        rows += _decay_rows(u.decay_before, cfg, A, before=True)
    rows += _moment_rows(u, cfg) + _direction_rows(u, cfg) + _apply_rows(u, cfg)
    if u.decay_after is not None:
        rows += _decay_rows(u.decay_after, cfg, A, before=False)
    return [*rows, ("theta", "theta_t", u.theta)]


def trace_step(
    params: Params,
    grads: Grads,
    state: State[Any],
    config: AdamWConfig,
    arithmetic: Arithmetic[Any] = BINARY64_ARITHMETIC,
) -> StepTrace:
    """One step of the reference (:func:`~adamw_ref.step.updates` then
    :func:`~adamw_ref.step.assemble`, exactly as :func:`adamw_ref.step`), with its intermediates."""
    const, done = updates(params, grads, state, config, arithmetic)
    new_params, new_state = assemble(params, state, const, done, arithmetic)
    traces: dict[str, ParamTrace] = {}
    for name, u in done.items():
        if u is None:
            continue
        c = u.coefficients
        traces[name] = ParamTrace(
            name=name,
            k=c.k,
            lr_t=c.lr_t,
            lam_t=c.lam_t,
            s=c.s,
            bc1=c.bc1,
            bc2=c.bc2,
            rows=rows_of(u, config, arithmetic),
        )
    frozen = [name for name, u in done.items() if u is None]
    return StepTrace(
        t=const.t,
        count=const.count,
        eta=const.eta,
        omega=const.omega,
        params=traces,
        frozen=frozen,
        new_params=new_params,
        new_state=new_state,
    )


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


def render(trace: StepTrace, config: AdamWConfig, arithmetic: Arithmetic[Any], hex_too: bool = False) -> str:
    """A human-readable listing of one :class:`StepTrace`."""
    sc = (
        "pre_increment: c = t-1"
        if config.schedule_count is ScheduleCount.PRE_INCREMENT
        else "post_increment: c = t"
    )
    lines = [
        f"step t = {trace.t}   schedule count c = {trace.count} ({sc})",
        f"  eta(c) = {trace.eta!r}   omega(c) = {trace.omega!r}",
    ]
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

    out: dict[str, Any] = {
        "t": trace.t,
        "count": trace.count,
        "eta": trace.eta,
        "omega": trace.omega,
        "frozen": list(trace.frozen),
        "params": {},
    }
    for name, tr in trace.params.items():
        entry: dict[str, Any] = {
            "k": tr.k,
            "lr_t": enc(tr.lr_t),
            "lambda_t": enc(tr.lam_t),
            "s": enc(tr.s),
            "bc1": enc(tr.bc1),
            "bc2": enc(tr.bc2),
        }
        for key, _, vs in tr.rows:
            entry[key] = [enc(x) for x in vs]
        out["params"][name] = entry
    return out


def explain_steps(
    params: Mapping[str, Sequence[Any]],
    grads: Sequence[Grads],
    state: State[Any],
    config: AdamWConfig,
    arithmetic: Arithmetic[Any] = BINARY64_ARITHMETIC,
) -> list[StepTrace]:
    """Trace consecutive steps, each starting from the previous one's parameters and state."""
    current: Mapping[str, Sequence[Any]] = {k: tuple(arithmetic.vec(v)) for k, v in params.items()}
    out: list[StepTrace] = []
    for g in grads:
        tr = trace_step(current, g, state, config, arithmetic)
        out.append(tr)
        current, state = tr.new_params, tr.new_state
    return out
