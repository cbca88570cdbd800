"""Validation of ``adamw-conformance`` options, all before any work is done.

Every check raises :class:`UsageError`, which the command line prints as one line naming the
option and the value, with exit status 2. Nothing here imports a framework: built-in adapters are
checked through their declared capabilities, plug-in specs by locating their module.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

#: Files and folders a run writes into ``--out`` (``--force`` removes exactly these).
RUN_FILES: tuple[str, ...] = ("report.json", "report.html", "summary.md", "verdicts.png")
RUN_GLOBS: tuple[str, ...] = ("scenario-*.png",)
RUN_DIRS: tuple[str, ...] = ("raw", "traj")
#: ``--adapter`` names that stand for several built-ins.
GROUPS: dict[str, tuple[str, ...]] = {"keras": ("keras-tensorflow", "keras-jax", "keras-torch")}
MAX_SEEDS = 10_000


class UsageError(Exception):
    """A bad option value: ``option``, the ``value`` given, and ``reason``."""

    def __init__(self, option: str, value: object, reason: str) -> None:
        self.option, self.value, self.reason = option, value, reason
        if value is None or value == "":
            super().__init__(f"{option}: {reason}")
        else:
            shown = repr(value) if isinstance(value, str) else str(value)
            super().__init__(f"{option} {shown}: {reason}")


def _suggest(value: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def seeds(text: str | None, full: bool = False) -> list[int]:
    """``0``, ``0,3``, ``0-19`` or a mix; default 0 (``--full``: 0-4). Ranges must ascend."""
    if text is None:
        return list(range(5)) if full else [0]
    out: list[int] = []
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise UsageError("--seeds", text, "expected integers like '0', '0,3' or '0-19'")
    for part in parts:
        lo, sep, hi = part.partition("-")
        try:
            a, b = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise UsageError("--seeds", text, f"{part!r} is not an integer or a range a-b") from None
        if a < 0:
            raise UsageError("--seeds", text, "seeds must be >= 0")
        if b < a:
            raise UsageError("--seeds", text, f"range {part!r} is empty (write it as {b}-{a})")
        if b - a + 1 + len(out) > MAX_SEEDS:
            raise UsageError("--seeds", text, f"more than {MAX_SEEDS} seeds")
        out.extend(range(a, b + 1))
    return list(dict.fromkeys(out))


def positive_int(option: str, text: str, maximum: int) -> int:
    try:
        n = int(text)
    except ValueError:
        raise UsageError(option, text, "expected a whole number") from None
    if not 1 <= n <= maximum:
        raise UsageError(option, text, f"must be between 1 and {maximum}")
    return n


def seconds(option: str, text: str, allow_zero: bool = False) -> float:
    try:
        x = float(text)
    except ValueError:
        raise UsageError(option, text, "expected a number of seconds") from None
    if not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        raise UsageError(option, text, f"must be a finite number {'>=' if allow_zero else '>'} 0")
    return x


def _installed(name: str) -> tuple[bool, str]:
    from conformance.runner import installed

    return installed(name)


def adapters(
    names: Sequence[str] | None, device: str, adapter_args: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """The adapters to run (duplicates removed, groups and ``keras:`` specs expanded) and notes
    for the user.

    Default: every installed built-in adapter that supports ``device``. An adapter named
    explicitly must exist, be installed and support ``device``; a plug-in spec
    (``package.module:factory``) or a wrapper spec (``torch:pkg.Class``, ``optax:pkg.factory``,
    ``keras[-backend]:pkg.Class``, ``numpy:pkg.Class``) must name a package that can be found.
    ``adapter_args`` (``KEY=VALUE``) are appended to every wrapper spec as constructor overrides."""
    from adapters.registry import BUILTIN_ADAPTERS
    from conformance.runner import default_adapters

    notes: list[str] = []
    if not names:
        if adapter_args:
            raise UsageError(
                "--adapter-arg",
                adapter_args[0],
                "needs a wrapper spec in --adapter (torch:, optax:, keras:, numpy:)",
            )
        chosen = []
        for n in default_adapters():
            if device in _devices(n):
                chosen.append(n)
            else:
                notes.append(f"{n}: no {device} support, not run")
        for n in BUILTIN_ADAPTERS:
            ok, why = _installed(n)
            if not ok:
                notes.append(f"{n}: not installed ({why}), not run")
        return chosen, notes
    out: list[str] = []
    for raw in names:
        if raw in GROUPS:
            expanded = [g for g in GROUPS[raw] if _installed(g)[0]]
            if not expanded:
                raise UsageError("--adapter", raw, "none of " + ", ".join(GROUPS[raw]) + " is installed")
        else:
            expanded = _expand(raw, adapter_args)
        for name in expanded:
            _check_one(name, device)
            if name not in out:
                out.append(name)
    if adapter_args and not any(":" in n and _parse(n).is_wrapper for n in out):
        raise UsageError(
            "--adapter-arg",
            adapter_args[0],
            "needs a wrapper spec in --adapter (torch:, optax:, keras:, numpy:)",
        )
    return out, notes


def _parse(spec: str) -> Any:
    from adapters.errors import AdapterError
    from adapters.registry import parse_spec

    try:
        return parse_spec(spec)
    except AdapterError as exc:
        raise UsageError("--adapter", spec, str(exc).split(": ", 1)[-1]) from None


def _expand(raw: str, adapter_args: Sequence[str]) -> list[str]:
    """``keras:X`` -> one spec per installed backend; ``--adapter-arg`` appended to wrappers."""
    from adapters.errors import AdapterError
    from adapters.registry import expand_spec

    spec = raw
    if adapter_args and ":" in raw and _parse(raw).is_wrapper:
        for arg in adapter_args:
            key, sep, value = arg.partition("=")
            if not sep or not key.isidentifier():
                raise UsageError("--adapter-arg", arg, "expected KEY=VALUE (VALUE as JSON, else a string)")
            spec += ("&" if "?" in spec else "?") + f"{key}={quote(value, safe='[],.:-_+')}"
    try:
        return expand_spec(spec)
    except AdapterError as exc:
        raise UsageError("--adapter", raw, str(exc).split(": ", 1)[-1]) from None


def _check_one(name: str, device: str) -> None:
    from adapters.registry import available_adapters

    parsed = _parse(name) if ":" in name or name in available_adapters() else None
    if parsed is None:
        known = available_adapters()
        raise UsageError(
            "--adapter",
            name,
            "unknown adapter"
            + _suggest(name, [*known, *GROUPS])
            + f"; known: {', '.join(sorted(known))}, package.module:factory or kind:pkg.Class "
            "(kinds: torch, optax, keras, keras-jax, keras-tensorflow, keras-torch, numpy)",
        )
    if parsed.kind == "builtin":
        ok, why = _installed(name)
        if not ok:
            raise UsageError("--adapter", name, f"not installed here: {why}")
        if device not in _devices(name):
            raise UsageError(
                "--adapter", name, f"does not run on {device} (devices: {', '.join(_devices(name))})"
            )
    elif parsed.kind == "plugin":
        _check_spec(name)
    elif parsed.is_wrapper:
        top = parsed.module.split(".")[0]  # the top-level package only: finding a submodule imports it
        if _find(top) is None:
            raise UsageError(
                "--adapter",
                name,
                f"package {top!r} not found (not installed, and not in the current directory)",
            )
        if parsed.backend is not None and _find(parsed.backend) is None:
            raise UsageError("--adapter", name, f"the Keras backend {parsed.backend!r} is not installed")


def _find(module: str) -> object:
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def _devices(name: str) -> tuple[str, ...]:
    from adapters.registry import BUILTIN_ADAPTERS
    from conformance.execute import load

    if name not in BUILTIN_ADAPTERS:
        return ("cpu", "cuda")  # a plug-in says so itself when it runs
    return tuple(load(name).info.devices)


def _check_spec(spec: str) -> None:
    module, _, attr = spec.partition(":")
    if (
        not module
        or not attr
        or not all(p.isidentifier() for p in module.split("."))
        or not all(p.isidentifier() for p in attr.split("."))
    ):
        raise UsageError("--adapter", spec, "expected package.module:factory")
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # the worker also finds plug-ins in the cwd
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise UsageError(
            "--adapter",
            spec,
            f"module {module!r} not found (not installed, and not in the current directory)",
        )


def implementations(
    values: Sequence[str] | None, adapters_: Sequence[str], device: str = "cpu"
) -> list[str] | None:
    """Each ``--implementation`` must belong to at least one selected adapter and run on
    ``device``. A plug-in is loaded for this (only when ``--implementation`` is given)."""
    if not values:
        return None
    from conformance.execute import load

    valid: dict[str, list[str]] = {}
    runnable: set[str] = set()
    for a in adapters_:
        try:
            info = load(a).info
        except Exception as exc:  # a plug-in that cannot load fails here, in one line
            raise UsageError("--adapter", a, f"cannot be loaded: {type(exc).__name__}: {exc}") from None
        for impl in info.implementations:
            valid.setdefault(impl, []).append(a)
            runs_on = getattr(info, "runs_on", None)
            if runs_on is None or runs_on(impl, device):
                runnable.add(impl)
    for v in values:
        if v not in valid:
            raise UsageError(
                "--implementation",
                v,
                "no selected adapter has it"
                + _suggest(v, valid)
                + f"; implementations: {', '.join(sorted(valid))}",
            )
        if v not in runnable:
            raise UsageError("--implementation", v, f"does not run on {device}")
    return list(dict.fromkeys(values))


def scenarios(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    from conformance.scenarios import BY_ID

    for v in values:
        if v not in BY_ID:
            raise UsageError(
                "--scenario",
                v,
                "unknown scenario" + _suggest(v, BY_ID) + " ('adamw-conformance list' shows them)",
            )
    return list(dict.fromkeys(values))


def cuda_visible() -> tuple[bool, str]:
    """Whether a CUDA device is visible: ``nvidia-smi -L`` lists one (no framework import)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False, "nvidia-smi not found"
    try:
        res = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"nvidia-smi failed: {exc}"
    gpus = [ln for ln in res.stdout.splitlines() if ln.startswith("GPU ")]
    return (True, gpus[0]) if res.returncode == 0 and gpus else (False, "nvidia-smi lists no GPU")


def device(value: str) -> str:
    if value == "cuda":
        ok, why = cuda_visible()
        if not ok:
            raise UsageError("--device", value, f"no CUDA device visible ({why})")
    return value


def readable_file(option: str, value: str) -> Path:
    p = Path(value)
    if not p.is_file():
        raise UsageError(option, value, "no such file" if not p.exists() else "not a file")
    if not os.access(p, os.R_OK):
        raise UsageError(option, value, "not readable")
    return p


def previous_run(directory: Path) -> list[Path]:
    """The files of an earlier run in ``directory`` (what ``--force`` removes)."""
    found = [directory / f for f in RUN_FILES if (directory / f).exists()]
    for g in RUN_GLOBS:
        found += sorted(directory.glob(g))
    found += [directory / d for d in RUN_DIRS if (directory / d).exists()]
    return found


def out_dir(value: str, force: bool) -> Path:
    """``--out``: a directory that can be written; one holding an earlier run needs ``--force``
    (its run files are then removed, nothing else)."""
    p = Path(value)
    if p.exists() and not p.is_dir():
        raise UsageError("--out", value, "exists and is not a directory")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError("--out", value, f"{probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError("--out", value, f"{probe} is not writable")
    if p.is_dir() and previous_run(p) and not force:
        raise UsageError(
            "--out",
            value,
            "holds an earlier run (report.json ...): add --force to replace it, or --resume DIR to finish it",
        )
    return p


def clear_previous(directory: Path) -> None:
    for path in previous_run(directory):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
