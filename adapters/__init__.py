"""Adapters: every real AdamW implementation behind one protocol (see :mod:`adapters.protocol`).

Importing this package imports no framework; each adapter module imports its framework lazily.
"""

from adapters.errors import AdapterError, FrameworkUnavailable, UnsupportedConfig
from adapters.protocol import (
    Adapter,
    AdapterInfo,
    CanonicalState,
    OptimizerRun,
    Support,
)
from adapters.registry import BUILTIN_ADAPTERS, available_adapters, load_adapter

__all__ = [
    "BUILTIN_ADAPTERS",
    "Adapter",
    "AdapterError",
    "AdapterInfo",
    "CanonicalState",
    "FrameworkUnavailable",
    "OptimizerRun",
    "Support",
    "UnsupportedConfig",
    "available_adapters",
    "load_adapter",
]
