r"""The vector file format: floats as ``float.hex`` strings and canonical JSON text.

Every float is a :meth:`float.hex` string (``"nan"``, ``"inf"``, ``"-inf"`` spelled out), so values
are bit-exact. Canonical JSON (sorted keys in a fixed order, a fixed line-breaking rule, ASCII, no
timestamps) makes regeneration change no byte.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

#: Containers whose compact rendering fits in this many columns are written on one line.
LINE_WIDTH = 120

#: Keys written first, in this order (then the rest alphabetically), so that a reader meets the
#: header before the groups and a test's id before its data.
KEY_ORDER = (
    "algorithm",
    "profile",
    "profileTitle",
    "specVersion",
    "schema",
    "generatorVersion",
    "numberOfTests",
    "header",
    "notes",
    "type",
    "dtype",
    "arithmetic",
    "generator",
    "reference",
    "config",
    "tcId",
    "comment",
    "flags",
    "step",
    "paramSteps",
    "params",
    "grads",
    "m",
    "v",
    "vMax",
    "expected",
    "tests",
    "testGroups",
)
_RANK = {k: i for i, k in enumerate(KEY_ORDER)}


def _keys(d: Mapping[str, Any]) -> list[str]:
    return sorted(d, key=lambda k: (_RANK.get(k, len(_RANK)), k))


def _ordered(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _ordered(obj[k]) for k in _keys(obj)}
    if isinstance(obj, list):
        return [_ordered(x) for x in obj]
    return obj


def _compact(obj: Any) -> str:
    return json.dumps(_ordered(obj), separators=(", ", ": "), ensure_ascii=True, allow_nan=False)


def _render(obj: Any, indent: int) -> str:
    flat = _compact(obj)
    if not isinstance(obj, (dict, list)) or not obj or indent + len(flat) <= LINE_WIDTH:
        return flat
    pad = " " * (indent + 2)
    if isinstance(obj, dict):
        items = [
            f"{pad}{json.dumps(k, ensure_ascii=True)}: {_render(obj[k], indent + 2)}" for k in _keys(obj)
        ]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return "[\n" + ",\n".join(pad + _render(x, indent + 2) for x in obj) + "\n" + " " * indent + "]"


def canonical_json(obj: Any) -> str:
    """The canonical text of ``obj``: keys in :data:`KEY_ORDER` then sorted, compact containers
    that fit in :data:`LINE_WIDTH` columns, two-space indentation otherwise, ASCII only, final
    newline."""
    return _render(obj, 0) + "\n"


#: A vector float: float.hex, or nan/inf/-inf. NaN sign and payload are not recorded: IEEE-754
#: leaves them unspecified (x86 makes inf-inf a negative NaN, ARM a positive one).
FLOAT_PATTERN = re.compile(r"^(nan|inf|-inf|-?0x[01]\.[0-9a-f]+p[+-][0-9]+)$")


def encode_float(x: float) -> str:
    """``x`` as a vector string (see :data:`FLOAT_PATTERN`)."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return float(x).hex()


def decode_float(s: str) -> float:
    """Inverse of :func:`encode_float` (exact); raises ValueError on anything else."""
    if not isinstance(s, str) or not FLOAT_PATTERN.match(s):
        raise ValueError(f"vector float: {s!r} is not float.hex, 'nan', 'inf' or '-inf'")
    return float(s) if s in ("nan", "inf", "-inf") else float.fromhex(s)
