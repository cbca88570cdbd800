"""State fidelity: save after ``N`` steps, load in a fresh process, continue ``M`` steps.

``python -m conformance.reliability.fidelity --out DIR`` writes ``state_fidelity.json`` and
``state_fidelity.md``. For every adapter and implementation, dtype and config variant
(:func:`conformance.reliability.fidelity_jobs.config_for`), one worker process primes the run
``N`` steps, saves the native state (``run.save``) and continues ``M`` steps; another worker
process, which never saw that run, creates a fresh optimizer with other initial parameters,
loads the file (``run.load``) and steps the same ``M`` gradients. Bit patterns are compared: the
state right after the load against the state at the save (parameters, ``m``, ``v``, ``v_max``,
the step count and the per-parameter counts where kept), then the parameters after every later
step and the final state against the uninterrupted run.

``--load-device cuda`` (on a machine with a GPU) loads the CPU-saved file on the GPU instead:
the state right after the load must still equal the saved state bit for bit; the continuation
runs in the GPU's arithmetic, so it is reported as its largest distance, in ulps of the dtype,
from the CPU continuation (``state_fidelity_cpu_to_cuda.json``/``.md``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from conformance.reliability.common import md_code, run_jobs, versions, write_report
from conformance.reliability.fidelity_jobs import first_difference, max_ulps

N, M = 4, 4
COMMAND = "python -m conformance.reliability.fidelity"
VARIANTS = ("plain", "features")
DTYPES = ("float32", "bfloat16", "float64")  # float64 last: it switches JAX to x64 for the process

#: label -> (adapter spec, implementation, worker environment)
TARGETS: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "torch forloop": ("torch", "forloop", {}),
    "torch foreach": ("torch", "foreach", {}),
    "torch fused": ("torch", "fused", {}),
    "torch:torch.optim.AdamW forloop": ("torch:torch.optim.AdamW", "forloop", {}),
    "torch:torch.optim.AdamW fused": ("torch:torch.optim.AdamW", "fused", {}),
    "optax jit": ("optax", "jit", {}),
    "optax nojit": ("optax", "nojit", {}),
    "keras tensorflow": ("keras-tensorflow", None, {"KERAS_BACKEND": "tensorflow"}),
    "keras jax": ("keras-jax", None, {"KERAS_BACKEND": "jax"}),
    "keras torch": ("keras-torch", None, {"KERAS_BACKEND": "torch"}),
    "mlx": ("mlx", None, {}),
    "reference": ("reference", None, {}),
}


def _dtypes(adapter: str) -> list[str]:
    from adapters import load_adapter

    have = set(load_adapter(adapter).info.dtypes)
    return [d for d in DTYPES if d in have]


def _devices(adapter: str) -> set[str]:
    from adapters import load_adapter

    return set(load_adapter(adapter).info.devices)


def collect(
    targets: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    load_device: str = "cpu",
) -> dict[str, Any]:
    labels = list(TARGETS if targets is None else targets)
    if load_device != "cpu":
        labels = [t for t in labels if load_device in _devices(TARGETS[t][0])]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="adamw-fidelity-") as tmp:
        for label in labels:
            adapter, impl, env = TARGETS[label]
            dts = [d for d in _dtypes(adapter) if dtypes is None or d in dtypes]
            cases = [(d, v) for d in dts for v in (variants or VARIANTS)]
            jobs = [
                {
                    "kind": "prime",
                    "adapter": adapter,
                    "implementation": impl,
                    "dtype": d,
                    "variant": v,
                    "n": N,
                    "m": M,
                    "path": str(Path(tmp) / f"{label.replace(' ', '_').replace(':', '_')}-{d}-{v}.state"),
                }
                for d, v in cases
            ]
            primed = run_jobs(jobs, env=env, timeout=900)
            resume_jobs = []
            for job, res in zip(jobs, primed, strict=True):
                if "config" in res:
                    resume_jobs.append(
                        {
                            **job,
                            "kind": "resume",
                            "config": res["config"],
                            "grads": res["grads"],
                            "device": load_device,
                        }
                    )
            resumed = iter(run_jobs(resume_jobs, env=env, timeout=900)) if resume_jobs else iter(())
            for job, res in zip(jobs, primed, strict=True):
                back = next(resumed) if "config" in res else None
                rows.append(compare(label, job, res, back, load_device))
    return {"n": N, "m": M, "load_device": load_device, "rows": rows}


def compare(
    label: str, job: Mapping[str, Any], primed: Mapping[str, Any], resumed: Any, load_device: str = "cpu"
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "target": label,
        "adapter": job["adapter"],
        "implementation": job["implementation"],
        "dtype": job["dtype"],
        "variant": job["variant"],
    }
    if "config" not in primed:
        row["failure"] = "prime: " + _failure(primed)
        return row
    row["features"] = primed["features"]
    if not isinstance(resumed, Mapping) or "loaded" not in resumed:
        row["failure"] = "resume: " + _failure(resumed or {})
        return row
    saved, loaded = dict(primed["saved"]), dict(resumed["loaded"])
    row["state_restored"] = first_difference(saved, loaded, "loaded") is None
    row["restore_difference"] = first_difference(saved, loaded, "loaded")
    row["continuation_bit_exact"] = first_difference(primed["after"], resumed["after"], "after") is None
    row["continuation_difference"] = first_difference(primed["after"], resumed["after"], "after")
    row["final_state_bit_exact"] = first_difference(primed["final"], resumed["final"], "final") is None
    row["final_difference"] = first_difference(primed["final"], resumed["final"], "final")
    row["bit_exact"] = bool(
        row["state_restored"] and row["continuation_bit_exact"] and row["final_state_bit_exact"]
    )
    if load_device != "cpu":  # another arithmetic after the load: how far, not whether equal
        row["continuation_max_ulps"] = max(
            max_ulps(primed["after"], resumed["after"], job["dtype"]),
            max_ulps(primed["final"]["params"], resumed["final"]["params"], job["dtype"]),
        )
    return row


def _failure(res: Mapping[str, Any]) -> str:
    if "crash" in res:
        return f"crash: {res['crash']} {str(res.get('stderr', ''))[-200:]}"
    return f"{res.get('error', 'error')}: {str(res.get('message', ''))[:300]}"


def _generated(command: str, stem: str, doc: Mapping[str, Any]) -> str:
    """The line that says how the report was made and with which versions."""
    versions = ", ".join(f"`{a}` {b}" for a, b in sorted(doc.get("versions", {}).items()))
    device = f"; {doc['device_name']}" if doc.get("device_name") else ""
    return f"Generated by `{command}` (raw results in `{stem}.json`); {versions}{device}."


Judge = Callable[[Mapping[str, Any]], tuple[str, str]]


def _table(doc: Mapping[str, Any], continuation: str, judge: Judge) -> list[str]:
    """One row per case: ``judge(row)`` gives its continuation and verdict cells."""
    lines = [
        f"| implementation | dtype | config | features | state restored | {continuation} | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        head = f"| {r['target']} | {r['dtype']} | {r['variant']} | "
        if "failure" in r:
            lines.append(head + f"| {md_code(r['failure'])} | | failed |")
            continue
        restored = "bit-exact" if r["state_restored"] else md_code(str(r["restore_difference"]))
        cont, verdict = judge(r)
        lines.append(head + f"{', '.join(r['features']) or '-'} | {restored} | {cont} | {verdict} |")
    return lines


def _summary(doc: Mapping[str, Any], good: str, sentence: str, why: Sequence[str]) -> list[str]:
    """``N of M cases <sentence>``, then each case without the flag ``good`` and why."""
    bad = [r for r in doc["rows"] if not r.get(good)]
    total = len(doc["rows"])
    lines = ["", "## Summary", "", f"{total - len(bad)} of {total} cases {sentence}"]
    for r in bad:
        reason = next((r[k] for k in ("failure", *why) if r.get(k)), "")
        lines.append(f"* {r['target']} {r['dtype']} {r['variant']}: {md_code(str(reason))}")
    return lines


def to_markdown(doc: Mapping[str, Any]) -> str:
    if doc.get("load_device", "cpu") != "cpu":
        return _cross_device_markdown(doc)

    def judge(r: Mapping[str, Any]) -> tuple[str, str]:
        exact = r["continuation_bit_exact"] and r["final_state_bit_exact"]
        cont = "bit-exact" if exact else md_code(str(r["continuation_difference"] or r["final_difference"]))
        return cont, "bit-exact" if r["bit_exact"] else "DIFFERS"

    lines = [
        "# State fidelity: save, load in a fresh process, continue",
        "",
        _generated(f"{COMMAND} --out docs/reports/reliability", "state_fidelity", doc),
        "",
        f"Each run is primed {doc['n']} steps and saved with its adapter's `save` (the framework's "
        "native state, no pickle); a fresh worker process creates a new optimizer of the same "
        f"config with *other* initial parameters, `load`s the file and steps the same {doc['m']} "
        "gradients. Parameters `w` (3, 4), `b` (5,), a 0-d `s` and a zero-size `z`. Compared bit "
        "for bit: the state right after the load against the state at the save (parameters, m, "
        "v, v_max, step, per-parameter counts), the parameters after each later step, and the "
        "final state. `plain`: the adapter's profile, lr = 0.01, weight_decay = 0.1. `features`: "
        "plus what the adapter supports of a warmup-cosine lr schedule, AMSGrad, a decay-free "
        "group for `b`, and `b` frozen at step 2.",
        "",
        *_table(doc, "continuation", judge),
        *_summary(
            doc,
            "bit_exact",
            "resume bit-exactly in a fresh process.",
            ("restore_difference", "continuation_difference"),
        ),
        "",
        "CPU to GPU (save on the CPU, load on a GPU): `--load-device cuda` on a machine with one "
        "(the lent H200's run: docs/reports/gpu-h200-2026-11-26/reliability/).",
    ]
    return "\n".join(lines) + "\n"


def _cross_device_markdown(doc: Mapping[str, Any]) -> str:
    dev = doc["load_device"]

    def judge(r: Mapping[str, Any]) -> tuple[str, str]:
        ulps = r["continuation_max_ulps"]
        verdict = "restored" if r["state_restored"] else "NOT RESTORED"
        return ("bit-exact" if ulps == 0 else f"{ulps:.3g} ulp"), verdict

    lines = [
        f"# State fidelity: save on the CPU, load on {dev}, continue",
        "",
        _generated(
            f"{COMMAND} --load-device {dev} --out DIR",
            "state_fidelity_cpu_to_cuda",
            doc,
        ),
        "",
        f"As the CPU report, except that the fresh process creates its optimizer on {dev} and loads "
        f"the file saved on the CPU. The state right after the load (copied back) must equal the "
        f"saved state bit for bit. The {doc['m']} later steps run in the GPU's arithmetic, so "
        "they are reported as their largest distance from the CPU continuation, in ulps of the "
        "dtype (0: bit-exact).",
        "",
        *_table(doc, "continuation vs CPU", judge),
        *_summary(doc, "state_restored", f"restore the CPU state on {dev} exactly.", ("restore_difference",)),
    ]
    return "\n".join(lines) + "\n"


def _check_device(device: str) -> str | None:
    """The GPU's name, or exit with a one-line error when ``device`` cannot be used here."""
    if device == "cpu":
        return None
    if device != "cuda":
        raise SystemExit(f"--load-device {device!r}: expected 'cpu' or 'cuda'")
    from conformance.distributed.cases import cuda_info

    count, name = cuda_info()
    if count < 1:
        raise SystemExit("--load-device 'cuda': no CUDA device on this machine")
    return name


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance.reliability.fidelity", description=__doc__)
    p.add_argument("--out", type=Path, required=True, help="directory for state_fidelity.json/.md")
    p.add_argument("--targets", nargs="*", help=f"a subset of {list(TARGETS)}")
    p.add_argument("--dtypes", nargs="*", help=f"a subset of {list(DTYPES)}")
    p.add_argument("--variants", nargs="*", help=f"a subset of {list(VARIANTS)}")
    p.add_argument(
        "--load-device", default="cpu", help="where the fresh process loads the CPU-saved state (cpu, cuda)"
    )
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    name = _check_device(a.load_device)
    doc = {
        "report": "state_fidelity",
        "versions": versions(),
        **({"device_name": name} if name else {}),
        **collect(a.targets, a.dtypes, a.variants, a.load_device),
    }
    stem = "state_fidelity" if a.load_device == "cpu" else f"state_fidelity_cpu_to_{a.load_device}"
    js, md = write_report(a.out, stem, doc, to_markdown(doc))
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
