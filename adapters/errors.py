"""Adapter errors: each names the knob or argument and its value."""

from __future__ import annotations

from adamw_ref.errors import AdamWRefError, ConfigError


class AdapterError(AdamWRefError):
    """Anything an adapter refuses or cannot do."""


class UnsupportedConfig(ConfigError):
    """The framework cannot express this config natively; it is refused, never approximated."""

    def __init__(self, adapter: str, knob: str, value: object, reason: str = "") -> None:
        self.adapter = adapter
        msg = f"{adapter} cannot express {knob}={value!r} natively"
        super().__init__(knob, value, msg + (f": {reason}" if reason else ""))


class FrameworkUnavailable(AdapterError):
    """The framework (or the requested device) is not installed or not usable here."""

    def __init__(self, adapter: str, reason: str) -> None:
        self.adapter = adapter
        self.reason = reason
        super().__init__(f"{adapter} unavailable: {reason}")
