"""``python -m conformance.reliability --out DIR``: every reliability report, one after another
(parity, NaN/Inf, state fidelity, transfer); ``--only`` picks some."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from conformance.reliability import fidelity, nan_inf, parity, transfer_check

REPORTS = {
    "parity": parity.main,
    "nan_inf": nan_inf.main,
    "fidelity": fidelity.main,
    "transfer": transfer_check.main,
}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance.reliability", description=__doc__)
    p.add_argument("--out", type=Path, required=True, help="directory for the reports")
    p.add_argument("--only", nargs="*", choices=list(REPORTS), help="run only these reports")
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    status = 0
    for name in a.only or REPORTS:
        status |= REPORTS[name](["--out", str(a.out)])
    return status


if __name__ == "__main__":
    raise SystemExit(main())
