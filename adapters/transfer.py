r"""Move a run between frameworks mid-training: canonical state into another framework's native one.

:func:`transfer` reads a live run's parameters and :class:`~adapters.protocol.CanonicalState`
(step, :math:`m`, :math:`v`, :math:`v_{max}`, per-parameter counts), translates the run's
configuration into the target framework's (:func:`adapters.translate.translate`, the same
translation as ``adamw-ref translate``), creates the target's run and writes the state into it
with ``set_state``; then it reads the state back and says whether it moved bit for bit::

    moved = transfer(torch_run, "optax", source="torch", config=cfg, dtype="float32")
    moved.run.step(grads)            # an optax run, continuing where torch stopped
    moved.plan.residuals             # what differs between the two algorithms from here on

What a move keeps: the moments are the same quantities in every framework here (raw exponential
averages of :math:`g` and :math:`g^2`), so they move exactly when the target dtype holds them.
What changes is the algorithm: the run continues with the *target's* update rule. Where the two
profiles differ only in rounding (torch's multiplicative decay and Optax's decay added to the
update) the trajectory continues within rounding; where they differ in algebra (Keras'
:math:`\hat\epsilon`) it drifts by the translation's bounded residual.

Refused, with :class:`TransferRefused` naming what and why:

* a translation with an unbounded residual (AMSGrad over :math:`v` vs over :math:`\hat v`, no
  AMSGrad, ``maximize`` or Nesterov in the target, bias correction that cannot be switched);
* per-parameter step counts that differ (a parameter skipped steps) into a framework with one
  global count (Optax, Keras, MLX): the bias corrections of those parameters would change;
* non-constant schedules (translated configs are for constant schedules), parameter groups
  whose decay scales differently in the target, anything the target's adapter refuses.

``adamw-ref transfer`` (:func:`cli_main`, registered in the ``adamw_ref.commands`` entry points)
moves a saved native state file (``run.save``) of one framework into another's, or runs a
demonstration chain checked against the reference. docs/transfer.md is the user guide.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from numpy.typing import NDArray

from adamw_ref import AdamWConfig, get_profile
from adamw_ref.errors import AdamWRefError
from adamw_ref.knobs import StepCountScope
from adamw_ref.schedules import Constant
from adapters.arrays import DTYPE_NAMES, load_arrays
from adapters.errors import AdapterError
from adapters.protocol import Adapter, CanonicalState, OptimizerRun
from adapters.registry import load_adapter
from adapters.translate import FRAMEWORKS, Translation, framework_name, translate

F64 = NDArray[np.float64]
CANONICAL = "canonical"
CANONICAL_FORMAT = "adamw-ref/canonical-state"


class TransferRefused(AdapterError):
    """A move that cannot continue the run faithfully: ``what`` names the input, ``reason`` why."""

    def __init__(self, source: str, target: str, what: str, reason: str) -> None:
        self.source, self.target, self.what, self.reason = source, target, what, reason
        super().__init__(f"transfer {source} -> {target}: {what}: {reason}")


@dataclass
class TransferPlan:
    """What a move does: both configs, the counts written, residuals and notes."""

    source: str
    target: str
    source_config: AdamWConfig
    target_config: AdamWConfig
    step: int
    param_steps: dict[str, int] | None
    residuals: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    translation: Translation | None = None


@dataclass
class Transfer:
    """The target's live run (state set) and how the move went."""

    run: OptimizerRun
    plan: TransferPlan
    state_bit_exact: bool
    differences: list[str]


def _name(adapter: str | Adapter) -> str:
    return adapter if isinstance(adapter, str) else adapter.info.name


def _adapter(adapter: str | Adapter) -> Adapter:
    return load_adapter(adapter) if isinstance(adapter, str) else adapter


def read_state(run: OptimizerRun) -> tuple[dict[str, F64], CanonicalState]:
    """The run's parameters and canonical state, with per-parameter counts where the run keeps
    them (``state().param_steps``, else a ``param_steps()`` method as the torch runs have)."""
    params = {n: np.asarray(a, dtype=np.float64) for n, a in run.params().items()}
    st = run.state()
    own = st.param_steps
    method = getattr(run, "param_steps", None)
    if own is None and callable(method):
        own = {n: int(k) for n, k in method().items()}
    return params, CanonicalState(st.step, dict(st.m), dict(st.v), st.v_max, own)


def _framework_for(adapter: Adapter, config: AdamWConfig) -> str | None:
    """The :data:`adapters.translate.FRAMEWORKS` name of an adapter (None for the reference,
    which runs any configuration)."""
    if adapter.info.framework == "adamw_ref":
        return None
    name = framework_name(adapter.info.profile)
    return name if name in FRAMEWORKS else None


def _closest_framework(config: AdamWConfig, fallback: str) -> str:
    """A framework whose profile has ``config``'s knobs (the reference as a source)."""
    for fw in FRAMEWORKS.values():
        if get_profile(fw.profile).config.knobs() == config.knobs():
            return fw.name
    return fallback


def plan(
    source: str | Adapter,
    config: AdamWConfig,
    target: str | Adapter,
    state: CanonicalState,
    *,
    target_config: AdamWConfig | None = None,
    eps_match: str = "asymptotic",
) -> TransferPlan:
    """The target config and counts for moving ``state`` of a ``source`` run with ``config``
    into ``target``, or :class:`TransferRefused`. ``target_config`` overrides the translation
    (it must still be one the target's adapter accepts)."""
    src, dst = _adapter(source), _adapter(target)
    s_name, t_name = src.info.name, dst.info.name
    s_fw, t_fw = _framework_for(src, config), _framework_for(dst, config)
    tr: Translation | None = None
    residuals: list[str] = []
    notes: list[str] = []
    if target_config is not None:
        t_cfg = target_config
        notes.append("target config given explicitly (no translation)")
    elif t_fw is None:
        t_cfg = config
        notes.append(f"{t_name} runs any configuration: it continues with the source's own algorithm")
    else:
        for sched in ("lr_schedule", "wd_schedule"):
            value = getattr(config, sched)
            if not (isinstance(value, Constant) and value.value == 1.0):
                raise TransferRefused(
                    s_name,
                    t_name,
                    sched,
                    f"{value.to_json()}: only constant schedules are translated between frameworks",
                )
        try:
            tr = translate(s_fw or _closest_framework(config, t_fw), t_fw, config, eps_match=eps_match)
        except AdamWRefError as exc:
            raise TransferRefused(s_name, t_name, "config", str(exc)) from None
        unbounded = [r for r in tr.residuals if not r.bounded]
        if unbounded:
            raise TransferRefused(
                s_name, t_name, unbounded[0].knob, "; ".join(r.description for r in unbounded)
            )
        t_cfg = tr.target_config
        residuals = [f"{r.knob}: {r.description}; per step <= {r.per_step}" for r in tr.residuals]
        notes.extend(tr.notes)
        if config.groups:
            if config.decay_scaling is not t_cfg.decay_scaling and any(
                g.weight_decay not in (None, 0.0) for g in config.groups
            ):
                raise TransferRefused(
                    s_name,
                    t_name,
                    "groups",
                    "per-group weight decay scales differently in the target "
                    f"({config.decay_scaling.value} vs {t_cfg.decay_scaling.value})",
                )
            t_cfg = t_cfg.replace(groups=config.groups)
    try:
        dst.to_native(t_cfg)
    except AdamWRefError as exc:
        raise TransferRefused(s_name, t_name, getattr(exc, "field", "config"), str(exc)) from None
    step, own = _counts(s_name, t_name, state, t_cfg)
    if state.v_max is not None and not t_cfg.amsgrad:
        raise TransferRefused(
            s_name, t_name, "v_max", "the state has AMSGrad's v_max; the target config has none"
        )
    if state.v_max is None and t_cfg.amsgrad:
        raise TransferRefused(
            s_name, t_name, "v_max", "the target config uses AMSGrad; the state has no v_max"
        )
    return TransferPlan(s_name, t_name, config, t_cfg, step, own, residuals, notes, tr)


def _counts(
    source: str, target: str, state: CanonicalState, t_cfg: AdamWConfig
) -> tuple[int, dict[str, int] | None]:
    """The global count and per-parameter counts to write, or refuse differing counts into a
    framework with one global count."""
    own = dict(state.param_steps) if state.param_steps else None
    if t_cfg.step_count_scope is StepCountScope.PER_PARAMETER:
        return int(state.step), own or dict.fromkeys(state.m, int(state.step))
    if own is None:
        return int(state.step), None
    distinct = sorted(set(own.values()))
    if len(distinct) > 1:
        by = {k: sorted(n for n, c in own.items() if c == k) for k in distinct}
        raise TransferRefused(
            source,
            target,
            "param_steps",
            f"per-parameter step counts differ ({', '.join(f'{k}: {ns}' for k, ns in by.items())}); "
            f"{target} keeps one global count, so the bias corrections of the parameters that "
            "skipped steps would change",
        )
    return distinct[0] if distinct else int(state.step), None


def transfer(
    run_from: OptimizerRun,
    adapter_to: str | Adapter,
    *,
    source: str | Adapter,
    config: AdamWConfig,
    dtype: str = "float32",
    implementation: str | None = None,
    device: str = "cpu",
    target_config: AdamWConfig | None = None,
    eps_match: str = "asymptotic",
) -> Transfer:
    """Move ``run_from`` (a run of ``source`` with ``config``) into a new run of ``adapter_to``.

    The new run is created with the planned target config (:func:`plan`), gets the parameters
    and state with ``set_state``, and is read back: ``state_bit_exact`` says whether parameters,
    moments and counts arrived bit for bit (they do when ``dtype`` holds the source's values).
    """
    params, state = read_state(run_from)
    return transfer_state(
        params,
        state,
        adapter_to,
        source=source,
        config=config,
        dtype=dtype,
        implementation=implementation,
        device=device,
        target_config=target_config,
        eps_match=eps_match,
    )


def transfer_state(
    params: Mapping[str, Any],
    state: CanonicalState,
    adapter_to: str | Adapter,
    *,
    source: str | Adapter,
    config: AdamWConfig,
    dtype: str = "float32",
    implementation: str | None = None,
    device: str = "cpu",
    target_config: AdamWConfig | None = None,
    eps_match: str = "asymptotic",
) -> Transfer:
    """:func:`transfer` from parameters and a canonical state instead of a live run."""
    dst = _adapter(adapter_to)
    p = plan(source, config, dst, state, target_config=target_config, eps_match=eps_match)
    arrays = {n: np.asarray(a, dtype=np.float64) for n, a in params.items()}
    run = dst.create(p.target_config, arrays, implementation=implementation, device=device, dtype=dtype)
    moved = CanonicalState(p.step, dict(state.m), dict(state.v), state.v_max, p.param_steps)
    run.set_state(arrays, moved)
    got_params, got = read_state(run)
    diffs = _differences(arrays, moved, got_params, got)
    if diffs:
        p.notes.append(f"not bit-exact after set_state in {dtype}: {diffs[0]}")
    return Transfer(run, p, not diffs, diffs)


def _same_bits(a: Any, b: Any) -> bool:
    x = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    y = np.ascontiguousarray(np.asarray(b, dtype=np.float64))
    return x.shape == y.shape and bool(np.array_equal(x.view(np.uint64), y.view(np.uint64)))


def _differences(
    params: Mapping[str, Any], want: CanonicalState, got_params: Mapping[str, Any], got: CanonicalState
) -> list[str]:
    out = [f"params[{n!r}]" for n in params if not _same_bits(params[n], got_params[n])]
    for what in ("m", "v", "v_max"):
        a, b = getattr(want, what), getattr(got, what)
        if a is None or b is None:
            if (a is None) != (b is None):
                out.append(f"{what}: present on one side only")
            continue
        out += [f"{what}[{n!r}]" for n in a if not _same_bits(a[n], b[n])]
    if int(got.step) != int(want.step):
        out.append(f"step: wrote {want.step}, reads back {got.step}")
    if want.param_steps and got.param_steps and dict(got.param_steps) != dict(want.param_steps):
        out.append(f"param_steps: wrote {want.param_steps}, reads back {got.param_steps}")
    return out


# ------------------------------------------------------------------------- canonical state files
def save_canonical(
    path: Path, params: Mapping[str, Any], state: CanonicalState, config: AdamWConfig, dtype: str, source: str
) -> None:
    """A framework-neutral JSON file: config, parameters and canonical state, floats as
    ``float.hex`` (bit-exact), shapes kept."""

    def enc(d: Mapping[str, Any] | None) -> Any:
        if d is None:
            return None
        return {
            n: {
                "shape": list(np.shape(a)),
                "values": [float(x).hex() for x in np.ravel(np.asarray(a, np.float64))],
            }
            for n, a in d.items()
        }

    doc = {
        "format": CANONICAL_FORMAT,
        "source": source,
        "dtype": dtype,
        "config": config.to_json(),
        "params": enc(params),
        "step": int(state.step),
        "m": enc(state.m),
        "v": enc(state.v),
        "v_max": enc(state.v_max),
        "param_steps": None if state.param_steps is None else dict(state.param_steps),
    }
    Path(path).write_text(json.dumps(doc))


def load_canonical(path: Path) -> tuple[dict[str, F64], CanonicalState, AdamWConfig, str, str]:
    """``(params, state, config, dtype, source)`` from :func:`save_canonical`'s file."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise AdapterError(f"transfer: {str(path)!r}: cannot be read as JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != CANONICAL_FORMAT:
        raise AdapterError(f"transfer: {str(path)!r} is not a {CANONICAL_FORMAT} file")

    def dec(d: Any) -> dict[str, F64] | None:
        if d is None:
            return None
        return {
            n: np.array([float.fromhex(x) for x in e["values"]], dtype=np.float64).reshape(tuple(e["shape"]))
            for n, e in d.items()
        }

    params = dec(doc["params"]) or {}
    m, v = dec(doc["m"]) or {}, dec(doc["v"]) or {}
    own = doc.get("param_steps")
    state = CanonicalState(int(doc["step"]), m, v, dec(doc.get("v_max")), None if own is None else dict(own))
    return params, state, AdamWConfig.from_json(doc["config"]), str(doc["dtype"]), str(doc["source"])


# ------------------------------------------------------------------- reading native state files
@dataclass
class NativeFile:
    """What a native state file (an adapter's ``save``) records: names, shapes, dtype, and the
    hyperparameters where the format keeps them."""

    shapes: dict[str, tuple[int, ...]]
    dtype: str
    hyper: dict[str, Any]
    adapter: str | None = None


def inspect_native(path: Path) -> NativeFile:
    """Parameter names and shapes of a state file written by one of the built-in adapters."""
    p = Path(path)
    if not p.is_file():
        raise AdapterError(f"transfer: {str(path)!r}: no such file")
    if p.read_bytes()[:1] == b"{":
        doc = json.loads(p.read_text())
        if isinstance(doc, dict) and doc.get("format") == CANONICAL_FORMAT:
            params, _, _, dtype, _ = load_canonical(p)
            found: dict[str, tuple[int, ...]] = {n: tuple(a.shape) for n, a in params.items()}
            return NativeFile(found, dtype, {}, CANONICAL)
        if isinstance(doc, dict) and "state" in doc and "params" in doc:  # the reference's JSON
            flat: dict[str, tuple[int, ...]] = {str(n): (len(v),) for n, v in doc["params"].items()}
            return NativeFile(flat, "float64", {}, "reference")
        raise AdapterError(f"transfer: {str(path)!r}: JSON, but no adapter's state file")
    try:
        arrays, meta = load_arrays(p)
    except Exception as exc:
        raise AdapterError(
            f"transfer: {str(path)!r}: not a state file ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(meta, dict):
        raise AdapterError(f"transfer: {str(path)!r}: no metadata")
    fmt = meta.get("format")
    shapes: dict[str, tuple[int, ...]]
    if fmt == "adamw-ref/torch-run":
        shapes = {n: tuple(arrays[d["__tensor__"]].shape) for n, d in meta["params"].items()}
        return NativeFile(shapes, str(meta["dtype"]), _torch_hyper(meta), str(meta.get("adapter")))
    if fmt == "adamw-ref/optax":
        names = list(meta["params"])
        shapes = {n: tuple(arrays[f"param{i:04d}"].shape) for i, n in enumerate(names)}
        return NativeFile(shapes, str(meta["dtype"]), {}, "optax")
    if fmt == "adamw-ref/keras":
        names = list(meta["params"])
        shapes = {n: tuple(arrays[f"param{i:04d}"].shape) for i, n in enumerate(names)}
        return NativeFile(shapes, str(meta["dtype"]), {}, str(meta.get("adapter")))
    if fmt == "adamw-ref/mlx":
        groups = meta["groups"]
        if len(groups) != 1:
            raise AdapterError(
                f"transfer: {str(path)!r}: an mlx state with {len(groups)} groups does not record "
                "the parameters' order; pass the state through --to canonical from the run itself"
            )
        shapes = {n: tuple(arrays[f"param{j}"].shape) for j, n in enumerate(groups[0])}
        return NativeFile(shapes, str(meta["dtype"]), {}, "mlx")
    raise AdapterError(f"transfer: {str(path)!r}: unknown state format {fmt!r}")


def _torch_hyper(meta: Mapping[str, Any]) -> dict[str, Any]:
    """lr, betas, eps, weight_decay, amsgrad, maximize of a torch state file's param groups
    (refused when the groups differ: their parameter names are not recorded)."""
    groups = meta["optimizer"]["__dict__"]["str:param_groups"]
    keys = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize")
    found = []
    for g in groups:
        d = g["__dict__"]
        found.append({k: _plain(d.get(f"str:{k}")) for k in keys})
    if any(f != found[0] for f in found[1:]):
        raise AdapterError(
            "transfer: the torch state has param groups with different hyperparameters; "
            "pass the full config with --config (AdamWConfig JSON with its groups)"
        )
    return found[0]


def _plain(x: Any) -> Any:
    if isinstance(x, dict) and "__tuple__" in x:
        return tuple(_plain(v) for v in x["__tuple__"])
    return x


# ------------------------------------------------------------------------------- the chain demo
def demo_problem(steps: int, seed: int = 0) -> tuple[dict[str, F64], list[dict[str, F64]]]:
    """Parameters ``w`` (3, 4), ``b`` (5,), ``s`` () and ``steps`` gradients (``w`` at 1e-3)."""
    rng = np.random.default_rng(seed)
    shapes = {"w": (3, 4), "b": (5,), "s": ()}
    scale = {"w": 1e-3, "b": 1.0, "s": 0.1}
    params = {n: rng.standard_normal(s) for n, s in shapes.items()}
    grads = [{n: scale[n] * rng.standard_normal(s) for n, s in shapes.items()} for _ in range(steps)]
    return params, grads


@dataclass
class Segment:
    """One framework's stretch of a chain: start point (after the move), configs, trajectory."""

    adapter: str
    config: AdamWConfig
    start_params: dict[str, F64]
    start: CanonicalState
    grads: list[dict[str, F64]]
    params: list[dict[str, F64]]
    state_bit_exact: bool = True
    residuals: list[str] = field(default_factory=list)
    reference: list[dict[str, F64]] = field(default_factory=list)


def run_chain(
    chain: Sequence[str],
    steps: int,
    *,
    config: AdamWConfig,
    dtype: str = "float64",
    seed: int = 0,
) -> list[Segment]:
    """Train ``steps`` steps in each framework of ``chain`` in turn (the first with ``config``,
    each next one with the translated config), moving the state between them; each segment's
    reference runs the segment's config from the same start point in the same dtype."""
    keras = [a for a in chain if a.startswith("keras-")]
    if len(set(keras)) > 1:
        raise AdapterError(f"transfer: one Keras backend per process; the chain has {sorted(set(keras))}")
    p0, grads = demo_problem(steps * len(chain), seed)
    segments: list[Segment] = []
    first = load_adapter(chain[0])
    run: OptimizerRun = first.create(config, p0, dtype=dtype)
    cfg, residuals, exact = config, [], True
    for i, name in enumerate(chain):
        if i:
            moved = transfer(run, name, source=chain[i - 1], config=cfg, dtype=dtype)
            run.close()
            run, cfg, residuals, exact = (
                moved.run,
                moved.plan.target_config,
                moved.plan.residuals,
                moved.state_bit_exact,
            )
        start_params, start = read_state(run)
        seg = Segment(
            name, cfg, start_params, start, grads[i * steps : (i + 1) * steps], [], exact, residuals
        )
        ref = load_adapter("reference").create(cfg, start_params, dtype=dtype)
        ref.set_state(start_params, start)
        for g in seg.grads:
            run.step(g)
            ref.step(g)
            seg.params.append(read_state(run)[0])
            seg.reference.append({n: np.asarray(a, np.float64) for n, a in ref.params().items()})
        ref.close()
        segments.append(seg)
    run.close()
    return segments


def _max_ulps(a: Mapping[str, Any], b: Mapping[str, Any], dtype: str) -> tuple[float, float]:
    """Max |a - b| and max |a - b| in ulps of ``dtype`` (at b)."""
    from adapters.arrays import numpy_dtype

    worst_abs, worst_ulp = 0.0, 0.0
    for n in b:
        x, y = np.asarray(a[n], np.float64), np.asarray(b[n], np.float64)
        if x.size == 0:
            continue
        d = np.abs(x - y)
        np_dt = np.float32 if dtype in ("bfloat16", "float16") else numpy_dtype(dtype)
        sp = np.spacing(np.abs(y).astype(np_dt)).astype(np.float64)
        if dtype == "bfloat16":
            sp = sp * 2.0**16
        worst_abs = max(worst_abs, float(np.max(d)))
        worst_ulp = max(worst_ulp, float(np.max(d / sp)))
    return worst_abs, worst_ulp


# ----------------------------------------------------------------------------------- the command
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _source_config(framework: str, hyper: Mapping[str, Any], a: argparse.Namespace) -> AdamWConfig:
    if a.config:
        try:
            return AdamWConfig.from_json(json.loads(Path(a.config).read_text()))
        except (OSError, ValueError) as exc:
            raise AdapterError(f"--config {a.config!r}: {exc}") from None
    adapter = load_adapter(framework)
    cfg = get_profile(adapter.info.profile).config
    changes: dict[str, Any] = {}
    if hyper:
        changes.update(
            lr=float(hyper["lr"]), eps=float(hyper["eps"]), weight_decay=float(hyper["weight_decay"])
        )
        changes.update(beta1=float(hyper["betas"][0]), beta2=float(hyper["betas"][1]))
        changes.update(amsgrad=bool(hyper["amsgrad"]), maximize=bool(hyper["maximize"]))
    for flag, key in (("lr", "lr"), ("weight_decay", "weight_decay"), ("eps", "eps")):
        if getattr(a, flag) is not None:
            changes[key] = getattr(a, flag)
    if a.betas:
        parts = a.betas.split(",")
        if len(parts) != 2:
            raise AdapterError(f"--betas: expected 'beta1,beta2', got {a.betas!r}")
        changes["beta1"], changes["beta2"] = float(parts[0]), float(parts[1])
    if a.amsgrad:
        changes["amsgrad"] = True
    return cfg.replace(**changes)


def _describe(t: Transfer, dtype: str) -> list[str]:
    p = t.plan
    own = p.param_steps
    counts = (
        f"per-parameter counts {own}"
        if own and len(set(own.values())) > 1
        else f"step {p.step}" + (" (every parameter's own count)" if own else "")
    )
    lines = [f"{p.source} -> {p.target}"]
    if p.translation is not None:
        lines.append(f"  source: {p.translation.call('source')}")
        lines.append(f"  target: {p.translation.call('target')}")
    lines.append(
        f"  moved: parameters, m, v{', v_max' if p.target_config.amsgrad else ''}, {counts}: "
        + ("bit-exact" if t.state_bit_exact else f"NOT bit-exact ({'; '.join(t.differences[:3])})")
        + f" in {dtype}"
    )
    lines += [f"  residual: {r}" for r in p.residuals]
    lines += [f"  note: {n}" for n in p.notes]
    lines.append(
        "  from here on the run follows "
        + (
            f"{p.target}'s algorithm"
            if p.target != "reference"
            else "the source's algorithm in the reference"
        )
        + (": the residuals above bound how far that drifts from the source's" if p.residuals else "")
    )
    return lines


def _file_mode(a: argparse.Namespace) -> int:
    info = inspect_native(Path(a.state))
    if a.source == CANONICAL or info.adapter == CANONICAL:
        params, state, cfg, dtype, src_name = load_canonical(Path(a.state))
        source = src_name
    else:
        if info.adapter not in (None, a.source) and not (
            a.source.startswith("keras") and info.adapter == a.source
        ):
            raise AdapterError(f"transfer: {a.state!r} was written by {info.adapter}, not {a.source}")
        dtype = a.dtype or info.dtype
        cfg = _source_config(a.source, info.hyper, a)
        given = a.config or a.lr is not None or a.weight_decay is not None or a.eps is not None or a.betas
        if not info.hyper and not given:
            print(
                f"note: {a.source} state files do not record the hyperparameters; assumed its "
                f"profile's (lr={cfg.lr}, betas=({cfg.beta1}, {cfg.beta2}), eps={cfg.eps}, "
                f"weight_decay={cfg.weight_decay}): pass --lr/--betas/--eps/--weight-decay or --config",
                file=sys.stderr,
            )
        src = load_adapter(a.source)
        run = src.create(cfg, {n: np.zeros(s) for n, s in info.shapes.items()}, dtype=dtype)
        run.load(Path(a.state))
        params, state = read_state(run)
        run.close()
        source = a.source
    dtype = a.dtype or dtype
    if a.target == CANONICAL:
        save_canonical(Path(a.out), params, state, cfg, dtype, source)
        print(f"{source} -> canonical state file {a.out} (step {state.step}, {len(params)} parameters)")
        return 0
    moved = transfer_state(
        params,
        state,
        a.target,
        source=source,
        config=cfg,
        dtype=dtype,
        implementation=a.implementation,
        eps_match=a.eps_match,
    )
    moved.run.save(Path(a.out))
    moved.run.close()
    print("\n".join(_describe(moved, dtype)))
    print(f"  wrote {a.out} ({moved.plan.target}'s native state; load it into a run of the target config)")
    return 0


def _chain_mode(a: argparse.Namespace) -> int:
    chain = [c.strip() for c in a.chain.split(",") if c.strip()]
    if len(chain) < 2:
        raise AdapterError("--chain: name at least two adapters, e.g. torch,optax,keras-jax,mlx")
    cfg = _source_config(chain[0], {}, a)
    dtype = a.dtype or "float64"
    if dtype not in DTYPE_NAMES:
        raise AdapterError(f"--dtype: {dtype!r}: expected one of {list(DTYPE_NAMES)}")
    segs = run_chain(chain, a.steps, config=cfg, dtype=dtype, seed=a.seed)
    rows: list[dict[str, Any]] = []
    for s in segs:
        worst = [_max_ulps(p, r, dtype) for p, r in zip(s.params, s.reference, strict=True)]
        rows.append(
            {
                "adapter": s.adapter,
                "profile_knobs": s.config.knobs(),
                "state_bit_exact": s.state_bit_exact,
                "residuals": s.residuals,
                "max_abs_vs_reference": max(w[0] for w in worst),
                "max_ulps_vs_reference": max(w[1] for w in worst),
                "step_at_start": s.start.step,
            }
        )
    if a.json:
        print(json.dumps({"chain": chain, "dtype": dtype, "steps": a.steps, "segments": rows}, indent=2))
    else:
        print(f"chain {' -> '.join(chain)}, {a.steps} steps each, {dtype}")
        print("  segment           start  state moved   vs reference (same config, same start)")
        for r in rows:
            moved = "bit-exact" if r["state_bit_exact"] else "ROUNDED"
            ulps = r["max_ulps_vs_reference"]
            print(
                f"  {r['adapter']:<17} {r['step_at_start']:>5}  {moved:<12}  max |d theta| "
                f"{r['max_abs_vs_reference']:.3g} ({ulps:.3g} ulp)"
            )
            for res in r["residuals"]:
                print(f"      residual from here on: {res}")
    return 0 if all(r["state_bit_exact"] and math.isfinite(r["max_ulps_vs_reference"]) for r in rows) else 1


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``adamw-ref transfer --from F --state FILE --to G --out FILE [--lr ..] [--dtype ..]`` or
    ``adamw-ref transfer --chain torch,optax,keras-jax,mlx [--steps N] [--dtype ..] [--json]``."""
    p = _Parser(
        prog="adamw-ref transfer",
        description="Move a saved optimizer state between frameworks mid-training (or run a "
        "demonstration chain checked against the reference). See docs/transfer.md.",
    )
    p.add_argument(
        "--from", dest="source", metavar="ADAPTER", help="the saved state's adapter (torch, optax, ...)"
    )
    p.add_argument("--state", metavar="FILE", help="the saved state (the adapter's run.save)")
    p.add_argument("--to", dest="target", metavar="ADAPTER", help=f"the target adapter, or {CANONICAL!r}")
    p.add_argument("--out", metavar="FILE", help="where to write the target's native state")
    p.add_argument("--chain", metavar="A,B,...", help="demonstrate a chain of adapters instead")
    p.add_argument("--steps", type=int, default=5, help="steps per framework in --chain (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --chain problem")
    p.add_argument("--dtype", help="dtype of the runs (default: the saved state's; float64 for --chain)")
    p.add_argument("--implementation", help="the target's implementation (default: its adapter's)")
    p.add_argument("--config", metavar="JSON", help="the source's full AdamWConfig as a JSON file")
    p.add_argument("--lr", type=float, help="learning rate (when the state file does not record it)")
    p.add_argument("--weight-decay", dest="weight_decay", type=float, help="weight decay")
    p.add_argument("--eps", type=float, help="epsilon")
    p.add_argument("--betas", help="beta1,beta2")
    p.add_argument("--amsgrad", action="store_true", help="the source run uses AMSGrad")
    p.add_argument("--eps-match", choices=("asymptotic", "first"), default="asymptotic", help="see translate")
    p.add_argument("--json", action="store_true", help="--chain: print JSON")
    try:
        return _dispatch(p, p.parse_args(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, one line on stderr)
        return int(exc.code or 0)


def _dispatch(p: _Parser, a: argparse.Namespace) -> int:
    try:
        if a.chain:
            if a.steps < 1:
                p.error(f"--steps: must be >= 1, got {a.steps}")
            return _chain_mode(a)
        missing = [
            f
            for f, v in (("--from", a.source), ("--state", a.state), ("--to", a.target), ("--out", a.out))
            if not v
        ]
        if missing:
            p.error(f"missing {', '.join(missing)} (or use --chain)")
        return _file_mode(a)
    except AdamWRefError as exc:
        print(f"adamw-ref transfer: error: {exc}", file=sys.stderr)
        return 2


__all__ = [
    "CANONICAL_FORMAT",
    "NativeFile",
    "Segment",
    "Transfer",
    "TransferPlan",
    "TransferRefused",
    "cli_main",
    "demo_problem",
    "inspect_native",
    "load_canonical",
    "plan",
    "read_state",
    "run_chain",
    "save_canonical",
    "transfer",
    "transfer_state",
]
