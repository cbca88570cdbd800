"""Client drift in federated averaging with local AdamW, computed by the reference.

    python docs/concepts/make_federated_figure.py      # writes docs/concepts/img/federated_drift.png

K clients, each with its own quadratic loss f_k(w) = 1/2 sum_i a_ki (w_i - c_ki)^2 (different
optima c_k and curvatures a_k: heterogeneous data), run E local AdamW steps from the server model;
the server averages their parameters. The gradients are computed from each client's current
parameters (closed loop). Every step is :func:`adamw_ref.step`, driven by the reference's own
simulation of the protocol (:func:`conformance.distributed.federated.simulate`); decoupled decay
is the ``torch`` profile, coupled L2 the ``adam_l2`` profile, with the same lr and lambda. The
numbers quoted in docs/concepts/federated.md are printed by this script.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from adamw_ref import get_profile
from conformance.distributed.federated import FedSetup, simulate

OUT = Path(__file__).resolve().parent / "img"
plt.rcParams.update(
    {
        "figure.dpi": 110,
        "font.size": 9,
        "savefig.bbox": "tight",
        "axes.grid": True,
        "grid.alpha": 0.3,
        "path.simplify": False,
    }
)
META = {"Software": None}

K, D, E, R = 4, 8, 10, 30
LR = 0.05
LAMBDAS = (0.0, 0.1, 0.3, 1.0, 3.0)
RNG = np.random.default_rng(2024)
CENTERS = RNG.normal(0.0, 1.0, (K, D)) + 2.0  # client optima: shared offset + disagreement
CURV = np.exp(RNG.normal(0.0, 1.0, (K, D)))  # per-client curvatures (heterogeneous scales)
W0 = {"w": np.zeros(D)}


def grad_fn(k: int, r: int, e: int, params: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    w = np.array([float(x) for x in params["w"]])
    return {"w": CURV[k] * (w - CENTERS[k])}


def run(profile: str, lam: float, variant: str = "reset") -> dict[str, Any]:
    cfg = get_profile(profile).config.replace(lr=LR, weight_decay=lam)
    setup = FedSetup(clients=K, rounds=R, local_steps=E)
    tr = simulate(cfg, W0, grad_fn, setup, variant)
    server = [W0["w"]] + [s["w"] for s in tr.server]
    drift, cos = [], []
    for r in range(R):
        ends = np.stack([c["w"] for c in tr.ends[r]])
        mean = ends.mean(axis=0)
        drift.append(float(np.mean(np.linalg.norm(ends - mean, axis=1))))
        deltas = ends - server[r]
        norms = np.linalg.norm(deltas, axis=1, keepdims=True)
        unit = deltas / np.where(norms > 0, norms, 1.0)
        sims = [float(unit[i] @ unit[j]) for i in range(K) for j in range(i + 1, K)]
        cos.append(sum(sims) / len(sims))
    return {"drift": drift, "cos": cos, "final": server[-1]}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.9), layout="constrained")
    rounds = list(range(1, R + 1))
    dec = {lam: run("torch", lam) for lam in LAMBDAS}
    cpl = {lam: run("adam_l2", lam) for lam in LAMBDAS}
    for lam, one in dec.items():
        axes[0].plot(rounds, one["drift"], label=f"lambda = {lam:g}")
    axes[0].set(
        title="(a) client drift per round, decoupled decay",
        xlabel="round",
        ylabel="drift: mean ||theta_k - mean_k theta_k||",
        yscale="log",
    )
    axes[0].legend(fontsize=7)
    last = slice(R - 10, R)
    series: tuple[tuple[dict[float, dict[str, Any]], str, str], ...] = (
        (dec, "o-", "decoupled (torch profile)"),
        (cpl, "s--", "coupled L2 (adam_l2)"),
    )
    for res, style, name in series:
        axes[1].plot(LAMBDAS, [res[lam]["drift"][-1] for lam in LAMBDAS], style, label=f"{name}: drift")
        axes[1].plot(
            LAMBDAS,
            [float(np.linalg.norm(res[lam]["final"])) for lam in LAMBDAS],
            style,
            alpha=0.35,
            label=f"{name}: ||server||",
        )
        axes[2].plot(LAMBDAS, [float(np.mean(res[lam]["cos"][last])) for lam in LAMBDAS], style, label=name)
    axes[1].set(title=f"(b) drift and server norm after round {R}", xlabel="lambda", yscale="log")
    axes[2].axhline(-1 / (K - 1), color="grey", lw=0.8, ls=":")
    axes[2].set(title=f"(c) cosine between clients' updates, rounds {R - 9}-{R}", xlabel="lambda")
    for ax in axes[1:]:
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlim(left=0)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"FedAvg, K={K} clients, E={E} local AdamW steps (fresh optimizer each round), lr={LR}, "
        f"{D} coordinates, heterogeneous quadratics; computed by adamw_ref",
        fontsize=9,
    )
    fig.savefig(OUT / "federated_drift.png", metadata=META)
    plt.close(fig)
    for (_, _, name), res in zip(series, (dec, cpl), strict=True):
        for lam in LAMBDAS:
            r = res[lam]
            print(
                f"{name:10s} lambda={lam:<4g} drift(round 1)={r['drift'][0]:.4g} "
                f"drift(round {R})={r['drift'][-1]:.4g} cos={np.mean(r['cos'][last]):.4f} "
                f"|server|={math.sqrt(float(r['final'] @ r['final'])):.4g} "
                f"server={np.array2string(r['final'], precision=4)}"
            )


if __name__ == "__main__":
    main()
