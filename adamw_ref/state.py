"""The canonical optimizer state and its lossless JSON form.

Per parameter name: the first moment ``m``, the second moment ``v``, the AMSGrad maximum
``v_max`` (present only when ``amsgrad``) and the number of updates the parameter received
(``param_steps``); plus the optimizer-wide ``step`` count. Binary floats are written with
:meth:`float.hex` (bit-exact); high-precision decimals as their exact decimal strings.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

from adamw_ref.errors import InputError

N = TypeVar("N")

STATE_FORMAT = "adamw-ref/state"
STATE_VERSION = 1


@dataclass(frozen=True)
class State(Generic[N]):
    """Optimizer state. ``step`` counts optimizer steps taken (0 after :func:`~adamw_ref.init`)."""

    step: int
    param_steps: Mapping[str, int]
    m: Mapping[str, tuple[N, ...]]
    v: Mapping[str, tuple[N, ...]]
    v_max: Mapping[str, tuple[N, ...]] | None


_CANONICAL_NAN = 0x7FF8000000000000


def encode_number(x: object) -> str:
    """A float as ``float.hex`` (``inf``/``-inf``/``nan`` spelled out); a Decimal as its string.

    A NaN other than the canonical quiet NaN ``0x7ff8000000000000`` (e.g. the negative NaN that
    x86 produces for ``inf - inf``) is written ``nan:0x<16 hex digits>`` with its IEEE bits, so
    sign and payload survive the round trip.
    """
    if isinstance(x, Decimal):
        return "dec:" + str(x)
    if isinstance(x, float):
        if math.isnan(x):
            bits = struct.unpack("<Q", struct.pack("<d", x))[0]
            return "nan" if bits == _CANONICAL_NAN else f"nan:0x{bits:016x}"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x.hex()
    raise InputError("state value", x, "must be a float or Decimal")


def decode_number(s: object) -> float | Decimal:
    """Inverse of :func:`encode_number`."""
    if not isinstance(s, str):
        raise InputError("state value", s, "must be a string (float.hex or 'dec:...')")
    if s.startswith("dec:"):
        return Decimal(s[4:])
    if s in ("nan", "inf", "-inf"):
        return float(s)
    if s.startswith("nan:0x") and len(s) == 22:
        try:
            bits = int(s[6:], 16)
        except ValueError:
            raise InputError("state value", s, "is not nan:0x<16 hex digits>") from None
        x = struct.unpack("<d", struct.pack("<Q", bits))[0]
        if not math.isnan(x):
            raise InputError("state value", s, "does not encode a NaN")
        return float(x)
    try:
        return float.fromhex(s)
    except ValueError:
        raise InputError("state value", s, "is not a float.hex string") from None


def _enc_map(d: Mapping[str, tuple[Any, ...]] | None) -> dict[str, list[str]] | None:
    if d is None:
        return None
    return {k: [encode_number(x) for x in vs] for k, vs in d.items()}


def _dec_map(d: object, field: str) -> dict[str, tuple[Any, ...]]:
    if not isinstance(d, Mapping):
        raise InputError(field, d, "must be an object mapping names to lists")
    out: dict[str, tuple[Any, ...]] = {}
    for k, vs in d.items():
        if not isinstance(vs, list):
            raise InputError(f"{field}[{k!r}]", vs, "must be a list")
        out[str(k)] = tuple(decode_number(x) for x in vs)
    return out


def state_to_json(state: State[Any]) -> dict[str, Any]:
    """A JSON-ready dict that :func:`state_from_json` turns back into an identical state."""
    return {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "step": state.step,
        "param_steps": dict(state.param_steps),
        "m": _enc_map(state.m),
        "v": _enc_map(state.v),
        "v_max": _enc_map(state.v_max),
    }


def state_from_json(data: Mapping[str, Any]) -> State[Any]:
    """Parse the output of :func:`state_to_json`; raises InputError naming the bad field."""
    if not isinstance(data, Mapping) or data.get("format") != STATE_FORMAT:
        raise InputError(
            "format", getattr(data, "get", lambda _k: data)("format"), f"expected {STATE_FORMAT!r}"
        )
    if data.get("version") != STATE_VERSION:
        raise InputError("version", data.get("version"), f"expected {STATE_VERSION}")
    step = data.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise InputError("step", step, "must be an integer >= 0")
    ps = data.get("param_steps")
    if not isinstance(ps, Mapping) or not all(
        isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in ps.values()
    ):
        raise InputError("param_steps", ps, "must map names to integers >= 0")
    vmax = data.get("v_max")
    return State(
        step=step,
        param_steps={str(k): int(x) for k, x in ps.items()},
        m=_dec_map(data.get("m"), "m"),
        v=_dec_map(data.get("v"), "v"),
        v_max=None if vmax is None else _dec_map(vmax, "v_max"),
    )
