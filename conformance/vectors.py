r"""Verify an implementation (any adapter) against the test vectors, without running the reference.

For every group of every vector file: the adapter is asked to express the group's configuration
(:meth:`~adapters.protocol.Adapter.to_native`); a refusal (:class:`~adapters.errors.UnsupportedConfig`)
or a dtype/feature the adapter does not list skips the group with the reason. Otherwise each test
runs from its initial parameters on its recorded gradients, and after every listed step the
parameters, ``m``, ``v`` (and ``v_max``) are compared with the expected values:

* a non-finite expected value must be matched exactly (NaN by NaN, :math:`\pm\infty` by itself);
* parameters: :math:`|\theta-\theta^{exp}|\le B_t`, the *free-running* bound of
  :func:`conformance.tolerance.step_bounds` (``ref_vs_impl``, the group's dtype), computed from the
  vector's own expected values; where a test lists expected values only every few steps
  (``LARGE_STEP_COUNT``) the implementation's own values stand in for the magnitudes
  :math:`|\theta_{t-1}|, |\theta_t|, v_t` of the unlisted steps (they only scale the bound);
* moments: :math:`|m-m^{exp}|\le c\,u\,(\min(t,\tfrac1{1-\beta_1})+1)\,M_t + c\mu` with
  :math:`M_t` the moving average of :math:`|g|` (plus :math:`\lambda|\theta|` for coupled L2), and
  :math:`|v-v^{exp}|\le c\,u\,(\min(t,\tfrac1{1-\beta_2})+2+\tfrac{\beta_2}{1-\beta_2})\,V_t
  + c\mu` (and the same :math:`\beta_1/(1-\beta_1)` term for ``m``), :math:`V_t` the moving
  average of :math:`g^2` (the same for ``v_max``): each step adds a few roundings to the moment
  and the average forgets old ones at rate :math:`\beta`; the last term is the conditioning of
  the constant :math:`1-\beta`, which the reference (like PyTorch) forms in binary64 and rounds
  once, while an implementation holding :math:`\beta` in the dtype forms it from the rounded
  :math:`\beta` (a relative difference up to :math:`u\beta/(1-\beta)`, 1.3e-5 for binary32
  and :math:`\beta_2=0.999`). :math:`c` and :math:`u` as for the parameters.

``adamw-conformance vectors verify --adapter NAME`` (alias ``adamw-ref vectors verify``, registered
in the ``adamw_ref.commands`` entry points) prints one line per failing or skipped group and
``N passed, M failed, K skipped``; exit status 1 on any failure, 2 if the framework is missing.
``adamw-conformance vectors lint`` is :func:`adamw_ref.vectors.lint` with the JSON Schema
(``jsonschema``) in place of the standard-library structural check.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from adamw_ref import AdamWConfig, DecayForm
from adamw_ref.vectors import decode_float, default_vectors_dir, lint, schema_path
from adapters.errors import AdapterError, FrameworkUnavailable, UnsupportedConfig
from adapters.protocol import Adapter, Support
from conformance.tolerance import RefPoint, spec_for, step_bounds

F64 = NDArray[np.float64]


@dataclass
class TestResult:
    """The verdict on one test (``status``: pass, fail or skip)."""

    file: str
    tc_id: int
    flags: list[str]
    status: str
    reason: str = ""
    worst: float = 0.0  # largest |error| / bound seen (<= 1 passes)


@dataclass
class VerifyReport:
    adapter: str
    results: list[TestResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def ok(self) -> bool:
        return self.count("fail") == 0

    def summary(self) -> str:
        return f"{self.count('pass')} passed, {self.count('fail')} failed, {self.count('skip')} skipped"


def _arr(values: Sequence[str]) -> F64:
    return np.array([decode_float(x) for x in values], dtype=np.float64)


def _vecs(d: Mapping[str, Sequence[str]]) -> dict[str, F64]:
    return {k: _arr(v) for k, v in d.items()}


def _group_skip(adapter: Adapter, config: AdamWConfig, dtype: str, implementation: str | None) -> str | None:
    if dtype not in adapter.info.dtypes:
        return f"dtype {dtype} not supported (adapter lists {list(adapter.info.dtypes)})"
    try:
        adapter.to_native(config, implementation)
    except UnsupportedConfig as exc:
        return f"config not expressible: {exc}"
    return None


def needed_features(config: AdamWConfig) -> list[str]:
    """The :class:`~adapters.protocol.AdapterInfo` features a configuration uses."""
    from adamw_ref import Constant

    def scheduled(s: object) -> bool:
        return not (isinstance(s, Constant) and s.value == 1.0)

    wanted = {
        "amsgrad": config.amsgrad,
        "maximize": config.maximize,
        "nesterov": config.nesterov,
        "eps_root": config.eps_root != 0.0,
        "lr_schedule": scheduled(config.lr_schedule),
        "wd_schedule": scheduled(config.wd_schedule),
        "groups": bool(config.groups),
    }
    return [f for f, on in wanted.items() if on]


def _declared_skip(adapter: Adapter, config: AdamWConfig) -> str | None:
    """A feature the adapter declares UNSUPPORTED: skipped, as the suite skips it."""
    for feat in needed_features(config):
        if Support(adapter.info.features.get(feat, Support.UNSUPPORTED)) is Support.UNSUPPORTED:
            return f"feature {feat!r} not supported (AdapterInfo.features)"
    return None


def _test_skip(adapter: Adapter, test: Mapping[str, Any]) -> str | None:
    frozen = any(g is None for step in test["grads"] for g in step.values())
    if frozen and adapter.info.features.get("frozen", Support.NATIVE) is Support.UNSUPPORTED:
        return "frozen parameters (null gradients) not supported"
    return None


class VectorFileError(ValueError):
    """A vector file that cannot be verified (one line: the file and what is wrong)."""


def read_vector_file(path: Path) -> dict[str, Any]:
    """A vector file, checked against the essentials of the schema; :class:`VectorFileError`
    names the file for anything unreadable, not UTF-8, not JSON, malformed, or with a dtype other
    than float64/float32."""
    from adamw_ref.vectors.lint import structural_errors

    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise VectorFileError(f"{path.name}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise VectorFileError(f"{path.name}: not UTF-8 text (offset {exc.start})") from None
    except (ValueError, RecursionError) as exc:
        raise VectorFileError(f"{path.name}: not a JSON vector file: {str(exc)[:120]}") from None
    problems = structural_errors(doc)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise VectorFileError(f"{path.name}: {problems[0]}{more}")
    return dict(doc)


def _moment_bounds(
    config: AdamWConfig,
    grads: Sequence[Mapping[str, F64 | None]],
    params_seen: Sequence[Mapping[str, F64]],
    u: float,
    c: float,
    mu: float,
) -> list[tuple[dict[str, F64], dict[str, F64]]]:
    """Per step: (m bound, v bound) per parameter (see the module docstring)."""
    b1, b2 = config.beta1, config.beta2
    names = list(params_seen[0])
    mabs = {n: np.zeros_like(params_seen[0][n]) for n in names}
    vabs = {n: np.zeros_like(params_seen[0][n]) for n in names}
    own = dict.fromkeys(names, 0)
    out = []
    for t, g in enumerate(grads, start=1):
        count = t - 1 if config.schedule_count.value == "pre_increment" else t
        omega = config.wd_schedule(count)
        mb: dict[str, F64] = {}
        vb: dict[str, F64] = {}
        for n in names:
            gn = g[n]
            if gn is not None:
                own[n] += 1
                ga = np.abs(gn)
                if config.decay_form is DecayForm.COUPLED_L2:
                    ga = ga + config.group_for(n)[1] * omega * np.abs(params_seen[t - 1][n])
                with np.errstate(all="ignore"):
                    mabs[n] = b1 * mabs[n] + (1 - b1) * ga
                    vabs[n] = b2 * vabs[n] + (1 - b2) * ga * ga
            k = own[n]
            # + beta/(1-beta): the relative conditioning of the constant 1-beta: formed in
            # binary64 and rounded once (the reference, torch) or from beta already rounded to
            # the dtype (frameworks holding beta in a float32 variable): they differ by up to
            # u*beta/(1-beta), and both are legitimate.
            mb[n] = c * u * (min(k, 1 / (1 - b1)) + 1 + b1 / (1 - b1)) * mabs[n] + c * mu
            vb[n] = c * u * (min(k, 1 / (1 - b2)) + 2 + b2 / (1 - b2)) * vabs[n] + c * mu
        out.append((mb, vb))
    return out


def _check(what: str, got: F64, want: F64, bound: F64) -> tuple[str | None, float]:
    """(problem or None, worst error/bound ratio) for one parameter's values."""
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    if got.shape != want.shape:
        return f"{what}: shape {got.shape} != {want.shape}", math.inf
    finite = np.isfinite(want)
    nonfinite_ok = np.where(np.isnan(want), np.isnan(got), got == want)
    if not np.all(nonfinite_ok[~finite]):
        i = int(np.flatnonzero(~finite & ~nonfinite_ok)[0])
        return f"{what}[{i}]: got {got[i]!r}, want {want[i]!r}", math.inf
    with np.errstate(all="ignore"):
        err = np.abs(got - want)
        ratio = np.where(finite, np.where(bound > 0, err / bound, np.where(err > 0, np.inf, 0.0)), 0.0)
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    worst = float(ratio.max(initial=0.0))
    if worst > 1.0:
        i = int(np.argmax(ratio))
        return (
            f"{what}[{i}]: got {got[i]!r}, want {want[i]!r}, |err|={err[i]:.3g} > bound {bound[i]:.3g}"
        ), worst
    return None, worst


def run_test(
    adapter: Adapter,
    config: AdamWConfig,
    dtype: str,
    test: Mapping[str, Any],
    implementation: str | None = None,
    device: str = "cpu",
) -> tuple[str | None, float]:
    """Run one test through ``adapter``; returns (first problem or None, worst ratio)."""
    params0 = _vecs(test["params"])
    grads: list[dict[str, F64 | None]] = [
        {k: None if v is None else _arr(v) for k, v in step.items()} for step in test["grads"]
    ]
    expected = {e["step"]: e for e in test["expected"]}
    run = adapter.create(
        config,
        {k: v.copy() for k, v in params0.items()},
        implementation=implementation,
        device=device,
        dtype=dtype,
    )
    seen_p: list[dict[str, F64]] = [params0]
    seen_m: list[dict[str, F64]] = [{k: np.zeros_like(v) for k, v in params0.items()}]
    seen_v: list[dict[str, F64]] = [dict(seen_m[0])]
    seen_vmax: list[dict[str, F64] | None] = [dict(seen_m[0]) if config.amsgrad else None]
    outputs = []
    try:
        for g in grads:
            run.step({k: None if v is None else v.copy() for k, v in g.items()})
            p = {k: np.asarray(v, np.float64).reshape(-1) for k, v in run.params().items()}
            st = run.state()
            m = {k: np.asarray(v, np.float64).reshape(-1) for k, v in st.m.items()}
            v_ = {k: np.asarray(v, np.float64).reshape(-1) for k, v in st.v.items()}
            vm = (
                None
                if st.v_max is None
                else {k: np.asarray(v, np.float64).reshape(-1) for k, v in st.v_max.items()}
            )
            outputs.append((p, m, v_, vm))
            t = len(outputs)
            e = expected.get(t)
            # Magnitudes for the bound: the expected values, else the implementation's own.
            seen_p.append(_vecs(e["params"]) if e else p)
            seen_m.append(_vecs(e["m"]) if e else m)
            seen_v.append(_vecs(e["v"]) if e else v_)
            seen_vmax.append(_vecs(e["vMax"]) if e and "vMax" in e else vm)
    finally:
        run.close()
    spec = spec_for(dtype, device, "ref_vs_impl")
    refs = [RefPoint(params=p, m=m, v=v, v_max=vm) for p, m, v, vm in zip(seen_p, seen_m, seen_v, seen_vmax)]
    p_bounds = step_bounds(config, refs, grads, spec, "free")
    mv_bounds = _moment_bounds(config, grads, seen_p, spec.unit_roundoff, spec.c_step, spec.min_subnormal)
    worst = 0.0
    for t, e in sorted(expected.items()):
        p, m, v_, vm = outputs[t - 1]
        mb, vb = mv_bounds[t - 1]
        checks = [("params", p, e["params"], p_bounds[t - 1]), ("m", m, e["m"], mb), ("v", v_, e["v"], vb)]
        if "vMax" in e:
            if vm is None:
                return f"step {t}: adapter reports no v_max", math.inf
            checks.append(("v_max", vm, e["vMax"], vb))
        for what, got, want_d, bound in checks:
            for name, want_hex in want_d.items():
                if name not in got:
                    return f"step {t} {what}: no values for {name!r}", math.inf
                problem, ratio = _check(f"step {t} {what}[{name!r}]", got[name], _arr(want_hex), bound[name])
                worst = max(worst, ratio)
                if problem:
                    return problem, worst
    return None, worst


def verify(
    adapter: Adapter, directory: Path | None = None, implementation: str | None = None, device: str = "cpu"
) -> VerifyReport:
    """Verify ``adapter`` against every vector file in ``directory``."""
    directory = directory or default_vectors_dir()
    report = VerifyReport(adapter=adapter.info.name)
    for path in vector_files(directory):
        doc = read_vector_file(path)
        for gi, group in enumerate(doc["testGroups"]):
            try:
                config = AdamWConfig.from_json(group["config"])
            except ValueError as exc:
                raise VectorFileError(f"{path.name}: testGroups[{gi}].config: {exc}") from None
            skip = _group_skip(adapter, config, group["dtype"], implementation) or _declared_skip(
                adapter, config
            )
            for test in group["tests"]:
                res = TestResult(path.name, test["tcId"], list(test["flags"]), "skip")
                reason = skip or _test_skip(adapter, test)
                if reason:
                    res.reason = reason
                else:
                    try:
                        problem, res.worst = run_test(
                            adapter, config, group["dtype"], test, implementation, device
                        )
                    except UnsupportedConfig as exc:
                        res.reason = f"config not expressible: {exc}"
                    except FrameworkUnavailable:
                        raise
                    except Exception as exc:  # it accepted the config, then failed to run it
                        res.status, res.reason = "fail", f"error: {type(exc).__name__}: {exc}"
                    else:
                        res.status = "fail" if problem else "pass"
                        res.reason = problem or ""
                report.results.append(res)
    return report


def vector_files(directory: Path) -> list[Path]:
    """The ``*.json`` files of ``directory``; :class:`VectorFileError` when there are none (a
    verification that checked nothing never passes)."""
    if not directory.is_dir():
        raise VectorFileError(f"{directory}: not a directory of vector files")
    files = sorted(directory.glob("*.json"))
    if not files:
        raise VectorFileError(f"{directory}: no vector files (*.json)")
    return files


def schema_validator() -> Any:
    """A validator for :func:`adamw_ref.vectors.lint`: the full JSON Schema (``jsonschema``)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(schema_path().read_text("utf-8")))

    def validate(doc: Any) -> list[str]:
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))[:20]
        return [f"schema: {'/'.join(map(str, e.path))}: {e.message}" for e in errors]

    return validate


def lint_main(argv: Sequence[str] | None = None) -> int:
    """``adamw-conformance vectors lint [--dir DIR]``: the files against the JSON Schema."""
    parser = argparse.ArgumentParser(prog="adamw-conformance vectors lint")
    parser.add_argument("--dir", help="vector directory (default: adamw_ref/vectors/data)")
    args = parser.parse_args(argv)
    directory = Path(args.dir) if args.dir else default_vectors_dir()
    errs = lint(directory, schema_validator())
    for e in errs:
        print(e)
    print(f"lint: {'OK' if not errs else f'{len(errs)} problem(s)'} ({directory}; JSON Schema)")
    return 1 if errs else 0


def vectors_main(argv: Sequence[str]) -> int:
    """``adamw-conformance vectors verify ... | lint ...``."""
    commands = {"verify": cli_main, "lint": lint_main}
    if not argv or argv[0] not in commands:
        print(
            "usage: adamw-conformance vectors {verify,lint} ...\n"
            "  verify --adapter NAME   check an implementation against the vectors\n"
            "  lint [--dir DIR]        check vector files against the JSON Schema"
        )
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return commands[argv[0]](list(argv[1:]))


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``adamw-conformance vectors verify --adapter NAME [--dir DIR] [--implementation I]``
    (also ``adamw-ref vectors verify``)."""
    from adapters import load_adapter

    parser = argparse.ArgumentParser(prog="adamw-conformance vectors verify")
    parser.add_argument(
        "--adapter", required=True, help="built-in name, entry point or package.module:factory"
    )
    parser.add_argument("--dir", help="vector directory (default: adamw_ref/vectors/data)")
    parser.add_argument("--implementation", help="the adapter's implementation (default: its first)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--verbose", action="store_true", help="also list skipped tests")
    args = parser.parse_args(argv)
    import sys

    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # plug-ins in the current directory, as for run
    prog = "adamw-conformance vectors verify"
    try:
        adapter = load_adapter(args.adapter)
        if isinstance(adapter, type):  # a class with a class-level ``info``: instantiate it
            adapter = adapter()
        report = verify(adapter, Path(args.dir) if args.dir else None, args.implementation, args.device)
    except FrameworkUnavailable as exc:
        print(f"{prog}: unavailable: {exc}", file=sys.stderr)
        return 2
    except (AdapterError, VectorFileError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    shown: set[tuple[str, str]] = set()
    for r in report.results:
        if r.status == "fail":
            print(f"FAIL {r.file} tcId {r.tc_id} [{','.join(r.flags)}]: {r.reason}")
        elif r.status == "skip" and (args.verbose or (r.file, r.reason) not in shown):
            shown.add((r.file, r.reason))
            print(f"SKIP {r.file} (tcId {r.tc_id}...): {r.reason}")
    worst = max((r.worst for r in report.results if r.status == "pass"), default=0.0)
    print(f"{report.adapter}: {report.summary()} (worst error/bound among passes {worst:.3g})")
    return 0 if report.ok else 1
