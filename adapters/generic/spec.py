r"""The grammar of adapter specs, parsed without importing any framework.

::

    spec    := NAME                                built-in adapter or entry-point name
             | MODULE ":" ATTR                     plug-in factory (package.module:factory)
             | KIND ":" TARGET [ "?" ARGS ]        generic wrapper (this package)
    KIND    := torch | optax | keras | keras-jax | keras-tensorflow | keras-torch | mlx | numpy
    TARGET  := dotted.module.Name                  module = all but the last component
             | dotted.module:Name.Inner            explicit module, attribute path after ':'
    ARGS    := KEY "=" VALUE { "&" KEY "=" VALUE }
    KEY     := a Python identifier                 ``profile`` is reserved (see below)
    VALUE   := percent-decoded text, parsed as JSON (true, 0.01, [0.9, 0.99], null, "x");
               text that is not JSON stays a string (adamw, bfloat16)

``torch:torch.optim.AdamW`` has a known kind prefix, so it is a wrapper spec; ``mypkg.mod:factory``
has none, so it is a plug-in factory. (A plug-in module literally named ``torch``, ``optax``,
``keras``, ``keras-*``, ``mlx`` or ``numpy`` cannot be named by a plug-in spec: the kinds win.)

``ARGS`` are constructor keyword arguments, passed as given. One key is reserved:
``profile=NAME`` names the profile whose semantics the optimizer claims (default per kind:
:data:`DEFAULT_PROFILES`); it is not passed to the constructor. ``keras:TARGET`` stands for
every installed Keras backend (:func:`adapters.registry.expand_spec` turns it into the
``keras-<backend>:TARGET`` specs); a process loads only one backend.

Every error is an :class:`~adapters.errors.AdapterError` with a one-line message that names the
spec.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from adamw_ref.profiles import PROFILES, profile_name
from adapters.errors import AdapterError

#: The generic wrapper kinds (spec prefixes before ``:``).
WRAPPER_KINDS: tuple[str, ...] = (
    "torch",
    "optax",
    "keras",
    "keras-jax",
    "keras-tensorflow",
    "keras-torch",
    "mlx",
    "numpy",
)
#: All kinds :func:`adapters.registry.parse_spec` returns.
SPEC_KINDS: tuple[str, ...] = ("builtin", "entry_point", "plugin", *WRAPPER_KINDS)
#: The profile a wrapper kind claims when the spec names none (``?profile=NAME``).
DEFAULT_PROFILES: dict[str, str] = {
    "torch": "torch",
    "optax": "optax",
    "keras": "keras3",
    "keras-jax": "keras3",
    "keras-tensorflow": "keras3",
    "keras-torch": "keras3",
    "mlx": "mlx",
    "numpy": "torch",
}
#: Keras backends of the ``keras-<backend>`` kinds, in the order ``keras:`` expands to.
KERAS_KINDS: dict[str, str] = {
    "keras-tensorflow": "tensorflow",
    "keras-jax": "jax",
    "keras-torch": "torch",
}
RESERVED_KEYS: frozenset[str] = frozenset({"profile"})


@dataclass(frozen=True)
class AdapterSpec:
    """A parsed adapter spec.

    ``kind`` is one of :data:`SPEC_KINDS`; ``module`` and ``attr`` locate the factory (built-in,
    entry point, plug-in) or the wrapped optimizer (wrapper kinds); ``kwargs`` are the
    constructor overrides of a wrapper spec (``?key=value``, JSON-decoded) and ``profile`` the
    claimed profile (``?profile=NAME``, canonical name) or None for the kind's default.
    ``spec`` is the text as given.
    """

    spec: str
    kind: str
    module: str
    attr: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    profile: str | None = None

    @property
    def is_wrapper(self) -> bool:
        return self.kind in WRAPPER_KINDS

    @property
    def backend(self) -> str | None:
        """The Keras backend a ``keras-<backend>`` spec runs on (None for the other kinds)."""
        return KERAS_KINDS.get(self.kind)

    @property
    def claimed_profile(self) -> str:
        """``profile`` or the kind's default (wrapper kinds only)."""
        return self.profile or DEFAULT_PROFILES[self.kind]

    def with_kind(self, kind: str) -> str:
        """This spec's text with another wrapper kind prefix (``keras:X`` -> ``keras-jax:X``)."""
        _, _, rest = self.spec.partition(":")
        return f"{kind}:{rest}"


def _bad(spec: str, reason: str) -> AdapterError:
    return AdapterError(f"adapter spec {spec!r}: {reason}")


def _dotted(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def split_target(spec: str, target: str, what: str) -> tuple[str, str]:
    """``(module, attr)`` of ``pkg.mod.Name`` or ``pkg.mod:Name.Inner``."""
    if ":" in target:
        module, _, attr = target.partition(":")
    else:
        module, _, attr = target.rpartition(".")
    if not _dotted(module) or not _dotted(attr):
        raise _bad(spec, f"expected {what} (got {target!r})")
    return module, attr


def parse_value(text: str) -> Any:
    """A ``?key=value`` value: JSON if it parses, else the (percent-decoded) string."""
    raw = unquote(text)
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_args(spec: str, query: str) -> tuple[dict[str, Any], str | None]:
    """``key=value&...`` -> (constructor kwargs, claimed profile or None)."""
    kwargs: dict[str, Any] = {}
    profile: str | None = None
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise _bad(spec, f"argument {item!r} is not key=value with a Python identifier as key")
        if value == "":
            raise _bad(spec, f"argument {key!r} has an empty value")
        if key in kwargs or (key == "profile" and profile is not None):
            raise _bad(spec, f"argument {key!r} is given twice")
        if key == "profile":
            name = profile_name(unquote(value))
            if name not in PROFILES:
                raise _bad(spec, f"profile {value!r} unknown; expected one of {sorted(PROFILES)}")
            profile = name
            continue
        kwargs[key] = parse_value(value)
    return kwargs, profile


def parse_wrapper(spec: str) -> AdapterSpec:
    """Parse ``KIND:TARGET[?ARGS]`` (the caller checked that the prefix is a wrapper kind)."""
    kind, _, rest = spec.partition(":")
    if kind not in WRAPPER_KINDS:
        raise _bad(spec, f"unknown wrapper kind {kind!r}; expected one of {list(WRAPPER_KINDS)}")
    target, q, query = rest.partition("?")
    module, attr = split_target(spec, target.strip(), f"{kind}:package.module.Name")
    kwargs, profile = parse_args(spec, query) if q else ({}, None)
    return AdapterSpec(spec=spec, kind=kind, module=module, attr=attr, kwargs=kwargs, profile=profile)


def is_wrapper_spec(spec: str) -> bool:
    """Whether ``spec`` starts with a wrapper kind and ``:``."""
    head, colon, _ = spec.partition(":")
    return bool(colon) and head in WRAPPER_KINDS
