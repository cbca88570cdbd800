r"""Language-agnostic test vectors: generation, canonical JSON, and lint (standard library only).

In the spirit of Wycheproof: one JSON file per named profile under ``adamw_ref/vectors/data/``, with a
header (algorithm, spec version, schema, ``numberOfTests``, prose), a ``notes`` dictionary of the
flags that say *why* a vector exists, and ``testGroups`` that fix a profile, a full configuration
(:meth:`~adamw_ref.AdamWConfig.to_json`) and a dtype. Each test gives the initial parameters, the
gradient of every step (``null`` freezes a parameter) and the expected parameters, ``m``, ``v``
(and ``vMax`` with AMSGrad) after the listed steps.

Every float is a :meth:`float.hex` string (``"nan"``, ``"inf"``, ``"-inf"`` spelled out), so values
are bit-exact; ``dtype`` says which format the values belong to. Expected values come from the
reference: :data:`~adamw_ref.BINARY64_ARITHMETIC` for ``float64`` groups, the exact binary32
emulation for ``float32`` groups. Configuration numbers are JSON numbers written with Python's
shortest round-trip ``repr``, which every correctly rounding JSON parser reads back exactly.

Generation is deterministic: the inputs come from seeded :class:`random.Random` streams and the
output is canonical JSON (sorted keys, a fixed line-breaking rule, no timestamps), so regenerating
changes no byte. ``adamw-ref vectors generate|lint|verify``; ``verify`` runs an implementation, so
it belongs to the conformance suite, which registers it (``adamw-conformance vectors verify``).
"""

from adamw_ref.vectors.encoding import FLOAT_PATTERN, canonical_json, decode_float, encode_float
from adamw_ref.vectors.generate import (
    FILE_PATTERN,
    GENERATOR_NAME,
    GENERATOR_VERSION,
    NOTES,
    SCHEMA_FILE,
    build_file,
    generate,
    group_specs,
)
from adamw_ref.vectors.lint import default_vectors_dir, lint, lint_file, schema_path

__all__ = [
    "FILE_PATTERN",
    "FLOAT_PATTERN",
    "GENERATOR_NAME",
    "GENERATOR_VERSION",
    "NOTES",
    "SCHEMA_FILE",
    "build_file",
    "canonical_json",
    "decode_float",
    "default_vectors_dir",
    "encode_float",
    "generate",
    "group_specs",
    "lint",
    "lint_file",
    "schema_path",
]
