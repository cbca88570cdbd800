"""The conformance matrix over framework releases: tox envs from ``matrix/versions.toml``.

::

    python -m tools.tox_matrix [--check]          # write (or check) tox.ini's generated block
    python -m tools.tox_matrix list [--json] [--label L]   # the env names (CI reads --json)
    python tools/tox_matrix.py check ENV          # installed versions == the env's pins, or exit 1
    python tools/tox_matrix.py run ENV [ARGS...]  # the suite for ENV's adapters, --strict

``matrix/versions.toml`` holds one table per env (adapters, exact pins, environment variables,
label, why the release is in the matrix); tox.ini gets one ``[testenv:NAME]`` section per table
between the GENERATED markers. Each env installs its pins as ``deps`` with
``constrain_package_deps`` and ``use_frozen_constraints`` on, so installing adamw-ref's own
dependencies afterwards cannot move a pinned framework (pip fails instead), and ``check``
compares every pin with :func:`importlib.metadata.version` before the suite runs.

``run`` calls ``adamw-conformance run --adapter A ... --strict --out matrix-out/ENV --force
--no-progress`` and writes ``matrix-out/ENV/matrix-env.json`` (the env, its pins, the installed
versions, the exit status, the wall time). Exit status 1 of the suite (a divergence, known or
not: the matrix runs with ``--strict`` so that every one is visible) is recorded there and
``run`` exits 0; any other non-zero status (usage error, interruption, crash) fails the env.

Standard library only: ``check`` and ``run`` execute inside each tox env, as a script (tox runs
them in the env's temporary directory, so that the suite imports the installed wheel).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "matrix" / "versions.toml"
TOX_INI = ROOT / "tox.ini"
OUT = "matrix-out"
BEGIN = "# BEGIN GENERATED MATRIX: python -m tools.tox_matrix (from matrix/versions.toml); do not edit"
END = "# END GENERATED MATRIX"
LABELS = ("matrix", "matrix-torch-cuda")
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)$")


class MatrixError(Exception):
    """A bad data file or argument: one line, exit status 2."""


@dataclass(frozen=True)
class Env:
    """One tox env of the matrix."""

    name: str
    adapters: tuple[str, ...]
    pins: tuple[tuple[str, str], ...]  # (distribution, version), the release under test first
    label: str
    why: str
    set_env: dict[str, str] = field(default_factory=dict)

    @property
    def requirements(self) -> list[str]:
        return [f"{n}=={v}" for n, v in self.pins]

    @property
    def title(self) -> str:
        return " + ".join(f"{n} {v}" for n, v in self.pins if n != "numpy")


def load(path: Path = DATA) -> dict[str, Env]:
    """The envs of ``path``, checked (a bad entry raises :class:`MatrixError`)."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MatrixError(f"{path}: {exc}") from None
    tables = data.get("env")
    if not isinstance(tables, dict) or not tables:
        raise MatrixError(f"{path}: no [env.NAME] tables")
    envs: dict[str, Env] = {}
    for name, t in tables.items():
        where = f"{path.name}: [env.{name}]"
        if not _NAME.match(name):
            raise MatrixError(f"{where}: name must be lower-case letters, digits and '-'")
        if not isinstance(t, dict):
            raise MatrixError(f"{where}: not a table")
        unknown = set(t) - {"adapters", "pins", "label", "why", "set_env"}
        if unknown:
            raise MatrixError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        adapters, pins, label = t.get("adapters"), t.get("pins"), t.get("label", "matrix")
        if not (isinstance(adapters, list) and adapters and all(isinstance(a, str) for a in adapters)):
            raise MatrixError(f"{where}: adapters must be a non-empty list of adapter names")
        if not (isinstance(pins, list) and pins and all(isinstance(p, str) for p in pins)):
            raise MatrixError(f"{where}: pins must be a non-empty list of 'name==version'")
        parsed = []
        for p in pins:
            m = _PIN.match(p.strip())
            if not m:
                raise MatrixError(f"{where}: pin {p!r} is not an exact 'name==version'")
            parsed.append((m.group(1), m.group(2)))
        if label not in LABELS:
            raise MatrixError(f"{where}: label {label!r} is not one of {', '.join(LABELS)}")
        set_env = t.get("set_env", {})
        if not (isinstance(set_env, dict) and all(isinstance(v, str) for v in set_env.values())):
            raise MatrixError(f"{where}: set_env must map names to strings")
        envs[name] = Env(name, tuple(adapters), tuple(parsed), label, str(t.get("why", "")), dict(set_env))
    return envs


# -- tox.ini --------------------------------------------------------------------------------
def render(envs: dict[str, Env]) -> str:
    """The generated block of tox.ini, markers included."""
    out = [BEGIN]
    for e in envs.values():
        out += ["", f"[testenv:{e.name}]"]
        why = f": {e.why}" if e.why else ""
        out.append(f"description = {e.title}{why}".replace("%", "%%"))
        out.append(f"labels = {e.label}")
        out.append("deps =")
        out += [f"    {r}" for r in e.requirements]
        if e.set_env:
            out.append("set_env =")
            out += [f"    {k} = {v}" for k, v in e.set_env.items()]
        out += [
            "constraints = {[matrix]constraints}",
            "package = {[matrix]package}",
            "wheel_build_env = {[matrix]wheel_build_env}",
            "extras = {[matrix]extras}",
            "constrain_package_deps = {[matrix]constrain_package_deps}",
            "use_frozen_constraints = {[matrix]use_frozen_constraints}",
            "commands = {[matrix]commands}",
        ]
    out += ["", END]
    return "\n".join(out) + "\n"


def splice(ini: str, block: str) -> str:
    """``ini`` with its generated block replaced by ``block`` (appended when absent)."""
    if BEGIN in ini:
        head, rest = ini.split(BEGIN, 1)
        if END not in rest:
            raise MatrixError(f"tox.ini: {BEGIN!r} without {END!r}")
        tail = rest.split(END, 1)[1].lstrip("\n")
        return head + block + ("\n" + tail if tail else "")
    return ini.rstrip("\n") + "\n\n" + block


def cmd_generate(check: bool) -> int:
    ini = TOX_INI.read_text(encoding="utf-8")
    new = splice(ini, render(load()))
    if check:
        if new != ini:
            print("tox.ini: the generated matrix is stale; run: python -m tools.tox_matrix", file=sys.stderr)
            return 1
        return 0
    if new != ini:
        TOX_INI.write_text(new, encoding="utf-8")
        print(f"tox.ini: {len(load())} matrix envs written")
    return 0


# -- inside an env --------------------------------------------------------------------------
def installed(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def same_release(requested: str, got: str | None) -> bool:
    """``got`` is ``requested``, allowing a local label (``2.13.0+cpu`` for ``2.13.0``)."""
    return got is not None and (got == requested or got.split("+", 1)[0] == requested.split("+", 1)[0])


def check_env(env: Env) -> list[str]:
    """One line per pin that is not what is installed (empty: the env is what it claims)."""
    bad = []
    for dist, want in env.pins:
        got = installed(dist)
        if not same_release(want, got):
            bad.append(f"{dist}: requested {want}, installed {got or 'nothing'}")
    return bad


def cmd_check(name: str) -> int:
    env = _env(name)
    bad = check_env(env)
    for dist, want in env.pins:
        print(f"{name}: {dist}=={want} -> {installed(dist) or 'not installed'}")
    if bad:
        print(f"{name}: the env is not the release it names: " + "; ".join(bad), file=sys.stderr)
        return 1
    return 0


def cmd_run(name: str, extra: list[str], out_root: Path) -> int:
    env = _env(name)
    out = out_root / name
    exe = shutil.which("adamw-conformance") or "adamw-conformance"
    cmd = [exe, "run"]
    for a in env.adapters:
        cmd += ["--adapter", a]
    cmd += ["--strict", "--out", str(out), "--force", "--no-progress", *extra]
    print("+ adamw-conformance " + " ".join(cmd[1:]), flush=True)
    t0 = time.monotonic()
    code = subprocess.call(cmd)
    wall = time.monotonic() - t0
    record = {
        "env": name,
        "adapters": list(env.adapters),
        "pins": dict(env.pins),
        "installed": {d: installed(d) for d, _ in env.pins},
        "command": ["adamw-conformance", *cmd[1:]],
        "exit_status": code,
        "wall_s": round(wall, 1),
        "python": sys.version.split()[0],
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "matrix-env.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    if code == 1:
        print(f"{name}: the suite found divergences (exit status 1, recorded in {out}/matrix-env.json)")
        return 0
    return code


def _env(name: str) -> Env:
    envs = load()
    if name not in envs:
        raise MatrixError(f"ENV {name!r} is not in {DATA.relative_to(ROOT)} (try: list)")
    return envs[name]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.tox_matrix", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when tox.ini's generated block is stale")
    sub = ap.add_subparsers(dest="verb")
    ls = sub.add_parser("list", help="the env names")
    ls.add_argument("--json", action="store_true", help="as a JSON list (a CI job matrix)")
    ls.add_argument("--label", default="matrix", help="'matrix' (default), 'matrix-torch-cuda' or 'all'")
    ck = sub.add_parser("check", help="the installed versions are the env's pins")
    ck.add_argument("env")
    rn = sub.add_parser("run", help="the suite for the env's adapters, with --strict")
    rn.add_argument("env")
    rn.add_argument("--out-root", default=str(ROOT / OUT), help="reports go to OUT_ROOT/ENV")
    rn.add_argument("args", nargs=argparse.REMAINDER, help="more options for adamw-conformance run")
    ns = ap.parse_args(argv)
    try:
        if ns.verb == "list":
            if ns.label not in (*LABELS, "all"):
                raise MatrixError(f"--label {ns.label!r} is not one of {', '.join(LABELS)}, all")
            names = [e.name for e in load().values() if ns.label in ("all", e.label)]
            print(json.dumps(names) if ns.json else "\n".join(names))
            return 0
        if ns.verb == "check":
            return cmd_check(ns.env)
        if ns.verb == "run":
            extra = [a for a in ns.args if a != "--"]
            return cmd_run(ns.env, extra, Path(ns.out_root))
        return cmd_generate(ns.check)
    except MatrixError as exc:
        print(f"python -m tools.tox_matrix: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
