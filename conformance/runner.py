"""Orchestration: one worker subprocess per adapter, ``jobs`` at a time, with a timeout.

Each worker (:mod:`conformance.worker`) appends JSON lines; the runner tails them and rewrites
``OUT/report.json`` atomically (temp file + ``os.replace``) after every new case, so an
interrupted run leaves a valid report of everything finished. A worker that crashes, hangs past
``timeout`` (killed with its process group) or cannot import its framework yields ``error`` rows
carrying the tail of its stderr, for every planned case it did not finish (or one row for the
adapter when it died before planning); the other adapters carry on.

:meth:`Runner.stop` (called from a SIGINT/SIGTERM handler) ends the run at the next poll: the
workers' process groups are terminated (SIGTERM, then SIGKILL after a grace period), every case
they finished is kept, nothing is invented for the unfinished ones, and the report is marked
``interrupted``. Workers also watch their parent (``ADAMW_PARENT_PID``) and exit when it is gone,
so not even a SIGKILL of the runner leaves them running.

The torch workers are forked from a server that has imported torch once
(:mod:`conformance.prefork`), the others are fresh interpreters; each worker runs on
:func:`conformance.threads.per_worker` threads unless ``threads`` is given.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.util
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from conformance import __version__, prefork
from conformance.report import schema as rp
from conformance.threads import per_worker, thread_env

#: Built-in adapter -> the framework module whose presence means "installed".
FRAMEWORK_MODULES: dict[str, str] = {
    "reference": "numpy",
    "torch": "torch",
    "torch-adam": "torch",
    "keras-tensorflow": "tensorflow",
    "keras-jax": "jax",
    "keras-torch": "torch",
    "optax": "optax",
    "mlx": "mlx",
    "tf-keras": "tf_keras",
    "paddle": "paddle",
    "tinygrad": "tinygrad",
}
KERAS_BACKEND = {"keras-tensorflow": "tensorflow", "keras-jax": "jax", "keras-torch": "torch"}


def installed(name: str) -> tuple[bool, str]:
    """Whether a built-in adapter can run here (adapter module and framework present)."""
    from adapters.registry import BUILTIN_ADAPTERS

    spec = BUILTIN_ADAPTERS.get(name)
    if spec is None:
        return True, "plug-in (checked when run)"
    mod = spec.split(":")[0]
    if importlib.util.find_spec(mod) is None:
        return False, f"adapter module {mod} not present"
    fw = FRAMEWORK_MODULES.get(name)
    if fw and importlib.util.find_spec(fw) is None:
        return False, f"framework {fw} not installed"
    if name.startswith("keras") and importlib.util.find_spec("keras") is None:
        return False, "keras not installed"
    return True, "installed"


#: Slowest first, so that two lanes finish together (longest-processing-time order, from the
#: per-worker times of benchmarks/results/default_run_profile*.json). The torch workers wait
#: for the fork server's torch import (1.5-1.7 s), during which Keras on TensorFlow, the longest
#: worker (9.2 s in the default run), starts beside it; the two lanes then end within 0.3 s of
#: each other (--quick 13.3 s, the default run 17.4 s, benchmarks/results/default_run.json).
_ORDER = (
    "torch",
    "keras-tensorflow",
    "tf-keras",
    "tinygrad",
    "keras-torch",
    "keras-jax",
    "torch-adam",
    "optax",
    "mlx",
    "paddle",
    "reference",
)


def default_adapters() -> list[str]:
    from adapters.registry import BUILTIN_ADAPTERS

    names = [n for n in BUILTIN_ADAPTERS if installed(n)[0]]
    return sorted(names, key=lambda n: _ORDER.index(n) if n in _ORDER else len(_ORDER))


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent.parent,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def make_envelope(command: str, seeds: Sequence[int]) -> rp.Envelope:
    import adamw_ref

    return {
        "suite_version": __version__,
        "spec_version": adamw_ref.SPEC_VERSION,
        "commit": git_commit(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "frameworks": {},
        "devices": [],
        "precision": {},
        "seeds": list(seeds),
        "env": {k: v for k, v in os.environ.items() if k.startswith("ADAMW_")},
    }


@dataclass
class _Job:
    name: str
    spec: str
    proc: subprocess.Popen[bytes] | prefork.ForkedWorker | None = None
    started: float = 0.0
    results: Path = Path()
    stderr: Path = Path()
    offset: int = 0
    plan: list[str] = field(default_factory=list)
    done_ids: set[str] = field(default_factory=set)
    finished: bool = False
    fatal: str | None = None


def _tail(path: Path, n: int = 2000) -> str:
    try:
        data = path.read_bytes()[-n:]
    except OSError:
        return ""
    return data.decode("utf-8", "replace")


class Runner:
    """Runs workers and maintains the report. ``on_case(case)`` is called for each new row."""

    def __init__(
        self,
        adapters: Sequence[str],
        out_dir: Path,
        worker_args: Sequence[str],
        *,
        seeds: Sequence[int] = (0,),
        jobs: int = 2,
        threads: int | None = None,
        timeout: float = 300.0,
        command: str = "",
        on_case: Callable[[dict[str, Any]], None] | None = None,
        on_plan: Callable[[int], None] | None = None,
        on_worker_done: Callable[[str, int, float], None] | None = None,
        repro_args: Sequence[str] = (),
        report: rp.Report | None = None,
        skip_ids: Iterable[str] = (),
    ) -> None:
        self.out_dir = Path(out_dir)
        self.worker_args = list(worker_args)
        self.repro_args = list(repro_args)
        self.jobs = max(1, int(jobs))
        # None: cores // jobs, where the user has not set the variables; a number: forced
        self.threads, self.force_threads = (
            (per_worker(self.jobs), False) if threads is None else (int(threads), True)
        )
        self.timeout = float(timeout)
        self.on_case = on_case
        self.on_plan = on_plan
        self.on_worker_done = on_worker_done
        self.report: rp.Report = (
            report if report is not None else rp.new_report(make_envelope(command, seeds))
        )
        self.report["envelope"]["status"] = "running"
        self.skip_ids = set(skip_ids)
        # a plug-in keeps its full spec as its name, so case ids and repro commands name it
        self.pending = [_Job(a, a) for a in adapters]
        self.running: list[_Job] = []
        self.path = self.out_dir / "report.json"
        self.stopped: int | None = None
        self.planned = 0

    # -- report -------------------------------------------------------------------------------
    def _add(self, case: dict[str, Any]) -> None:
        self.report["cases"].append(case)  # type: ignore[arg-type]
        if self.on_case:
            self.on_case(case)

    def _write(self) -> None:
        rp.write_atomic(self.path, self.report)

    # -- workers ------------------------------------------------------------------------------
    def _start(self, job: _Job) -> None:
        raw = self.out_dir / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in job.name)
        job.results, job.stderr = raw / f"{safe}.jsonl", raw / f"{safe}.stderr.txt"
        job.results.write_text("")
        env = dict(os.environ)
        backend = _keras_backend(job.spec)
        if backend is not None:
            env["KERAS_BACKEND"] = backend
        env.setdefault("PYTHONHASHSEED", "0")
        # Workers share one GPU: JAX would grab 75% of its memory at start-up and starve a torch
        # worker running beside it (seen on an H100 with --jobs 6); allocate on demand instead.
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        env["ADAMW_PARENT_PID"] = str(os.getpid())  # the worker exits when this process is gone
        env.update(jax_cache_env(env))
        env.update(thread_env(self.threads, env, force=self.force_threads))
        skip: list[str] = []
        if self.skip_ids:
            skip_file = raw / f"{safe}.skip.txt"
            skip_file.write_text("\n".join(sorted(self.skip_ids)) + "\n", encoding="utf-8")
            skip = ["--skip-ids", str(skip_file)]
        cmd = [
            sys.executable,
            "-m",
            "conformance.worker",
            "--adapter",
            job.spec,
            "--name",
            job.name,
            "--out",
            str(job.results),
            *self.worker_args,
            *skip,
        ]
        if prefork.wanted(job.spec, env, self._device()):
            job.stderr.write_bytes(b"")
            job.proc = prefork.ForkedWorker(cmd[3:], env, str(job.stderr))
        else:
            with open(job.stderr, "wb") as err:
                job.proc = subprocess.Popen(
                    cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True
                )
        job.started = time.monotonic()

    def _device(self) -> str:
        args = self.worker_args
        return args[args.index("--device") + 1] if "--device" in args[:-1] else "cpu"

    def _read(self, job: _Job) -> bool:
        """Consume new complete lines; True if anything new arrived."""
        try:
            with open(job.results, "rb") as fh:
                fh.seek(job.offset)
                data = fh.read()
        except OSError:
            return False
        new = False
        end = data.rfind(b"\n")
        if end < 0:
            return False
        job.offset += end + 1
        for line in data[: end + 1].splitlines():
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            new = True
            kind = msg.get("type")
            env = self.report["envelope"]
            if kind == "start":
                job.plan = list(msg.get("plan", []))
                self.planned += len(job.plan)
                env["frameworks"].update(msg.get("versions", {}))
                for d in msg.get("devices", []):
                    if d not in env["devices"]:
                        env["devices"].append(d)
                for k, v in msg.get("precision", {}).items():
                    if isinstance(v, dict):
                        env["precision"].setdefault(k, {}).update(v)
                    else:
                        env["precision"][k] = v
                if self.on_plan:
                    self.on_plan(len(job.plan))
            elif kind == "case":
                case = rp.decode_case(msg["case"])
                job.done_ids.add(case["id"])
                self._add(case)
            elif kind == "fatal":
                job.fatal = msg.get("error", "fatal error")
            elif kind == "done":
                job.finished = True
        return new

    def _finish(self, job: _Job, why: str) -> None:
        self._read(job)
        tail = _tail(job.stderr)
        rc = job.proc.returncode if job.proc else None
        if job.finished and rc == 0:
            return
        msg = why if job.fatal is None else f"import/load failure: {job.fatal}"
        detail = f"{msg} (exit status {rc})" + (f"\n--- stderr tail ---\n{tail}" if tail else "")
        missing = [i for i in job.plan if i not in job.done_ids]
        if not job.plan:
            self._add(_error_row(job.name, f"{job.name}-process", detail, self.repro_args))
        for cid in missing:
            self._add(_error_row(job.name, cid, detail, self.repro_args))

    def stop(self, signum: int) -> None:
        """Ask the run to end at the next poll (safe to call from a signal handler)."""
        self.stopped = signum

    def _done(self, job: _Job) -> None:
        if self.on_worker_done:
            self.on_worker_done(job.name, len(job.done_ids), time.monotonic() - job.started)

    def _interrupt(self, grace: float = 3.0) -> None:
        """Terminate every running worker's process group, keep what they finished."""
        for job in self.running:
            if job.proc is not None and job.proc.poll() is None:
                _signal_group(job.proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for job in self.running:
            if job.proc is None:
                continue
            try:
                job.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill(job.proc)
            self._read(job)
        self.running.clear()
        self.report["envelope"]["status"] = "interrupted"

    def run(self, poll: float = 0.05) -> rp.Report:
        self._write()
        while (self.pending or self.running) and self.stopped is None:
            while self.pending and len(self.running) < self.jobs:
                job = self.pending.pop(0)
                self._start(job)
                self.running.append(job)
            changed = False
            for job in list(self.running):
                assert job.proc is not None
                changed |= self._read(job)
                rc = job.proc.poll()
                if rc is not None:
                    self._finish(job, "worker crashed" if rc != 0 else "worker exited early")
                    self.running.remove(job)
                    self._done(job)
                    changed = True
                elif time.monotonic() - job.started > self.timeout:
                    _kill(job.proc)
                    self._finish(job, f"worker timed out after {self.timeout:g} s (killed)")
                    self.running.remove(job)
                    self._done(job)
                    changed = True
            if changed:
                self._write()
            elif self.stopped is None:
                time.sleep(poll)
        env = self.report["envelope"]
        env["planned"] = env.get("planned", 0) + self.planned
        if self.stopped is not None:
            self._interrupt()
        else:
            env["status"] = "complete"
        self._write()
        return self.report


def jax_cache_env(env: dict[str, str]) -> dict[str, str]:
    """A persistent XLA compilation cache for JAX workers (Optax, Keras on JAX): a warm cache
    halves an Optax worker (7.4 s -> 3.2 s here). In ``$XDG_CACHE_HOME/adamw-ref/jax`` (default
    ``~/.cache``) unless ``JAX_COMPILATION_CACHE_DIR`` is set; ``ADAMW_JAX_CACHE=0`` turns it off.
    Cached executables are XLA's own; results are identical with and without the cache."""
    if env.get("ADAMW_JAX_CACHE") == "0" or "JAX_COMPILATION_CACHE_DIR" in env:
        return {}
    base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return {
        "JAX_COMPILATION_CACHE_DIR": str(base / "adamw-ref" / "jax"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }


def _keras_backend(spec: str) -> str | None:
    """The Keras backend a worker for ``spec`` needs: a built-in ``keras-*`` adapter or a
    ``keras-<backend>:pkg.Class`` wrapper spec (Keras fixes its backend per process)."""
    if spec in KERAS_BACKEND:
        return KERAS_BACKEND[spec]
    from adapters.errors import AdapterError
    from adapters.registry import parse_spec

    try:
        return parse_spec(spec).backend if ":" in spec else None
    except AdapterError:
        return None


def _signal_group(proc: subprocess.Popen[bytes] | prefork.ForkedWorker, sig: int) -> None:
    if isinstance(proc, prefork.ForkedWorker):
        proc.send_signal(sig)  # its own process group, once it has a pid
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def _kill(proc: subprocess.Popen[bytes] | prefork.ForkedWorker) -> None:
    _signal_group(proc, signal.SIGKILL)
    if not isinstance(proc, prefork.ForkedWorker):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    proc.wait()


def _error_row(adapter: str, cid: str, error: str, repro_args: Sequence[str]) -> dict[str, Any]:
    parts = cid.split("-")
    return {
        "id": cid,
        "adapter": adapter,
        "implementation": "",
        "device": "",
        "dtype": "",
        "scenario": "",
        "mode": "free",
        "profile": "",
        "seed": 0,
        "steps": 0,
        "verdict": "error",
        "acceptable_flag": None,
        "metrics": {},
        "bound": {},
        "first_divergence": None,
        "diagnosis": None,
        "error": error,
        "repro": " ".join(
            shlex.quote(x) for x in ["adamw-conformance", "run", "--adapter", adapter, *repro_args]
        ),
        "series": rp.empty_series(),
        "duration_s": 0.0,
        **_parse_id(cid, parts),
    }


def _parse_id(cid: str, parts: list[str]) -> dict[str, Any]:
    """Recover fields from a case id ``adapter[impl]-device-dtype-scenario-mode-sSEED``."""
    if "[" not in cid or "]" not in cid:
        return {}
    head, _, rest = cid.partition("]-")
    impl = head.split("[", 1)[1]
    bits = rest.split("-")
    if len(bits) < 5:
        return {}
    out: dict[str, Any] = {"implementation": impl, "device": bits[0], "dtype": bits[1]}
    seed = bits[-1]
    out["mode"] = bits[-2] if bits[-2] in rp.MODES else "free"
    out["scenario"] = "-".join(bits[2:-2])
    if seed.startswith("s") and seed[1:].isdigit():
        out["seed"] = int(seed[1:])
    return out


def print_progress_to(stream: IO[str]) -> Callable[[dict[str, Any]], None]:
    def cb(case: dict[str, Any]) -> None:
        stream.write(f"{case['verdict']:>12}  {case['id']}\n")
        stream.flush()

    return cb
