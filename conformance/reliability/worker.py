"""The worker process of the reliability reports: ``python -m conformance.reliability.worker``.

Reads a JSON list of jobs on stdin and prints one line ``ADAMW_RELIABILITY_JSON:<result>`` per
job as soon as it is done (so that the parent knows which job a crash interrupted). A job is
``{"kind": ..., ...}``; the kinds are the job functions of the report modules. Keras jobs need
the worker started with ``KERAS_BACKEND`` set (the parent does that).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from conformance.reliability.common import MARK


def run_job(job: Mapping[str, Any]) -> Any:
    """The result of one job (the job modules are imported on first use)."""
    kind = job["kind"]
    if kind == "parity":
        from conformance.reliability.native import parity_case

        return parity_case(job["column"], job["row"])
    if kind in ("propagation", "amp"):
        from conformance.reliability import nan_inf_jobs

        return getattr(nan_inf_jobs, kind)(job)
    if kind in ("prime", "resume"):
        from conformance.reliability import fidelity_jobs

        return getattr(fidelity_jobs, kind)(job)
    if kind in ("chain", "refusals"):
        from conformance.reliability import transfer_check

        return transfer_check.chain_job(job) if kind == "chain" else transfer_check.refusal_job(job)
    raise ValueError(f"unknown job kind {kind!r}")


def main() -> int:
    jobs = json.loads(sys.stdin.read())
    for job in jobs:
        try:
            result = run_job(job)
        except Exception as exc:  # reported to the parent as the job's result
            result = {"error": type(exc).__name__, "message": str(exc)[:500]}
        sys.stdout.write(MARK + json.dumps(result) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
