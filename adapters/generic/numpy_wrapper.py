r"""``numpy:pkg.mod.Class``: a plain-Python/numpy optimizer behind the adapter protocol.

The numpy optimizer protocol
============================

The wrapped class needs three things::

    class MyAdamW:
        def __init__(self, params: dict[str, np.ndarray], **hyperparameters) -> None: ...
        def step(self, grads: dict[str, np.ndarray | None]) -> None: ...
        params: dict[str, np.ndarray]        # an attribute or a property (a method also works)

* ``__init__`` gets the initial parameters as its first argument (a new dict of new arrays,
  name -> array of the run's dtype: ``float64``, ``float32``, ``float16``, or ``bfloat16`` from
  ``ml_dtypes``; 0-d and zero-size arrays included) and the hyperparameters as keyword
  arguments. Their names are read from the signature: ``lr``/``learning_rate``,
  ``betas`` (a tuple) or ``beta1``/``beta2`` (or ``b1``/``b2``, ``beta_1``/``beta_2``),
  ``eps``/``epsilon``, ``weight_decay``/``wd``, ``amsgrad``, ``maximize``, ``nesterov``,
  ``eps_root``; a hyperparameter the signature lacks is not passed (and configs that need
  another value than its fixed one are refused). Defaults are read from the signature too.
* ``step(grads)`` makes one update. ``grads`` has every parameter name; a value is an array
  of the parameter's shape and dtype, or ``None``: the parameter is frozen for this step (no
  gradient; what a frozen parameter's state and step count do is the optimizer's business, and
  what the suite checks).
* ``params`` is the current value of every parameter, name -> array (read after every step;
  copied by the wrapper).

Optional extras, used when present:

* ``state_dict() -> dict`` and ``load_state_dict(state: dict) -> None``: save/load. The dict
  holds *everything* needed to continue bit-exactly, the parameters included; its leaves are
  numpy arrays, numpy or Python scalars (bool, int, float, str, None) in dicts (str keys),
  lists and tuples. ``load_state_dict`` is called on a fresh instance built with the same
  arguments. The wrapper stores it as ``.npz`` + JSON (no pickle). Without both methods
  ``save_load`` is UNSUPPORTED.
* ``adam_state() -> dict`` and ``load_adam_state(state: dict) -> None``: the canonical state, for
  ``state()`` read-back (``adam_state``) and teacher forcing (both). ``adam_state()`` returns::

      {"step": k,                      # updates taken so far: an int (one count for all), or
                                       #   {name: int} (each parameter's own count)
       "m": {name: array},             # the raw first moment  m = beta1 m + (1 - beta1) g
       "v": {name: array},             # the raw second moment v = beta2 v + (1 - beta2) g^2
       "v_max": {name: array} | None}  # AMSGrad's running maximum of v (absent/None without)

  (raw: not bias-corrected, not quantised; arrays shaped like the parameter, any float dtype).
  ``load_adam_state`` receives the same keys plus ``"params": {name: array}`` (the run's dtype)
  and must leave the optimizer exactly as if it had produced that state itself; ``"step"`` is an
  int, or a dict when ``adam_state()`` gives one. Before using them the wrapper checks them on a
  probe (:mod:`adapters.generic.base`): a fresh instance on ``{"probe": [0, 0]}``, one step
  with ``[1, 1]``, must read back ``step == 1``, ``m == +-(1 - beta1)``, ``v == 1 - beta2``.
* ``set_lr(lr: float) -> None``: the learning rate for the next step. With it, learning-rate
  schedules are native: before step ``c`` (0-based) the wrapper calls ``set_lr(lr * eta(c))``.
  Without it ``lr_schedule`` is UNSUPPORTED.

Parameter groups with their own lr / weight decay are emulated: one instance per distinct
``(lr, weight_decay)``, each over its parameters, all stepped every time (frozen ones with
``None``); mechanisms that couple parameters across groups are then split. ``maximize`` is the
constructor's argument, else emulated by negating the gradient. CPU only.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from adamw_ref import AdamWConfig, Constant
from adamw_ref.formats import FORMATS, round_to_format
from adapters.arrays import as_float64, load_arrays, numpy_dtype, save_arrays
from adapters.capabilities import decay_active
from adapters.errors import AdapterError
from adapters.generic.base import PROBE, PROBE_SHAPE, GenericAdapter, ProbeGate, check_first_step
from adapters.generic.capabilities import Capabilities, feature_table, fold_constant_lr, read_signature
from adapters.generic.spec import AdapterSpec
from adapters.protocol import Array, CanonicalState, Support

N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED
FORMAT = "adamw-ref/numpy-run"


def _has(cls: Any, name: str) -> bool:
    return callable(getattr(cls, name, None))


def encode(obj: Any, arrays: dict[str, Any], key: str) -> Any:
    """A ``state_dict`` as JSON; arrays go to ``arrays`` under keys derived from ``key``."""
    if isinstance(obj, np.ndarray | np.generic) and not isinstance(obj, np.bool_ | np.str_):
        arrays[key] = np.asarray(obj)
        return {"__array__": key, "scalar": isinstance(obj, np.generic)}
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Mapping):
        if not all(isinstance(k, str) for k in obj):
            raise AdapterError(f"state_dict {key}: keys must be strings (no pickle)")
        return {"__dict__": {k: encode(v, arrays, f"{key}/{k}") for k, v in obj.items()}}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, arrays, f"{key}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, arrays, f"{key}/{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise AdapterError(f"state_dict {key}: cannot store {type(obj).__name__} without pickle")


def decode(doc: Any, arrays: Mapping[str, Any]) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(doc, list):
        return [decode(v, arrays) for v in doc]
    if isinstance(doc, dict):
        if "__array__" in doc:
            arr = np.array(arrays[doc["__array__"]])
            return arr[()] if doc.get("scalar") else arr
        if "__tuple__" in doc:
            return tuple(decode(v, arrays) for v in doc["__tuple__"])
        if "__dict__" in doc:
            return {k: decode(v, arrays) for k, v in doc["__dict__"].items()}
    return doc


class NumpyRun(ProbeGate):
    """Named numpy parameters driven by an optimizer of the numpy protocol (module docstring)."""

    def __init__(
        self, wrapper: NumpyWrapper, config: AdamWConfig, params: Mapping[str, Array], dtype: str
    ) -> None:
        if not isinstance(params, Mapping) or not params:
            raise AdapterError(f"{wrapper.info.name}: params must be a non-empty mapping name -> array")
        self.wrapper, self.name, self.dtype = wrapper, wrapper.info.name, dtype
        self.np_dtype = numpy_dtype(dtype)
        self.config = config = fold_constant_lr(config)
        self.names = list(params)
        init = {n: self._cast(params[n], f"params[{n!r}]") for n in self.names}
        self.shapes = {n: a.shape for n, a in init.items()}
        self.negate = config.maximize and not wrapper.caps.native_maximize()
        parts: dict[tuple[float, float], list[str]] = {}
        for n in self.names:
            lr, wd = config.group_for(n)
            parts.setdefault((lr, wd if decay_active(config) else 0.0), []).append(n)
        self.parts: list[tuple[float, list[str], Any]] = []
        for (lr, wd), names in parts.items():
            inst = self._new({n: init[n] for n in names}, config, lr, wd)
            self.parts.append((lr, names, inst))
        self.steps = 0

    def _new(self, params: dict[str, Any], config: AdamWConfig, lr: float, wd: float) -> Any:
        caps = self.wrapper.caps
        kwargs = caps.kwargs(config, lr=lr, weight_decay=wd if decay_active(config) else None)
        try:
            return self.wrapper.target(params, **kwargs)
        except Exception as exc:
            raise AdapterError(
                f"{self.name}: the constructor rejected {sorted(kwargs)}: {type(exc).__name__}: {exc}"
            ) from None

    def _cast(self, x: Any, what: str) -> np.ndarray[Any, Any]:
        arr = as_float64(x, what)
        if self.dtype in ("bfloat16", "float16"):
            fmt = FORMATS[self.dtype]
            arr = np.asarray([round_to_format(float(v), fmt) for v in arr.reshape(-1)]).reshape(arr.shape)
        return np.array(arr.astype(self.np_dtype), copy=True)

    # -- OptimizerRun -------------------------------------------------------------------------
    def step(self, grads: Mapping[str, Array | None]) -> None:
        if not isinstance(grads, Mapping):
            raise AdapterError(f"{self.name}: grads must be a mapping name -> array or None")
        missing = [n for n in self.names if n not in grads]
        extra = [n for n in grads if n not in self.shapes]
        if missing or extra:
            raise AdapterError(
                f"{self.name}: grads names {sorted(grads)} differ from params "
                f"(missing {missing}, unknown {extra}); use None to freeze a parameter"
            )
        cast: dict[str, Any] = {}
        for n in self.names:
            g = grads[n]
            if g is None:
                cast[n] = None
                continue
            arr = self._cast(g, f"grads[{n!r}]")
            if arr.shape != self.shapes[n]:
                raise AdapterError(
                    f"{self.name}: grads[{n!r}] has shape {arr.shape}, parameter {self.shapes[n]}"
                )
            cast[n] = -arr if self.negate else arr
        sched = self.config.lr_schedule
        for lr, names, inst in self.parts:
            if not isinstance(sched, Constant):
                inst.set_lr(lr * float(sched(self.steps)))
            inst.step({n: cast[n] for n in names})
        self.steps += 1

    @staticmethod
    def _params_of(inst: Any) -> Mapping[str, Any]:
        p = inst.params
        out: Mapping[str, Any] = p() if callable(p) else p
        return out

    def params(self) -> dict[str, Array]:
        out: dict[str, Array] = {}
        for _, names, inst in self.parts:
            p = self._params_of(inst)
            for n in names:
                out[n] = np.array(p[n], dtype=np.float64, copy=True).reshape(self.shapes[n])
        return {n: out[n] for n in self.names}

    # -- canonical state ----------------------------------------------------------------------
    def probe_label(self) -> str:
        return str(self.name)

    def _probe(self) -> str | None:
        cls = self.wrapper.target
        if not (_has(cls, "adam_state") and _has(cls, "load_adam_state")):
            return f"{cls.__name__} has no adam_state() / load_adam_state() (the numpy protocol's extras)"
        try:
            probe = NumpyRun(
                self.wrapper, self.config.replace(groups=()), {PROBE: np.zeros(PROBE_SHAPE)}, self.dtype
            )
            probe.step({PROBE: np.ones(PROBE_SHAPE)})
            st = probe.parts[0][2].adam_state()
            step = st["step"][PROBE] if isinstance(st["step"], Mapping) else st["step"]
            vmax = st.get("v_max")
            return check_first_step(
                st["m"][PROBE],
                st["v"][PROBE],
                None if vmax is None else vmax[PROBE],
                int(step),
                self.config,
                self.dtype,
            )
        except Exception as exc:
            return f"the probe failed: {type(exc).__name__}: {exc}"

    def state(self) -> CanonicalState:
        self.layout("state")
        m: dict[str, Array] = {}
        v: dict[str, Array] = {}
        vmax: dict[str, Array] | None = {} if self.config.amsgrad else None
        counts: dict[str, int] = {}
        per_param = False
        for _, names, inst in self.parts:
            st = inst.adam_state()
            for n in names:
                m[n] = np.array(st["m"][n], dtype=np.float64, copy=True).reshape(self.shapes[n])
                v[n] = np.array(st["v"][n], dtype=np.float64, copy=True).reshape(self.shapes[n])
                if vmax is not None and st.get("v_max") is not None:
                    vmax[n] = np.array(st["v_max"][n], dtype=np.float64, copy=True).reshape(self.shapes[n])
                if isinstance(st["step"], Mapping):
                    per_param = True
                    counts[n] = int(st["step"][n])
                else:
                    counts[n] = int(st["step"])
        return CanonicalState(
            step=self.steps,
            m={n: m[n] for n in self.names},
            v={n: v[n] for n in self.names},
            v_max=None if vmax is None else {n: vmax[n] for n in self.names if n in vmax},
            param_steps={n: counts[n] for n in self.names} if per_param else None,
        )

    def param_steps(self) -> dict[str, int]:
        st = self.state()
        return dict(st.param_steps) if st.param_steps is not None else dict.fromkeys(self.names, st.step)

    def set_state(self, params: Mapping[str, Array], state: CanonicalState) -> None:
        self.layout("teacher_forced")
        own = state.param_steps or {}
        for _, names, inst in self.parts:
            per_param = isinstance(inst.adam_state()["step"], Mapping)
            doc: dict[str, Any] = {
                "params": {n: self._cast(params[n], f"params[{n!r}]") for n in names},
                "step": {n: int(own.get(n, state.step)) for n in names} if per_param else int(state.step),
                "m": {n: self._cast(state.m[n], f"state.m[{n!r}]") for n in names},
                "v": {n: self._cast(state.v[n], f"state.v[{n!r}]") for n in names},
                "v_max": None
                if state.v_max is None
                else {n: self._cast(state.v_max[n], f"state.v_max[{n!r}]") for n in names},
            }
            inst.load_adam_state(doc)
        self.steps = int(state.step)

    # -- save / load --------------------------------------------------------------------------
    def _check_save_load(self) -> None:
        cls = self.wrapper.target
        if not (_has(cls, "state_dict") and _has(cls, "load_state_dict")):
            raise AdapterError(
                f"{self.name}: save/load needs state_dict() and load_state_dict() on {cls.__name__}"
            )

    def save(self, path: Path) -> None:
        """Each instance's ``state_dict()`` as ``.npz`` + JSON (no pickle)."""
        self._check_save_load()
        arrays: dict[str, Any] = {}
        docs = [encode(inst.state_dict(), arrays, f"part{i}") for i, (_, _, inst) in enumerate(self.parts)]
        meta = {
            "format": FORMAT,
            "adapter": self.name,
            "dtype": self.dtype,
            "steps": self.steps,
            "names": [names for _, names, _ in self.parts],
            "parts": docs,
        }
        save_arrays(path, arrays, meta)

    def load(self, path: Path) -> None:
        self._check_save_load()
        arrays, meta = load_arrays(path)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise AdapterError(f"{self.name}: {str(path)!r} is not a {FORMAT} file")
        if meta["adapter"] != self.name or meta["dtype"] != self.dtype:
            raise AdapterError(
                f"{self.name}: {str(path)!r} was saved by {meta['adapter']} ({meta['dtype']}); "
                f"this run is {self.name} ({self.dtype})"
            )
        if meta["names"] != [names for _, names, _ in self.parts]:
            raise AdapterError(f"{self.name}: {str(path)!r} holds parameters {meta['names']}")
        for (_, _, inst), doc in zip(self.parts, meta["parts"], strict=True):
            inst.load_state_dict(decode(doc, arrays))
        self.steps = int(meta["steps"])

    def close(self) -> None:
        self.parts = []


class NumpyWrapper(GenericAdapter):
    """The adapter of ``numpy:pkg.mod.Class`` (the protocol: this module's docstring)."""

    framework = "numpy"

    def __init__(self, spec: AdapterSpec, cls: Any) -> None:
        if not (isinstance(cls, type) and _has(cls, "step")):
            raise AdapterError(
                f"adapter spec {spec.spec!r}: {spec.module}.{spec.attr} is not a class with a step() "
                f"method (the numpy optimizer protocol; got {type(cls).__name__})"
            )
        sig = read_signature(cls, spec.spec, skip_first=True)
        caps = Capabilities(spec.spec, sig, spec.claimed_profile, dict(spec.kwargs))
        saves = _has(cls, "state_dict") and _has(cls, "load_state_dict")
        caps.features = feature_table(
            caps,
            {
                "lr_schedule": N if _has(cls, "set_lr") else U,
                "wd_schedule": U,
                "groups": E,
                "frozen": N,
                "save_load": N if saves else U,
            },
        )
        caps.group_lr = caps.group_wd = True
        if not _has(cls, "set_lr"):
            caps.notes.append(f"lr_schedule: {cls.__name__} has no set_lr(lr) method")
        caps.notes.append("wd_schedule: only a Constant schedule (folded into the weight decay)")
        if not saves:
            caps.notes.append(f"save_load: {cls.__name__} has no state_dict() / load_state_dict()")
        dtypes: tuple[str, ...] = ("float64", "float32", "float16")
        if importlib.util.find_spec("ml_dtypes") is not None:
            dtypes = (*dtypes, "bfloat16")
        super().__init__(
            spec,
            cls,
            caps,
            implementations={"default": {}},
            devices=("cpu",),
            dtypes=dtypes,
            notes="groups: one instance per (lr, weight_decay); teacher forcing needs adam_state() "
            "and load_adam_state()",
        )

    def framework_versions(self) -> dict[str, str]:
        return {"numpy": np.__version__}

    def create(
        self,
        config: AdamWConfig,
        params: Mapping[str, Array],
        *,
        implementation: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> NumpyRun:
        self.to_native(config, implementation)
        self.check_dtype_device(dtype, device)
        if device != "cpu":
            raise AdapterError(f"{self.info.name}: device {device!r}: numpy optimizers run on the cpu only")
        return NumpyRun(self, config, params, dtype)
