"""Subcommands of ``adamw-ref`` that other packages provide, found through entry points.

The specification does not import the packages built on it. A package above it that adds a verb
to ``adamw-ref`` registers a function ``cli_main(argv: list[str]) -> int`` in the entry-point
group :data:`GROUP` (this distribution registers ``translate`` and ``vectors-verify``); the
command line finds it here by name and hands it the remaining arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from adamw_ref.errors import AdamWRefError

#: The entry-point group of registered ``adamw-ref`` subcommands.
GROUP = "adamw_ref.commands"

Command = Callable[[list[str]], int]


class CommandUnavailable(AdamWRefError):
    """No installed package registers the command, or its registration cannot be loaded."""


def registered() -> dict[str, str]:
    """Every registered command name -> its ``module:function`` (nothing is imported)."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def load_command(name: str) -> Command:
    """The registered function for ``name``; :class:`CommandUnavailable` (one line) otherwise."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        raise CommandUnavailable(
            f"no installed package provides the command {name!r} (entry-point group {GROUP}); "
            "install adamw-ref with the adapters and the suite: pip install -e '.[suite]'"
        )
    try:
        func = found[0].load()
    except Exception as exc:  # an ImportError, or a broken registration
        raise CommandUnavailable(
            f"the command {name!r} ({found[0].value}) cannot be loaded: {type(exc).__name__}: {exc}"
        ) from None
    if not callable(func):
        raise CommandUnavailable(f"the command {name!r} ({found[0].value}) is not callable")
    command: Command = func
    return command
