"""Errors raised by the reference. Every message names the offending field and its value."""

from __future__ import annotations


class AdamWRefError(ValueError):
    """Base class of every error the reference raises on bad input."""


class ConfigError(AdamWRefError):
    """An invalid hyperparameter or knob value.

    ``field`` is the dotted name of the offending field, ``value`` its value.
    """

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {field}={value!r}: {reason}")


class InputError(AdamWRefError):
    """Parameters, gradients or state that do not fit together (names, lengths, values)."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {field}={value!r}: {reason}")
