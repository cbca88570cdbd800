r"""``optax:pkg.mod.factory``: any function returning an ``optax.GradientTransformation``.

The live optimizer is an :class:`~adapters.optax.run.OptaxRun` whose transformation is the
factory's (``jit``/``nojit`` implementations, frozen parameters emulated by restoring their
leaves, pickle-free save/load of the state leaves). What the wrapper discovers:

* **lr_schedule** / **wd_schedule**: native where the learning rate / weight decay argument is
  annotated as taking a callable (Optax's ``ScalarOrSchedule``). The schedule is a table lookup
  ``table[count]`` with ``table[c] = fl(fl(lr) * fl(eta(c)))`` in the parameter dtype (works
  under ``jit``; the table is rebuilt, longer, before the count reaches its end), at Optax's own
  count (before the increment).
* **groups**: emulated with ``optax.multi_transform``: one factory call per distinct
  ``(lr, weight_decay)`` of ``config.group_for``.
* **maximize**: the factory's ``maximize`` argument, else emulated (the gradient is negated).
* **state read-back / teacher forcing**: where the state pytree holds a ``ScaleByAdamState``-like
  node (fields ``count``, ``mu``, ``nu``, optionally ``nu_max``) and the probe
  (:mod:`adapters.generic.base`) finds the spec's moments in it.

float64 runs turn on ``jax_enable_x64`` for the process (before creating JAX arrays).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from adamw_ref import AdamWConfig, Constant
from adapters.capabilities import decay_active
from adapters.errors import AdapterError, FrameworkUnavailable
from adapters.generic.base import PROBE, PROBE_SHAPE, GenericAdapter, check_first_step, probe_refusal
from adapters.generic.capabilities import Capabilities, feature_table, fold_constant_lr, read_signature
from adapters.generic.spec import AdapterSpec
from adapters.optax.capabilities import partition
from adapters.optax.run import OptaxRun, _adam_nodes, _find_adam, schedule_values
from adapters.protocol import Array, CanonicalState, Support

N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED
IMPLEMENTATIONS: dict[str, dict[str, Any]] = {"jit": {}, "nojit": {}}


def import_optax(name: str, x64: bool = False) -> Any:
    try:
        import jax
        import optax
    except ImportError as exc:
        raise FrameworkUnavailable(name, f"optax/jax not installed: {exc}") from None
    config: Any = jax.config
    config.update("jax_default_matmul_precision", "highest")
    if x64:
        config.update("jax_enable_x64", True)
    return optax


class GenericOptaxRun(OptaxRun):
    """An :class:`OptaxRun` whose transformation comes from the wrapped factory."""

    def __init__(
        self,
        wrapper: OptaxWrapper,
        config: AdamWConfig,
        params: Mapping[str, Array],
        implementation: str,
        device: str,
        dtype: str,
    ) -> None:
        self.wrapper = wrapper
        self.spec_config = fold_constant_lr(config)
        self._steps = 0
        self._layout: str | None = None
        self._probed = False
        native_max = wrapper.caps.native_maximize()
        # OptaxRun negates the gradient when its config says maximize
        run_cfg = config.replace(maximize=config.maximize and not native_max)
        super().__init__(run_cfg, params, implementation, device, dtype)

    # -- the transformation -------------------------------------------------------------------
    def make_transform(self, horizon: int, mu_dtype: str | None) -> Any:
        import optax

        cfg = self.spec_config
        parts = partition(cfg, self.names)
        if len(parts) == 1:
            return self._one(cfg, horizon)
        labels = {n: label for label, (_, ns) in parts.items() for n in ns}
        return optax.multi_transform(
            {label: self._one(sub, horizon) for label, (sub, _) in parts.items()}, labels
        )

    def _one(self, cfg: AdamWConfig, horizon: int) -> Any:
        caps = self.wrapper.caps
        lr: Any = None
        wd: Any = None
        if not isinstance(cfg.lr_schedule, Constant):
            lr_tab = schedule_values([cfg.lr_schedule(c) for c in range(horizon)], cfg.lr, self.dtype)
            lr = lambda count: lr_tab[count]  # noqa: E731
        if decay_active(cfg) and not isinstance(cfg.wd_schedule, Constant):
            wd_tab = schedule_values(
                [cfg.wd_schedule(c) for c in range(horizon)], cfg.weight_decay, self.dtype
            )
            wd = lambda count: wd_tab[count]  # noqa: E731
        kwargs = caps.kwargs(cfg, lr=lr, weight_decay=wd)
        try:
            tx = self.wrapper.target(**kwargs)
        except Exception as exc:
            raise AdapterError(
                f"{self.wrapper.info.name}: the factory rejected {sorted(kwargs)}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
            raise AdapterError(
                f"{self.wrapper.info.name}: the factory returned {type(tx).__name__}, not an "
                "optax.GradientTransformation (init, update)"
            )
        return tx

    # -- counts -------------------------------------------------------------------------------
    def _count(self) -> int:
        node = _count_node(self.opt_state)
        return self._steps if node is None else int(node.count)

    def step(self, grads: Mapping[str, Array | None]) -> None:
        super().step(grads)
        self._steps += 1

    # -- state --------------------------------------------------------------------------------
    def layout(self, what: str) -> None:
        """Raise UnsupportedConfig naming ``what`` unless the probe found the spec's state."""
        if not self._probed:
            self._probed = True
            if _find_adam(self.opt_state) is None:
                self._layout = "no ScaleByAdamState-like node (count, mu, nu) in the state pytree"
            else:
                self._layout = self._probe()
        if self._layout is not None:
            raise probe_refusal(self.wrapper.info.name, what, self._layout)

    def _probe(self) -> str | None:
        cfg = self.spec_config.replace(groups=())
        probe = GenericOptaxRun(self.wrapper, cfg, {PROBE: np.zeros(PROBE_SHAPE)}, "nojit", "cpu", self.dtype)
        try:
            probe.step({PROBE: np.ones(PROBE_SHAPE)})
            node = _find_adam(probe.opt_state)
            vmax = getattr(node, "nu_max", None)
            return check_first_step(
                np.asarray(node.mu[PROBE]),
                np.asarray(node.nu[PROBE]),
                None if vmax is None else np.asarray(vmax[PROBE]),
                int(node.count),
                self.spec_config,
                self.dtype,
            )
        except Exception as exc:
            return f"the probe step failed: {type(exc).__name__}: {exc}"

    def state(self) -> CanonicalState:
        self.layout("state")
        return super().state()

    def set_state(self, params: Mapping[str, Array], state: CanonicalState) -> None:
        self.layout("teacher_forced")
        super().set_state(params, state)
        self._steps = int(state.step)


def _count_node(tree: Any) -> Any:
    """The first namedtuple node with a ``count`` field (None if the state keeps no count)."""
    nodes = _adam_nodes(tree)
    if nodes:
        return nodes[0]
    stack = [tree]
    while stack:
        node = stack.pop(0)
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            if "count" in node._fields:
                return node
            stack.extend(getattr(node, f) for f in node._fields)
        elif isinstance(node, tuple | list):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
    return None


class OptaxWrapper(GenericAdapter):
    """The adapter of ``optax:pkg.mod.factory``."""

    framework = "optax"

    def __init__(self, spec: AdapterSpec, factory: Any) -> None:
        import_optax(spec.spec)
        if not callable(factory) or isinstance(factory, type):
            raise AdapterError(
                f"adapter spec {spec.spec!r}: {spec.module}.{spec.attr} is not a function returning an "
                f"optax.GradientTransformation (got {type(factory).__name__})"
            )
        sig = read_signature(factory, spec.spec, skip_first=False)
        caps = Capabilities(spec.spec, sig, spec.claimed_profile, dict(spec.kwargs))
        names = sig.names
        lr_sched = "lr" in names and sig.accepts_callable("lr") and "lr" not in caps.pinned
        wd_sched = (
            "weight_decay" in names
            and sig.accepts_callable("weight_decay")
            and "weight_decay" not in caps.pinned
        )
        caps.features = feature_table(
            caps,
            {
                "lr_schedule": N if lr_sched else U,
                "wd_schedule": N if wd_sched else U,
                "groups": E if "lr" in names and "lr" not in caps.pinned else U,
                "frozen": E,
                "save_load": N,
            },
        )
        caps.group_lr = caps.group_wd = caps.features["groups"] is E
        if not lr_sched:
            caps.notes.append("lr_schedule: the learning rate argument is not annotated as taking a callable")
        if not wd_sched:
            caps.notes.append("wd_schedule: the weight decay argument is not annotated as taking a callable")
        super().__init__(
            spec,
            factory,
            caps,
            implementations=IMPLEMENTATIONS,
            devices=("cpu", "cuda"),
            dtypes=("float32", "float64", "bfloat16", "float16"),
            notes="groups via optax.multi_transform; frozen parameters: zero gradient, then their "
            "leaves are restored (counts still advance); float64 turns on jax_enable_x64",
        )

    def framework_versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        out: dict[str, str] = {}
        for pkg in ("optax", "jax", "jaxlib"):
            try:
                out[pkg] = version(pkg)
            except PackageNotFoundError:
                out[pkg] = "not installed"
        return out

    def create(
        self,
        config: AdamWConfig,
        params: Mapping[str, Array],
        *,
        implementation: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> GenericOptaxRun:
        self.to_native(config, implementation)
        self.check_dtype_device(dtype, device)
        import_optax(self.info.name, x64=dtype == "float64")
        return GenericOptaxRun(self, config, params, implementation or "jit", device, dtype)
