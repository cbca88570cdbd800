"""Start the ranks of a job on this machine and watch them: a hang or a death becomes an error for
the case it happened in, every rank is ended, and the remaining cases run in a fresh launch.

Each rank (``python -m conformance.distributed.rank JOB``) starts in its own session
(``start_new_session=True``), so ending it ends whatever it started (``os.killpg``); it also
watches this process (``ADAMW_PARENT_PID``, :mod:`conformance.lifeline`) and exits when it is
gone, even after a SIGKILL here. The rendezvous is a free loopback port (``MASTER_ADDR=127.0.0.1``),
gloo is pinned to the loopback interface where there is one, and each rank gets one CPU thread
(``OMP_NUM_THREADS=1``: four ranks on two cores).

:func:`run_job` returns, per case key, ``{"status": "ok", "record": ...}`` (rank 0's record,
see :mod:`.rank`) or ``{"status": "error", "error": ...}``: the message names the rank and what
happened (its error line, its exit status, or the timeout) with the tail of its stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Seconds the other ranks get to report after one rank failed, before they are ended.
GRACE_S = 2.0
#: Seconds a launch may take to reach its first case (importing torch and joining the process
#: group on a loaded machine), if more than the case timeout.
STARTUP_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rank_env(rank: int, world: int, port: int, cpu: bool = False) -> dict[str, str]:
    """A rank's environment; ``cpu``: no GPU visible (a gloo case on a GPU host stays on the CPU)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHELASTIC_")}
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    env.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        ADAMW_PARENT_PID=str(os.getpid()),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONHASHSEED="0",
    )
    if "GLOO_SOCKET_IFNAME" not in os.environ and Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"
    return env


@dataclass
class _Rank:
    rank: int
    proc: subprocess.Popen[bytes]
    log: Path
    stderr: Path
    offset: int = 0
    current: str | None = None
    ended: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)


def _tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_bytes()[-n:].decode("utf-8", "replace")
    except OSError:
        return ""


def _kill(ranks: Sequence[_Rank]) -> None:
    for r in ranks:
        if r.proc.poll() is None:
            try:
                os.killpg(r.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                with contextlib.suppress(ProcessLookupError):
                    r.proc.kill()
    for r in ranks:
        r.proc.wait()


@dataclass
class Launch:
    """What one launch did: records and errors per key, the keys it never started, its pids."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    not_started: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)


def launch_once(
    job: Mapping[str, Any],
    keys: Sequence[str],
    out: Path,
    index: int,
    timeout: float,
    on_result: Callable[[str, dict[str, Any]], None] | None = None,
    poll: float = 0.05,
) -> Launch:
    """Start ``job['world_size']`` ranks for ``keys`` and watch them until they finish, one fails
    or a case runs past ``timeout`` seconds (the first case may take ``max(timeout, STARTUP_S)``
    to begin)."""
    world = int(job["world_size"])
    spec = {**job, "out": str(out), "only": list(keys)}
    path = out / f"launch{index}.json"
    path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    port = free_port()
    ranks: list[_Rank] = []
    for i in range(world):
        log = out / f"rank{i}.jsonl"
        offset = log.stat().st_size if log.exists() else 0
        err = out / f"launch{index}-rank{i}.stderr.txt"
        with open(err, "wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "conformance.distributed.rank", str(path)],
                stdout=subprocess.DEVNULL,
                stderr=fh,
                env=rank_env(i, world, port, cpu=job.get("device", "cpu") == "cpu"),
                start_new_session=True,
            )
        ranks.append(_Rank(i, proc, log, err, offset))
    result = Launch(pids=[rk.proc.pid for rk in ranks])
    (out / f"launch{index}.pids").write_text(" ".join(map(str, result.pids)) + "\n")
    started: dict[str, float] = {}
    last = time.monotonic()  # the last start of a case or record of one
    why: str | None = None
    failed_at: float | None = None
    while True:
        for r in ranks:
            if _read(r, result, started, on_result):
                last = time.monotonic()
        codes = [r.proc.poll() for r in ranks]
        if all(c is not None for c in codes):
            if any(c != 0 for c in codes):
                why = why or "a rank failed"
            break
        now = time.monotonic()
        if failed_at is None and any(c not in (None, 0) for c in codes):
            failed_at = now
        if failed_at is not None and now - failed_at > GRACE_S:
            why = "a rank failed"
            break
        limit = timeout if started else max(timeout, STARTUP_S)
        if now - last > limit:
            why = f"timed out after {timeout:g} s"
            break
        time.sleep(poll)
    _kill(ranks)
    for r in ranks:
        _read(r, result, started, on_result)
    for key in keys:
        if key in result.results:
            continue
        if key not in started:
            result.not_started.append(key)
            continue
        msg = _failure(ranks, key, why or "the ranks exited early")
        result.results[key] = {"status": "error", "error": msg}
        if on_result:
            on_result(key, result.results[key])
    return result


def _read(
    r: _Rank,
    result: Launch,
    started: dict[str, float],
    on_result: Callable[[str, dict[str, Any]], None] | None,
) -> bool:
    """Consume the rank's new lines; True when a case started or finished."""
    try:
        with open(r.log, "rb") as fh:
            fh.seek(r.offset)
            data = fh.read()
    except OSError:
        return False
    end = data.rfind(b"\n")
    if end < 0:
        return False
    r.offset += end + 1
    progress = False
    for line in data[: end + 1].splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind, key = msg.get("type"), msg.get("key")
        if kind == "start":
            r.current = key
            started.setdefault(key, time.monotonic())
            progress = True
        elif kind == "end":
            r.ended.add(key)
        elif kind == "error":
            r.errors[key] = msg.get("error", "")
        elif kind == "case":
            result.results[key] = {"status": "ok", "record": msg}
            progress = True
            if on_result:
                on_result(key, result.results[key])
    return progress


def _failure(ranks: Sequence[_Rank], key: str, why: str) -> str:
    raised = [(r.rank, r.errors[key]) for r in ranks if key in r.errors]
    if raised:
        why = f"rank {raised[0][0]} raised {raised[0][1].strip().splitlines()[0]}"
    lines = [f"case {key}: {why}; every rank was ended (process groups killed)"]
    for r in ranks:
        code = r.proc.returncode
        if key in r.errors:
            state = f"raised (traceback below)\n{r.errors[key].strip()}"
        elif key in r.ended:
            state = "finished its part"
        elif r.current == key:
            state = "did not finish (stuck or dead)"
        else:
            state = "had not started it"
        status = "killed" if code is not None and code < 0 else f"exit status {code}"
        lines.append(f"rank {r.rank} ({status}): {state}")
        tail = _tail(r.stderr).strip()
        if tail and key not in r.errors and code not in (0, None) and code >= 0:
            lines.append(f"--- rank {r.rank} stderr tail ---\n{tail}")
    return "\n".join(lines)


def run_job(
    job: Mapping[str, Any],
    out: Path,
    timeout: float,
    on_result: Callable[[str, dict[str, Any]], None] | None = None,
) -> tuple[dict[str, dict[str, Any]], list[int]]:
    """Every case of ``job``, relaunching after a failure for the cases not yet started; the
    results per key and every pid started."""
    out.mkdir(parents=True, exist_ok=True)
    keys = [c["key"] for c in job["cases"]]
    results: dict[str, dict[str, Any]] = {}
    pids: list[int] = []
    index = len(list(out.glob("launch*.json")))
    while keys:
        got = launch_once(job, keys, out, index, timeout, on_result)
        index += 1
        pids.extend(got.pids)
        results.update(got.results)
        if got.not_started and len(got.not_started) == len(keys):
            # nothing started: the ranks cannot run at all here (import, rendezvous)
            err = [
                _tail(out / f"launch{index - 1}-rank{r}.stderr.txt") for r in range(int(job["world_size"]))
            ]
            msg = "the ranks exited before the first case:\n" + "\n".join(e.strip() for e in err if e.strip())
            for k in keys:
                results[k] = {"status": "error", "error": msg[-3000:]}
                if on_result:
                    on_result(k, results[k])
            break
        keys = got.not_started
    return results, pids
