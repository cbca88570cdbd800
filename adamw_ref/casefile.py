r"""JSON case files in, JSON trajectories out: the reference for non-Python tools.

A case (format ``adamw-ref/case``, version 1; see ``docs/casefile.md``) names a profile, optional
hyperparameter/knob overrides (applied with :meth:`AdamWConfig.from_json` on the profile's
config), optional schedules, an arithmetic, the initial parameters and a gradient sequence.
:func:`run_case` returns the trajectory (format ``adamw-ref/trajectory``): for every step the
parameters, ``m``, ``v`` and ``v_max`` as exact strings (``float.hex`` / ``dec:``) plus ``repr``
renderings for humans. Every error names the offending field, e.g. ``grads[3].w[1]``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from adamw_ref.arithmetic import Arithmetic, HighPrecision, arithmetic_for
from adamw_ref.config import AdamWConfig
from adamw_ref.errors import ConfigError, InputError
from adamw_ref.profiles import get_profile
from adamw_ref.schedules import schedule_from_json
from adamw_ref.state import State, encode_number, state_from_json, state_to_json
from adamw_ref.step import Trajectory, init, step

CASE_FORMAT = "adamw-ref/case"
CASE_VERSION = 1
TRAJECTORY_FORMAT = "adamw-ref/trajectory"
TRAJECTORY_VERSION = 1

_KEYS = {
    "format",
    "version",
    "name",
    "description",
    "profile",
    "config",
    "schedules",
    "arithmetic",
    "params",
    "grads",
    "state",
}
_ARITH_ALIASES = {
    "binary64": "float64",
    "binary32": "float32",
    "binary16": "float16",
    "double": "float64",
    "float": "float32",
    "half": "float16",
}


@dataclass(frozen=True)
class Case:
    """A parsed case file."""

    name: str
    profile: str
    config: AdamWConfig
    arithmetic: Arithmetic[Any]
    params: dict[str, list[Any]]
    grads: list[dict[str, list[Any] | None]]
    state: State[Any] | None = None


def parse_arithmetic(spec: object, field: str = "arithmetic") -> Arithmetic[Any]:
    """``float64`` | ``float32`` | ``float16`` | ``bfloat16`` | ``decimal:DIGITS`` (aliases
    ``binary64``, ``binary32``, ``binary16``)."""
    if not isinstance(spec, str):
        raise ConfigError(field, spec, "must be a string such as 'float32' or 'decimal:60'")
    if spec.startswith("decimal:"):
        digits = spec.split(":", 1)[1]
        if not digits.isdigit():
            raise ConfigError(field, spec, "expected decimal:DIGITS with an integer DIGITS in 20..1000")
        try:
            return HighPrecision(int(digits))
        except ConfigError as exc:
            raise ConfigError(field, spec, exc.reason) from None
    try:
        return arithmetic_for(_ARITH_ALIASES.get(spec, spec))
    except ConfigError:
        raise ConfigError(
            field, spec, "unknown; expected float64, float32, float16, bfloat16 or decimal:DIGITS"
        ) from None


def parse_number(x: object, field: str) -> float | Decimal:
    """A JSON number, or a string: ``float.hex`` (``0x1.8p-3``), ``inf``/``-inf``/``nan``, a
    decimal literal (``0.1``, rounded to binary64 like a JSON number), or ``dec:...`` (exact
    decimal, for ``decimal:DIGITS`` arithmetic)."""
    if isinstance(x, bool) or not isinstance(x, (int, float, str)):
        raise InputError(field, x, "must be a number or a string (float.hex, 'inf', 'nan', 'dec:')")
    if isinstance(x, (int, float)):
        try:
            return float(x)
        except OverflowError:
            raise InputError(field, f"{str(x)[:20]}...", "overflows binary64 (|x| > 1.8e308)") from None
    s = x.strip()
    if s.startswith("dec:"):
        try:
            return Decimal(s[4:])
        except InvalidOperation:
            raise InputError(field, x, "is not a decimal literal after 'dec:'") from None
    if s.lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
        return float(s)
    try:
        value = float.fromhex(s) if "0x" in s.lower() else float(s)
    except (ValueError, OverflowError):
        raise InputError(field, x, "is not a number, a float.hex string, 'inf' or 'nan'") from None
    if not math.isfinite(value):
        raise InputError(field, x, "overflows binary64 (write 'inf' for an infinity)")
    return value


def _vector(values: object, field: str) -> list[Any]:
    if not isinstance(values, list):
        raise InputError(field, values, "must be a list of numbers")
    return [parse_number(x, f"{field}[{i}]") for i, x in enumerate(values)]


def _config(data: Mapping[str, Any], base: AdamWConfig) -> AdamWConfig:
    overrides = data.get("config", {})
    if not isinstance(overrides, Mapping):
        raise ConfigError("config", overrides, "must be an object of hyperparameter/knob overrides")
    try:
        cfg = AdamWConfig.from_json(overrides, base=base)
    except ConfigError as exc:
        raise ConfigError(f"config.{exc.field}", exc.value, exc.reason) from None
    schedules = data.get("schedules")
    if schedules is None:
        return cfg
    if not isinstance(schedules, Mapping):
        raise ConfigError("schedules", schedules, "must be an object {lr: ..., weight_decay: ...}")
    changes: dict[str, Any] = {}
    for key, value in schedules.items():
        target = {"lr": "lr_schedule", "weight_decay": "wd_schedule"}.get(key)
        if target is None:
            raise ConfigError(f"schedules.{key}", value, "unknown; expected 'lr' or 'weight_decay'")
        if target in overrides:
            raise ConfigError(f"schedules.{key}", value, f"also given as config.{target}")
        changes[target] = schedule_from_json(value, f"schedules.{key}")
    return cfg.replace(**changes)


def parse_case(data: object) -> Case:
    """Validate and parse a case dict; errors name the field (``params.w[2]``, ``grads[3]``)."""
    if not isinstance(data, Mapping):
        raise InputError("case", type(data).__name__, "must be a JSON object")
    if data.get("format") != CASE_FORMAT:
        raise InputError("format", data.get("format"), f"expected {CASE_FORMAT!r}")
    if data.get("version") != CASE_VERSION:
        raise InputError("version", data.get("version"), f"expected {CASE_VERSION}")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise InputError(unknown[0], data[unknown[0]], f"unknown field; expected {sorted(_KEYS)}")
    profile_name = data.get("profile", "torch")
    if not isinstance(profile_name, str):
        raise ConfigError("profile", profile_name, "must be a profile name")
    profile = get_profile(profile_name)
    cfg = _config(data, profile.config)
    arithmetic = parse_arithmetic(data.get("arithmetic", "float64"))

    raw_params = data.get("params")
    if not isinstance(raw_params, Mapping) or not raw_params:
        raise InputError("params", raw_params, "must be a non-empty object name -> list")
    params = {str(k): _vector(v, f"params.{k}") for k, v in raw_params.items()}
    for name, values in params.items():
        if not values:
            raise InputError(f"params.{name}", values, "must not be empty")
        for i, x in enumerate(values):
            if not math.isfinite(x):
                raise InputError(f"params.{name}[{i}]", x, "initial parameters must be finite")

    raw_grads = data.get("grads")
    if not isinstance(raw_grads, list):
        raise InputError("grads", raw_grads, "must be a list of {name: list | null} objects")
    grads: list[dict[str, list[Any] | None]] = []
    for t, entry in enumerate(raw_grads):
        where = f"grads[{t}]"
        if not isinstance(entry, Mapping):
            raise InputError(where, entry, "must be an object name -> list | null")
        missing = [n for n in params if n not in entry]
        extra = [n for n in entry if n not in params]
        if missing:
            raise InputError(where, sorted(entry), f"missing {missing} (use null to freeze)")
        if extra:
            raise InputError(f"{where}.{extra[0]}", entry[extra[0]], "not a parameter name")
        row: dict[str, list[Any] | None] = {}
        for name, g in entry.items():
            if g is None:
                row[name] = None
                continue
            vec = _vector(g, f"{where}.{name}")
            if len(vec) != len(params[name]):
                raise InputError(
                    f"{where}.{name}",
                    f"length {len(vec)}",
                    f"parameter {name!r} has length {len(params[name])}",
                )
            row[name] = vec
        grads.append(row)

    state: State[Any] | None = None
    if data.get("state") is not None:
        try:
            state = state_from_json(data["state"])
        except InputError as exc:
            raise InputError(f"state.{exc.field}", exc.value, exc.reason) from None
    name = data.get("name", "")
    return Case(
        name=str(name),
        profile=profile_name,
        config=cfg,
        arithmetic=arithmetic,
        params=params,
        grads=grads,
        state=state,
    )


def run_parsed(case: Case) -> Trajectory:
    """Run the case's gradients from its initial point (and optional initial state)."""
    A = case.arithmetic
    state: State[Any] = case.state if case.state is not None else init(case.params, case.config, A)
    current = {k: tuple(A.vec(v)) for k, v in case.params.items()}
    out_p, out_s = [current], [state]
    for t, g in enumerate(case.grads):
        try:
            current, state = step(current, g, state, case.config, A)
        except InputError as exc:
            raise InputError(f"grads[{t}]: {exc.field}", exc.value, exc.reason) from None
        out_p.append(current)
        out_s.append(state)
    return Trajectory(params=out_p, states=out_s)


def _enc(d: Mapping[str, tuple[Any, ...]] | None) -> dict[str, list[str]] | None:
    return None if d is None else {k: [encode_number(x) for x in vs] for k, vs in d.items()}


def _human(d: Mapping[str, tuple[Any, ...]] | None) -> dict[str, list[str]] | None:
    def one(x: Any) -> str:
        return str(x) if isinstance(x, Decimal) else repr(float(x))

    return None if d is None else {k: [one(x) for x in vs] for k, vs in d.items()}


def trajectory_to_json(case: Case, traj: Trajectory, decimal: bool = True) -> dict[str, Any]:
    """The trajectory document: one entry per step, index 0 the initial point."""
    import adamw_ref

    steps: list[dict[str, Any]] = []
    for params, st in zip(traj.params, traj.states):
        entry: dict[str, Any] = {
            "step": st.step,
            "param_steps": dict(st.param_steps),
            "params": _enc(params),
            "m": _enc(st.m),
            "v": _enc(st.v),
            "v_max": _enc(st.v_max),
        }
        if decimal:
            entry["decimal"] = {
                "params": _human(params),
                "m": _human(st.m),
                "v": _human(st.v),
                "v_max": _human(st.v_max),
            }
        steps.append(entry)
    return {
        "format": TRAJECTORY_FORMAT,
        "version": TRAJECTORY_VERSION,
        "case": case.name,
        "profile": case.profile,
        "arithmetic": case.arithmetic.name,
        "adamw_ref_version": adamw_ref.__version__,
        "spec_version": adamw_ref.SPEC_VERSION,
        "config": case.config.to_json(),
        "steps": steps,
        "final_state": state_to_json(traj.states[-1]),
    }


def run_case(data: object, decimal: bool = True) -> dict[str, Any]:
    """Parse a case dict, run it, and return the trajectory document."""
    case = parse_case(data)
    return trajectory_to_json(case, run_parsed(case), decimal=decimal)


#: Limits on a JSON input (resource bombs are refused, not run): bytes and nesting depth.
MAX_JSON_BYTES = 64 * 2**20
MAX_JSON_DEPTH = 64


def _depth(text: str) -> int:
    """The deepest bracket nesting of JSON ``text`` (brackets inside strings are skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def load_json(path: str | Path, field: str = "case file") -> Any:
    """Read a JSON file; an unreadable, non-UTF-8, oversized (> :data:`MAX_JSON_BYTES`),
    too deeply nested (> :data:`MAX_JSON_DEPTH`) or malformed file raises InputError naming the
    path. A number too large for binary64 (``1e400``) is refused, not read as infinity."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_JSON_BYTES:
            raise InputError(field, str(path), f"is larger than {MAX_JSON_BYTES // 2**20} MiB")
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(field, str(path), f"cannot be read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            field, str(path), f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None
    if _depth(text) > MAX_JSON_DEPTH:
        raise InputError(field, str(path), f"nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise InputError(field, str(path), f"is not valid JSON: {exc}") from None
    except ValueError as exc:  # _no_constant / _finite_float
        raise InputError(field, str(path), str(exc)) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"contains {name}, which is not JSON (write 'nan'/'inf' as strings)")


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(f"the number {text[:40]} overflows binary64")
    return x


def trajectory_from_json(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Decode a trajectory document's steps back to numbers (bit-exact): a list of
    ``{"step", "params", "m", "v", "v_max"}`` with floats/Decimals."""
    from adamw_ref.state import decode_number

    if doc.get("format") != TRAJECTORY_FORMAT:
        raise InputError("format", doc.get("format"), f"expected {TRAJECTORY_FORMAT!r}")
    out = []
    for entry in doc["steps"]:
        dec: dict[str, Any] = {"step": entry["step"]}
        for key in ("params", "m", "v", "v_max"):
            d = entry[key]
            dec[key] = None if d is None else {k: tuple(decode_number(x) for x in vs) for k, vs in d.items()}
        out.append(dec)
    return out
