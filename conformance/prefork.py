"""Workers of one framework forked from a server that has imported it once.

The torch, torch-adam and Keras-on-torch workers each spent about 2 s importing torch (and
``torch._dynamo``, which every ``torch.optim`` constructor imports) before their first case.
The runner instead starts them from a :mod:`multiprocessing` fork server that has imported those
modules: each worker is still its own process (its own results file, stderr, timeout and
session; a crash takes only its own cases), started by ``fork`` from the server, with its own
environment, thread count and lifeline. The server exits when the runner does (multiprocessing
closes its pipe), and every worker forked from it then exits too (:mod:`conformance.lifeline`:
its parent, the server, is gone).

Linux only (``fork`` after the imports; no framework has started a thread by then), CPU runs
only, and never where ``ADAMW_NO_PREFORK=1``: there every worker is a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence

#: Modules the server imports before it forks a worker of the family.
PRELOAD: tuple[str, ...] = (
    "numpy",
    "torch",
    "torch._dynamo",
    "adamw_ref",
    "adapters.torch.adapter",
    "conformance.execute",
    "conformance.worker",
)
#: Adapters (built-in names and wrapper kinds) whose workers fork from the server.
FAMILY = ("torch", "torch-adam", "keras-torch")
DISABLE_ENV = "ADAMW_NO_PREFORK"

_lock = threading.Lock()
_configured = False


def wanted(spec: str, environ: Mapping[str, str] | None = None, device: str = "cpu") -> bool:
    """Whether the worker of adapter ``spec`` forks from the server (torch family, Linux, CPU
    runs: CUDA cannot be used in a child forked after its parent initialised the driver, and
    importing torch's compiler stack may ask how many devices there are)."""
    env = os.environ if environ is None else environ
    if env.get(DISABLE_ENV, "") not in ("", "0") or not sys.platform.startswith("linux"):
        return False
    if device != "cpu":
        return False
    kind = spec.split(":", 1)[0] if ":" in spec else spec
    return kind in FAMILY


def ensure_server(environ: Mapping[str, str]) -> None:
    """Start the server (once per runner process) in a worker's environment ``environ``, so what
    an interpreter fixes at start-up (the hash seed, the thread pools of the libraries it loads)
    is what a spawned worker would get."""
    global _configured
    with _lock:
        if not _configured:
            multiprocessing.set_forkserver_preload(list(PRELOAD))
            _configured = True
        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(environ)
            multiprocessing.forkserver.ensure_running()
        finally:
            os.environ.clear()
            os.environ.update(saved)


def _child(argv: list[str], env: dict[str, str], stderr_path: str, cwd: str) -> None:
    """In the forked worker: its own session, stderr file, environment, working directory and
    import path (as ``python -m`` there would have: the directory, then ``PYTHONPATH``); then
    the worker."""
    os.setsid()  # the runner signals the worker's process group, as for a spawned worker
    os.chdir(cwd)
    first = [cwd, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    sys.path[:] = first + [p for p in sys.path if p not in first and p != ""]
    fd = os.open(stderr_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    os.environ.clear()
    os.environ.update(env)
    # the server is this worker's parent: it exits with the runner, and the lifeline with it
    os.environ["ADAMW_PARENT_PID"] = str(os.getppid())
    torch = sys.modules.get("torch")
    threads = env.get("OMP_NUM_THREADS", "")
    if torch is not None and threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))  # libgomp read the server's value at load
    sys.argv = ["conformance.worker", *argv]
    from conformance import worker

    code = 1
    try:
        code = worker.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()  # into the worker's stderr file, which the report quotes
    finally:
        worker.exit_now(code)  # as a spawned worker ends (multiprocessing skips atexit)


class ForkedWorker:
    """A worker forked from the server, with the part of :class:`subprocess.Popen` the runner
    uses (``pid``, ``poll``, ``wait``, ``send_signal``, ``kill``, ``returncode``).

    The server answers with the worker's pid only once its imports are done, so the fork is
    requested from a thread: the runner keeps polling its other workers meanwhile. A signal sent
    before the pid is known is delivered as soon as it is.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], stderr_path: str) -> None:
        ensure_server(env)
        ctx = multiprocessing.get_context("forkserver")
        self._proc = ctx.Process(
            target=_child,
            args=(list(argv), dict(env), stderr_path, os.getcwd()),
            name="adamw-worker",
            daemon=True,
        )
        self._stderr_path = stderr_path
        self._ready = threading.Event()
        self._failed = False
        self._pending: int | None = None
        self._lock = threading.Lock()
        self.returncode: int | None = None
        threading.Thread(target=self._start, name="adamw-prefork", daemon=True).start()

    def _start(self) -> None:
        try:
            self._proc.start()
        except BaseException as exc:  # the server died or could not import: a worker error
            self._failed = True
            with open(self._stderr_path, "a", encoding="utf-8") as fh:
                fh.write(f"fork server: {type(exc).__name__}: {exc}\n")
        with self._lock:
            self._ready.set()
            pending = self._pending
        if pending is not None:
            self.send_signal(pending)

    @property
    def pid(self) -> int:
        """The worker's pid (0 until the server has forked it)."""
        return int(self._proc.pid or 0) if self._ready.is_set() else 0

    def poll(self) -> int | None:
        if self.returncode is None and self._ready.is_set():
            self.returncode = 1 if self._failed else self._proc.exitcode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired("conformance.worker", timeout or 0.0)
            time.sleep(0.02)
        return code

    def send_signal(self, sig: int) -> None:
        with self._lock:
            if not self._ready.is_set():
                self._pending = sig if self._pending != signal.SIGKILL else self._pending
                return
        if self._failed or self.poll() is not None or not self.pid:
            return
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):  # not yet in its own session
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
