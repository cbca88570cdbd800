r"""Building the Optax transformation for a config, and one live run of it (an OptimizerRun).

The chain is chosen by :func:`adapters.optax.adapter.plan`. Schedules are ``table[count]`` lookups
in the parameter dtype; the tables cover ``horizon`` counts and are rebuilt (and the step re-jitted)
with a doubled horizon before the count reaches the end, since ``jnp`` indexing would clamp.
Frozen parameters (``None`` gradients) are emulated: the update runs with a zero gradient, then
the frozen parameters and their moment leaves are put back (the counts still advance, as Optax's
single count would).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from adamw_ref import AdamWConfig
from adamw_ref.errors import InputError
from adamw_ref.knobs import EpsPlacement, ScheduleCount
from adapters.arrays import as_float64, load_arrays, numpy_dtype, save_arrays
from adapters.errors import AdapterError, FrameworkUnavailable
from adapters.optax.capabilities import IMPL_MODES, NAME, partition, plan
from adapters.protocol import Array, CanonicalState


def scale_by_adam_variant(
    b1: float, b2: float, eps: float, eps_root: float, *, eps_hat: bool, bias_correction: bool, offset: int
) -> Any:
    r"""``scale_by_adam`` with eps before bias correction, no correction, or ``k = t + offset``.

    Same moment updates as Optax (``optax.tree.update_moment``); then, in the reference's order,
    :math:`u=(m/bc_1)/(\sqrt{v+\epsilon_{root}}+\hat\epsilon)\cdot\sqrt{bc_2}` (eps hat) or
    :math:`u=(m/bc_1)/(\sqrt{v/bc_2+\epsilon_{root}}+\epsilon)`. State: ``ScaleByAdamState``.
    """
    import jax
    import jax.numpy as jnp
    import optax

    def init_fn(params: Any) -> Any:
        return optax.ScaleByAdamState(
            count=jnp.zeros([], jnp.int32), mu=optax.tree.zeros_like(params), nu=optax.tree.zeros_like(params)
        )

    def update_fn(updates: Any, state: Any, params: Any = None) -> Any:
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count_inc = state.count + 1
        k = count_inc + offset

        def one(m: Any, v: Any) -> Any:
            if not bias_correction:
                return m / (jnp.sqrt(v + eps_root) + eps)
            bc1 = (1 - b1**k).astype(m.dtype)
            bc2 = (1 - b2**k).astype(m.dtype)
            if eps_hat:
                return (m / bc1) / (jnp.sqrt(v + eps_root) + eps) * jnp.sqrt(bc2)
            return (m / bc1) / (jnp.sqrt(v / bc2 + eps_root) + eps)

        out = jax.tree.map(one, mu, nu)
        return out, optax.ScaleByAdamState(count=count_inc, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def schedule_values(values: list[float], base: float, dtype: str) -> Any:
    """``fl(fl(base) * fl(value))`` in ``dtype`` as a jnp array (the reference's rounding)."""
    import jax.numpy as jnp

    np_dt = numpy_dtype(dtype)
    arr = (np.asarray(base).astype(np_dt) * np.asarray(values).astype(np_dt)).astype(np_dt)
    return jnp.asarray(arr)


def build_transform(
    config: AdamWConfig, names: list[str], dtype: str, horizon: int, mu_dtype: str | None = None
) -> Any:
    """The GradientTransformation realising ``config`` with schedule tables of ``horizon``.

    Groups with their own lr / weight decay: ``optax.multi_transform`` over one transform per
    ``(lr, weight_decay)`` label (:func:`adapters.optax.adapter.partition`). ``mu_dtype`` is
    passed to ``scale_by_adam`` (the first moment is stored in that format).
    """
    import jax.numpy as jnp
    import optax

    c = config
    p = plan(c)
    if p["partition"]:
        parts = partition(c, names)
        labels = {n: label for label, (_, ns) in parts.items() for n in ns}
        return optax.multi_transform(
            {
                label: build_transform(sub, names, dtype, horizon, mu_dtype)
                for label, (sub, _) in parts.items()
            },
            labels,
        )
    mu: Any = None if mu_dtype is None else getattr(jnp, mu_dtype)
    shift = 1 if c.schedule_count is ScheduleCount.POST_INCREMENT else 0
    etas = [c.lr_schedule(i + shift) for i in range(horizon)]
    omegas = [c.wd_schedule(i + shift) for i in range(horizon)]
    lr_tab = schedule_values(etas, c.lr, dtype)
    wd_tab = schedule_values(omegas, c.weight_decay, dtype)
    eta_tab = schedule_values(etas, 1.0, dtype)

    lr: Any = (lambda count: lr_tab[count]) if p["lr_schedule"] else c.lr
    wd: Any = (lambda count: wd_tab[count]) if p["wd_schedule"] else c.weight_decay
    neg_wd: Any = (lambda count: -wd_tab[count]) if p["wd_schedule"] else -c.weight_decay
    mask_map = {n: c.group_for(n)[1] != 0.0 for n in names}
    mask = None if all(mask_map.values()) else mask_map

    if p["kind"] == "adamw":
        return optax.adamw(
            learning_rate=lr,
            b1=c.beta1,
            b2=c.beta2,
            eps=c.eps,
            eps_root=c.eps_root,
            weight_decay=0.0 if p["decay"] is None else wd,
            mask=mask,
            nesterov=c.nesterov,
            mu_dtype=mu,
        )
    if p["adam"] == "amsgrad":
        adam = optax.scale_by_amsgrad(b1=c.beta1, b2=c.beta2, eps=c.eps, eps_root=c.eps_root)
    elif p["adam"] == "custom":
        adam = scale_by_adam_variant(
            c.beta1,
            c.beta2,
            c.eps,
            c.eps_root,
            eps_hat=c.eps_placement is EpsPlacement.BEFORE_BIAS_CORRECTION,
            bias_correction=c.bias_correction,
            offset=c.bias_correction_offset,
        )
    else:
        adam = optax.scale_by_adam(
            b1=c.beta1, b2=c.beta2, eps=c.eps, eps_root=c.eps_root, nesterov=c.nesterov, mu_dtype=mu
        )
    decay = p["decay"]
    if decay is None:
        return optax.chain(adam, optax.scale_by_learning_rate(lr))
    if decay == "lr":
        return optax.chain(adam, optax.add_decayed_weights(wd, mask), optax.scale_by_learning_rate(lr))
    if decay == "schedule_multiplier":
        return optax.chain(
            adam,
            optax.scale(c.lr),
            optax.add_decayed_weights(wd, mask),
            optax.scale_by_schedule(lambda count: -eta_tab[count]),
        )
    if decay == "unscaled":
        return optax.chain(adam, optax.scale_by_learning_rate(lr), optax.add_decayed_weights(neg_wd, mask))
    # coupled_l2: the decay enters the gradient before the moments.
    return optax.chain(optax.add_decayed_weights(wd, mask), adam, optax.scale_by_learning_rate(lr))


def _is_adam_state(node: Any) -> bool:
    return hasattr(node, "_fields") and "mu" in node._fields and "nu" in node._fields


def _adam_nodes(tree: Any) -> list[Any]:
    """Every scale_by_adam-like state in ``tree`` (several under ``multi_transform``)."""
    if _is_adam_state(tree):
        return [tree]
    items = tree.values() if isinstance(tree, dict) else tree if isinstance(tree, tuple) else ()
    return [node for item in items for node in _adam_nodes(item)]


def _find_adam(tree: Any) -> Any:
    nodes = _adam_nodes(tree)
    return nodes[0] if nodes else None


def _is_leaf(x: Any) -> bool:
    """A real array (not optax's ``MaskedNode`` placeholder of multi_transform)."""
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _merged(tree: Any, field: str, names: list[str]) -> dict[str, Any] | None:
    """``field`` (mu, nu, nu_max) per name, each taken from the adam state that holds it."""
    out: dict[str, Any] = {}
    for node in _adam_nodes(tree):
        part = getattr(node, field, None)
        if part is None:
            return None
        out.update({n: part[n] for n in names if _is_leaf(part[n])})
    return out


def _rebuild(tree: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to every namedtuple node (after rebuilding its children)."""
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        nt: Any = tree
        node = nt._replace(**{f: _rebuild(getattr(tree, f), fn) for f in tree._fields})
        return fn(node)
    if isinstance(tree, tuple):
        return tuple(_rebuild(x, fn) for x in tree)
    if isinstance(tree, dict) and not _is_adam_state(tree):
        return {k: _rebuild(v, fn) for k, v in tree.items()}
    return tree


class OptaxRun:
    """A live Optax transformation over a dict of named jnp arrays."""

    def __init__(
        self, config: AdamWConfig, params: Mapping[str, Array], implementation: str, device: str, dtype: str
    ) -> None:
        if not isinstance(params, Mapping) or not params:
            raise InputError("params", params, "must be a non-empty mapping of name -> array")
        self.config, self.dtype, self.implementation = config, dtype, implementation
        self.names = list(params)
        self.device = self._device(device)
        self.np_dtype = numpy_dtype(dtype)
        arrays = {n: as_float64(params[n], f"params[{n!r}]") for n in self.names}
        self.shapes = {n: a.shape for n, a in arrays.items()}
        self._p = {n: self._put(a) for n, a in arrays.items()}
        self.horizon = 0
        self._build(1024)
        self.opt_state = self.tx.init(self._p)

    def _device(self, device: str) -> Any:
        import jax

        if device == "cpu":
            return jax.devices("cpu")[0]
        if device in ("cuda", "gpu"):
            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            if gpus:
                return gpus[0]
        raise FrameworkUnavailable(NAME, f"device={device!r}: jax sees no such device")

    def _put(self, arr: np.ndarray[Any, Any]) -> Any:
        import jax

        return jax.device_put(np.asarray(arr).astype(self.np_dtype), self.device)

    def _build(self, horizon: int) -> None:
        import jax
        import optax

        self.horizon = horizon
        jit, mu_dtype = IMPL_MODES[self.implementation]
        self.tx = tx = self.make_transform(horizon, mu_dtype)

        def update(params: Any, grads: Any, state: Any) -> Any:
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        self._update = jax.jit(update) if jit else update

    def make_transform(self, horizon: int, mu_dtype: str | None) -> Any:
        """The transformation for schedule tables of ``horizon`` counts (a seam: the generic
        wrapper builds a user factory's transformation instead)."""
        return build_transform(self.config, self.names, self.dtype, horizon, mu_dtype)

    def _count(self) -> int:
        return int(_find_adam(self.opt_state).count)

    # -- protocol ----------------------------------------------------------------------------
    def step(self, grads: Mapping[str, Array | None]) -> None:
        missing = [n for n in self.names if n not in grads]
        extra = [n for n in grads if n not in self.shapes]
        if missing or extra:
            raise InputError("grads", sorted(grads), f"missing {missing}, unknown {extra}")
        frozen = {n for n in self.names if grads[n] is None}
        tree = {}
        for n in self.names:
            g = grads[n]
            arr = np.zeros(self.shapes[n]) if g is None else as_float64(g, f"grads[{n!r}]")
            if arr.shape != self.shapes[n]:
                raise InputError(f"grads[{n!r}]", arr.shape, f"expected {self.shapes[n]}")
            tree[n] = self._put(-arr if self.config.maximize else arr)
        if self._count() + 2 >= self.horizon:
            self._build(2 * self.horizon)
        old_params, old_state = self._p, self.opt_state
        new_params, new_state = self._update(self._p, tree, self.opt_state)
        if frozen:
            new_params = {n: old_params[n] if n in frozen else new_params[n] for n in self.names}
            new_state = self._restore(new_state, old_state, frozen)
        self._p, self.opt_state = new_params, new_state

    def _restore(self, new: Any, old: Any, frozen: set[str]) -> Any:
        """Put the frozen names' entries of every per-parameter dict back from ``old``."""
        if isinstance(new, dict) and set(new) == set(self.names):
            return {n: old[n] if n in frozen else new[n] for n in new}
        if isinstance(new, dict):
            return {k: self._restore(new[k], old[k], frozen) for k in new}
        if isinstance(new, tuple) and hasattr(new, "_fields"):
            nt: Any = new
            return nt._replace(
                **{f: self._restore(getattr(new, f), getattr(old, f), frozen) for f in new._fields}
            )
        if isinstance(new, tuple):
            return tuple(self._restore(a, b, frozen) for a, b in zip(new, old, strict=True))
        return new

    def _np(self, x: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.asarray(np.asarray(x).astype(np.float64), dtype=np.float64)

    def params(self) -> dict[str, Array]:
        return {n: self._np(p) for n, p in self._p.items()}

    def state(self) -> CanonicalState:
        node = _find_adam(self.opt_state)
        mu, nu = _merged(self.opt_state, "mu", self.names), _merged(self.opt_state, "nu", self.names)
        vmax = _merged(self.opt_state, "nu_max", self.names)
        assert mu is not None and nu is not None
        return CanonicalState(
            step=int(node.count),
            m={n: self._np(mu[n]) for n in self.names},
            v={n: self._np(nu[n]) for n in self.names},
            v_max=None if vmax is None else {n: self._np(vmax[n]) for n in self.names},
        )

    def save(self, path: Path) -> None:
        """The ``opt_state`` leaves (``jax.tree_util`` order) and the parameters, no pickle."""
        import jax

        leaves, treedef = jax.tree_util.tree_flatten(self.opt_state)
        arrays = {f"leaf{i:04d}": np.asarray(x) for i, x in enumerate(leaves)}
        arrays.update({f"param{i:04d}": np.asarray(self._p[n]) for i, n in enumerate(self.names)})
        meta = {
            "format": "adamw-ref/optax",
            "treedef": str(treedef),
            "params": self.names,
            "dtype": self.dtype,
        }
        save_arrays(path, arrays, meta)

    def load(self, path: Path) -> None:
        import jax

        arrays, meta = load_arrays(path)
        leaves, treedef = jax.tree_util.tree_flatten(self.opt_state)
        if not isinstance(meta, dict) or meta.get("format") != "adamw-ref/optax":
            raise AdapterError(f"{str(path)!r} is not an optax adapter state file")
        if meta.get("treedef") != str(treedef) or meta.get("params") != self.names:
            raise AdapterError(f"{str(path)!r}: state structure differs from this optimizer's")
        new = [jax.device_put(arrays[f"leaf{i:04d}"], self.device) for i in range(len(leaves))]
        for i, (a, b) in enumerate(zip(new, leaves, strict=True)):
            if a.shape != b.shape or a.dtype != b.dtype:
                raise AdapterError(
                    f"{str(path)!r}: leaf {i} is {a.dtype}{a.shape}, expected {b.dtype}{b.shape}"
                )
        self.opt_state = jax.tree_util.tree_unflatten(treedef, new)
        self._p = {n: jax.device_put(arrays[f"param{i:04d}"], self.device) for i, n in enumerate(self.names)}
        while self._count() + 2 >= self.horizon:
            self._build(2 * self.horizon)

    def set_state(self, params: Mapping[str, Array], state: CanonicalState) -> None:
        import jax.numpy as jnp

        node = _find_adam(self.opt_state)
        if (state.v_max is None) != (getattr(node, "nu_max", None) is None):
            raise InputError(
                "state.v_max", state.v_max is not None, "does not match this optimizer's amsgrad setting"
            )
        put = {n: self._put(as_float64(params[n], f"params[{n!r}]")) for n in self.names}

        def fix(n: Any) -> Any:
            if "count" in n._fields:
                n = n._replace(count=jnp.asarray(state.step, dtype=n.count.dtype))
            if _is_adam_state(n):

                def put(old: Any, new: Any, k: str) -> Any:
                    return self._put(new[k]).astype(old[k].dtype) if _is_leaf(old[k]) else old[k]

                n = n._replace(
                    mu={k: put(n.mu, state.m, k) for k in self.names},
                    nu={k: put(n.nu, state.v, k) for k in self.names},
                )
                if state.v_max is not None:
                    n = n._replace(nu_max={k: put(n.nu_max, state.v_max, k) for k in self.names})
            return n

        self._p = put
        self.opt_state = _rebuild(self.opt_state, fix)
        while self._count() + 2 >= self.horizon:
            self._build(2 * self.horizon)

    def close(self) -> None:
        self._p = {}
