"""Error parity: what each framework does natively with each bad input.

``python -m conformance.reliability.parity --out DIR [--columns ...] [--rows ...]`` runs every row
of :mod:`conformance.reliability.cases` in every column of
:data:`conformance.reliability.native.COLUMNS` (each framework in its own worker process, Keras
once per backend) and writes ``parity.json`` and ``parity.md``.

Outcomes (:func:`classify`):

* ``clear``: refused with an error that names the problem (the message contains one of the
  row's keywords, e.g. ``lr`` for a bad learning rate, ``shape``/``size`` for a gradient's shape);
* ``obscure``: refused, but the message names neither the input nor the problem;
* ``SILENT``: accepted what the specification refuses, and the parameters stay finite (or keep
  the NaN they were given, or keep an integer/bool dtype);
* ``NaN@k``: accepted, and parameters that were finite are NaN or infinite after step ``k``;
* ``crash``: the process died (a signal or an abort inside the framework);
* ``ok``: accepted an input the specification accepts too; ``refuses valid``: refused one;
* ``n/a``: the framework has no such input (its notes say why); ``skipped``: not on this machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conformance.reliability.cases import BY_ID, HYPER, ROWS, STEPS, Row
from conformance.reliability.common import md_code, md_escape, run_jobs, versions, write_report
from conformance.reliability.native import COLUMNS

#: worker process groups: columns that may share a process (Keras: one backend per process)
GROUPS: tuple[tuple[tuple[str, ...], dict[str, str]], ...] = (
    (("torch-forloop", "torch-foreach", "torch-fused"), {}),
    (("optax",), {}),
    (("keras-tensorflow",), {"KERAS_BACKEND": "tensorflow"}),
    (("keras-jax",), {"KERAS_BACKEND": "jax"}),
    (("keras-torch",), {"KERAS_BACKEND": "torch"}),
    (("mlx",), {}),
    (("reference", "adapters"), {}),
)

REFUSED = ("clear", "obscure", "refuses valid")
ACCEPTED_NONSENSE = ("SILENT", "NaN")


def collect(columns: Sequence[str] | None = None, rows: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the table (or a part of it): ``{"cells": {row: {column: cell}}}`` with the raw results
    and their classification."""
    cols = list(columns or COLUMNS)
    unknown = [c for c in cols if c not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown columns {unknown}; known: {list(COLUMNS)}")
    row_ids = list(rows or [r.id for r in ROWS])
    bad = [r for r in row_ids if r not in BY_ID]
    if bad:
        raise ValueError(f"unknown rows {bad}; known: {[r.id for r in ROWS]}")
    cells: dict[str, dict[str, Any]] = {r: {} for r in row_ids}
    for group, env in GROUPS:
        mine = [c for c in group if c in cols]
        if not mine:
            continue
        jobs = [{"kind": "parity", "column": c, "row": r} for c in mine for r in row_ids]
        for job, res in zip(jobs, run_jobs(jobs, env=env, timeout=900), strict=True):
            code, detail = classify(BY_ID[job["row"]], res)
            cells[job["row"]][job["column"]] = {**res, "outcome": code, "detail": detail}
    return {"columns": cols, "rows": row_ids, "cells": cells}


def _dtype_kept(cell: Mapping[str, Any]) -> str:
    """``'int32'``/``'bool'`` when an integer or bool parameter stayed so, ``'bool -> float32'``
    when the framework changed a parameter's dtype; else ``''``."""
    init, final = cell.get("initial", {}), cell["steps"][-1] if cell.get("steps") else {}
    for n, f in final.items():
        i = init.get(n, {})
        if i.get("dtype") and i["dtype"] != f["dtype"]:
            return f"{i['dtype']} -> {f['dtype']}"
        if str(f["dtype"]).startswith(("int", "uint", "bool")):
            return str(f["dtype"])
    return ""


def classify(row: Row, cell: Mapping[str, Any]) -> tuple[str, str]:
    """The outcome code of one cell and a short detail (see the module docstring)."""
    if "crash" in cell:
        return "crash", f"{cell['crash']}: {cell.get('stderr', '')[-200:]}"
    if "error" in cell and "raised" not in cell:  # the worker's own failure
        return "crash", f"{cell['error']}: {cell.get('message', '')}"
    if cell.get("not_applicable"):
        return "n/a", str(cell["not_applicable"])
    if cell.get("skipped"):
        return "skipped", str(cell["skipped"])
    if cell.get("raised"):
        msg = f"{cell['error']}: {cell['message']}"
        if not row.spec_refuses:
            return "refuses valid", f"{cell['stage']}: {msg}"
        text = msg.lower()
        clear = any(k.lower() in text for k in row.keywords)
        return ("clear" if clear else "obscure"), f"{cell['stage']}: {msg}"
    kept = _dtype_kept(cell)
    nan_at = cell.get("nan_from_step")
    warned = "; warns: " + " / ".join(cell["warnings"]) if cell.get("warnings") else ""
    if row.spec_refuses:
        if nan_at:
            return "NaN", f"accepted; NaN/inf from step {nan_at}{warned}"
        initial_bad = sum(x["nonfinite"] for x in cell.get("initial", {}).values())
        what = (
            f"dtype {kept}"
            if kept
            else (
                "the non-finite value stays in its element"
                if initial_bad
                else ("parameters stay finite" if cell.get("moved") else "nothing moves")
            )
        )
        return "SILENT", f"accepted: {what}{warned}"
    if kept and not kept.endswith(("float16", "float32", "float64")):
        return "SILENT", f"accepted, dtype {kept}: updates are cast to it{warned}"
    if kept:
        warned = f"; dtype {kept}{warned}"
    return "ok", ("NaN/inf from step " + str(nan_at) if nan_at else "accepted") + warned


def _label(cell: Mapping[str, Any]) -> str:
    code = str(cell["outcome"])
    if code == "NaN":
        return f"NaN@{cell.get('nan_from_step')}"
    if code == "ok" and cell.get("nan_from_step"):
        return f"ok, NaN@{cell['nan_from_step']}"
    return code


def silent_findings(doc: Mapping[str, Any]) -> list[str]:
    """One line per row where some framework accepts what the specification refuses."""
    out = []
    for rid in doc["rows"]:
        row = BY_ID[rid]
        if not row.spec_refuses:
            continue
        cells = doc["cells"][rid]
        bad = [
            f"{c} ({_label(cells[c])})"
            for c in doc["columns"]
            if c not in ("reference", "adapters") and cells[c]["outcome"] in ACCEPTED_NONSENSE
        ]
        if bad:
            out.append(f"{row.title}: accepted by {', '.join(bad)}")
    return out


def own_findings(doc: Mapping[str, Any]) -> list[str]:
    """Where our own columns (the reference, the checked adapters) miss the specification."""
    out = []
    for rid in doc["rows"]:
        row = BY_ID[rid]
        for c in ("reference", "adapters"):
            cell = doc["cells"][rid].get(c)
            if cell is None:
                continue
            if row.spec_refuses:
                bad = cell["outcome"] in (*ACCEPTED_NONSENSE, "obscure")
            else:
                bad = cell["outcome"] in REFUSED
            if bad:
                out.append(f"{c}, {row.title}: {_label(cell)} ({cell['detail']})")
    return out


def to_markdown(doc: Mapping[str, Any]) -> str:
    cols = list(doc["columns"])
    lines = [
        "# Error parity: what each framework does natively with bad input",
        "",
        "Generated by `python -m conformance.reliability.parity --out docs/reports/reliability` "
        "(raw results in `parity.json`). Each framework is called directly, as a user would "
        "(not through the adapters): "
        + ", ".join(f"`{k}` {v}" for k, v in sorted(doc.get("versions", {}).items()))
        + ".",
        "",
        f"Every row starts from one valid problem: parameters `w` (2, 3) and `b` (3,) in float32, "
        f"{STEPS} steps of fixed gradients with a zero element in each, and "
        + ", ".join(f"{k}={v:g}" for k, v in HYPER.items())
        + "; the row changes one thing. `spec` is what the specification says "
        "(docs/spec.md); the `reference` column is `adamw_ref.init`/`step` itself and the "
        '`adapters` column `adapters.load_adapter("torch")` (our checked protocol).',
        "",
        "Outcomes: **clear** refused, the message names the problem; **obscure** refused, it "
        "does not; **SILENT** accepted what the spec refuses (parameters finite, or keeping "
        "the NaN/inf or integer dtype they were given); **NaN@k** accepted, parameters became "
        "NaN/inf at step k; **crash** the process died; **ok** accepted a valid input; "
        "**refuses valid** refused a valid one; **n/a** no such input in this framework "
        "(see the notes); **skipped** not run in that column (no GPU here, or not written).",
        "",
        "| row | spec | " + " | ".join(f"`{c}`" for c in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for rid in doc["rows"]:
        row = BY_ID[rid]
        spec = "refuses" if row.spec_refuses else "accepts"
        cells = doc["cells"][rid]
        lines.append(
            f"| {md_escape(row.title)} | {spec} | "
            + " | ".join(_label(cells[c]) if c in cells else "" for c in cols)
            + " |"
        )
    findings = silent_findings(doc)
    lines += ["", "## Where a framework silently accepts nonsense", ""]
    lines += [f"* {f}" for f in findings] or ["* none"]
    own = own_findings(doc)
    lines += ["", "## Where our own columns miss the specification", ""]
    lines += [f"* {md_code(f)}" for f in own] or ["* none"]
    lines += ["", "## What each framework said", ""]
    for rid in doc["rows"]:
        row = BY_ID[rid]
        lines.append(
            f"**{md_escape(row.title)}** (`{rid}`)" + (f": {row.spec_note}" if row.spec_note else "")
        )
        lines.append("")
        groups: dict[tuple[str, str], list[str]] = {}
        for c in cols:
            cell = doc["cells"][rid].get(c)
            if cell is not None:
                groups.setdefault((_label(cell), str(cell["detail"])), []).append(c)
        for (label, detail), who in groups.items():
            lines.append(f"* {', '.join(f'`{c}`' for c in who)}: **{label}** {md_code(detail)}")
        lines.append("")
    lines += [
        "## How each row is expressed natively",
        "",
        "See `conformance/reliability/native.py`: a missing gradient is `p.grad = None` in torch "
        "and a `None` in Keras' gradient list (both frameworks' frozen parameter, so n/a), a "
        "dict without the key in Optax and MLX (MLX's frozen parameter: n/a); an extra gradient "
        "is an extra key (Optax, MLX) or one more gradient than variables (Keras); the decay "
        "group is a filtered torch param group, an Optax `mask` dict, "
        "`exclude_from_weight_decay(var_names=[...])` in Keras and a `MultiOptimizer` filter in "
        "MLX. The reference's API takes flat sequences, so it cannot see a gradient's shape "
        "(the transposed gradient has the right length): the adapters check shapes.",
        "",
        _device_note(doc),
    ]
    return "\n".join(lines) + "\n"


def _device_note(doc: Mapping[str, Any]) -> str:
    """Where the parameters-on-GPU, gradients-on-CPU row ran (only on a machine with a GPU)."""
    cells = doc["cells"].get("device_mismatch", {})
    ran = [c for c, cell in cells.items() if _label(cell) != "skipped"]
    if not cells:
        return "Parameters and gradients on different devices: not in this run's rows."
    if not ran:
        return "Parameters and gradients on different devices: skipped, this machine has no GPU."
    return (
        "Parameters and gradients on different devices: run on this machine's GPU in "
        + ", ".join(f"`{c}`" for c in ran)
        + "; the other columns do not express the row."
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance.reliability.parity", description=__doc__)
    p.add_argument("--out", type=Path, required=True, help="directory for parity.json and parity.md")
    p.add_argument("--columns", nargs="*", help=f"a subset of {list(COLUMNS)}")
    p.add_argument("--rows", nargs="*", help="a subset of the row ids")
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    doc = collect(a.columns, a.rows)
    doc = {
        "report": "parity",
        "versions": versions(),
        **doc,
        "silent": silent_findings(doc),
        "own": own_findings(doc),
    }
    js, md = write_report(a.out, "parity", doc, to_markdown(doc))
    print(f"wrote {js} and {md}")
    for line in doc["silent"]:
        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
