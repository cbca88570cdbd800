"""Linting vector files: structure, ids, counts, flags, steps and canonical bytes (stdlib only).

The structural check covers the essentials of ``vectors.schema.json``; a caller with a JSON Schema
validator passes it as ``validate`` (``adamw-conformance vectors lint`` does, with ``jsonschema``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adamw_ref.vectors.encoding import FLOAT_PATTERN, canonical_json
from adamw_ref.vectors.generate import SCHEMA_FILE

#: A full validator: the document -> its problems (empty when valid).
Validator = Callable[[Any], list[str]]


def default_vectors_dir() -> Path:
    """The committed vector files (``adamw_ref/vectors/data``)."""
    return Path(__file__).resolve().parent / "data"


def schema_path() -> Path:
    """The JSON Schema of a vector file (``adamw_ref/vectors/vectors.schema.json``)."""
    return Path(__file__).resolve().parent / SCHEMA_FILE


def _is_hex(x: object) -> bool:
    return isinstance(x, str) and FLOAT_PATTERN.match(x) is not None


def structural_errors(doc: Any) -> list[str]:
    """A stdlib check of the essentials of the schema (the default ``validate``)."""
    errs: list[str] = []
    if not isinstance(doc, dict):
        return ["document: must be an object"]
    for key in ("algorithm", "specVersion", "schema", "numberOfTests", "header", "notes", "testGroups"):
        if key not in doc:
            errs.append(f"document: missing {key!r}")
    for gi, group in enumerate(doc.get("testGroups", [])):
        where = f"testGroups[{gi}]"
        for key in ("type", "profile", "dtype", "config", "generator", "tests"):
            if key not in group:
                errs.append(f"{where}: missing {key!r}")
        if group.get("dtype") not in ("float64", "float32"):
            errs.append(f"{where}.dtype: {group.get('dtype')!r} not float64/float32")
        for ti, test in enumerate(group.get("tests", [])):
            tw = f"{where}.tests[{ti}]"
            for key in ("tcId", "comment", "flags", "params", "grads", "expected"):
                if key not in test:
                    errs.append(f"{tw}: missing {key!r}")
            values: list[object] = []
            for vs in test.get("params", {}).values():
                values += vs
            for g in test.get("grads", []):
                for vs in g.values():
                    values += vs or []
            for e in test.get("expected", []):
                for field in ("params", "m", "v", "vMax"):
                    for vs in e.get(field, {}).values():
                        values += vs
            bad = [v for v in values if not _is_hex(v)]
            if bad:
                errs.append(f"{tw}: non-hex float values {bad[:3]}")
    return errs


def lint_file(path: Path, validate: Validator | None = None) -> list[str]:
    """Problems in one vector file (empty list = clean): ``validate`` (default
    :func:`structural_errors`), unique tcIds, ``numberOfTests``, notes for every flag, step
    indices, and canonical formatting (re-serialise and compare bytes)."""
    name = path.name
    raw = path.read_bytes()
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        return [f"{name}: not JSON: {exc}"]
    errs = [f"{name}: {e}" for e in (validate or structural_errors)(doc)]
    if errs:
        return errs
    ids: list[int] = [t["tcId"] for g in doc["testGroups"] for t in g["tests"]]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        errs.append(f"{name}: duplicate tcIds {dupes}")
    if doc["numberOfTests"] != len(ids):
        errs.append(f"{name}: numberOfTests={doc['numberOfTests']} but {len(ids)} tests")
    for g in doc["testGroups"]:
        for t in g["tests"]:
            missing = [f for f in t["flags"] if f not in doc["notes"]]
            if missing:
                errs.append(f"{name}: tcId {t['tcId']}: flags {missing} not in notes")
            steps = [e["step"] for e in t["expected"]]
            if steps != sorted(set(steps)) or (steps and steps[-1] > len(t["grads"])):
                errs.append(f"{name}: tcId {t['tcId']}: bad expected steps {steps}")
    if raw.decode("ascii", "replace") != canonical_json(doc):
        errs.append(f"{name}: not canonical (regenerate or re-serialise with canonical_json)")
    return errs


def lint(directory: Path, validate: Validator | None = None) -> list[str]:
    """Lint every ``*.json`` file in ``directory`` (see :func:`lint_file`)."""
    files = sorted(directory.glob("*.json"))
    if not files:
        return [f"{directory}: no vector files"]
    errs: list[str] = []
    for path in files:
        errs += lint_file(path, validate)
    return errs
