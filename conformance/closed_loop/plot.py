"""Loss-curve figure of closed-loop run records (used for docs/conformance/closed_loop.md).

Top panel: the minibatch loss per step of each framework run (and the torch-profile
reference). Bottom panel (log y): :math:`|L^{fw}_t - L^{torch}_t|`, what a naive port of the
same hyperparameters changes, next to :math:`|L^{fw}_t - L^{ref,profile}_t|`, the rounding-level
agreement with the reference under the framework's own profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def plot_loss_curves(results: Sequence[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Write the two-panel PNG for records of one task/dtype and return ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results if r.get("run")]
    torch_run = next((r["run"] for r in runs if r["framework"] == "torch"), None)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9.0, 7.0), dpi=110, sharex=True)
    floor = 1e-18
    for r in runs:
        loss = np.asarray(r["run"]["loss"], dtype=np.float64)
        steps = np.arange(1, len(loss) + 1)
        (line,) = top.plot(
            steps, loss, lw=1.0, label=f"{r['framework']} (test acc {r['run']['test_acc']:.3f})"
        )
        if torch_run is not None and r["framework"] != "torch":
            d = np.abs(loss - np.asarray(torch_run["loss"]))
            bottom.plot(
                steps,
                np.maximum(d, floor),
                color=line.get_color(),
                lw=1.0,
                label=f"{r['framework']} vs torch (naive port)",
            )
        if r.get("reference"):
            d = np.abs(loss - np.asarray(r["reference"]["loss"]))
            bottom.plot(
                steps,
                np.maximum(d, floor),
                color=line.get_color(),
                lw=0.8,
                ls=":",
                label=f"{r['framework']} vs reference[{r['profile']}]",
            )
    top.set_ylabel("minibatch loss")
    top.set_title(title or "closed loop: loss per step")
    top.legend(fontsize=7)
    top.grid(True, alpha=0.3)
    bottom.set_yscale("log")
    bottom.set_xlabel("step")
    bottom.set_ylabel("|loss difference| (floored at 1e-18)")
    bottom.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    bottom.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
