"""Generate the figures of docs/concepts/ from the reference itself (adamw_ref) with matplotlib.

    python docs/concepts/make_figures.py        # writes docs/concepts/img/*.png

Every curve is computed by running :func:`adamw_ref.run_trajectory` (or :func:`adamw_ref.step`)
with a named profile; nothing is drawn from a closed-form formula except the reference lines
labelled as such. The PNGs are committed; rerun after changing the reference.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from adamw_ref import (
    Delayed,
    LinearWarmup,
    get_profile,
    init,
    run_trajectory,
    step,
)

OUT = Path(__file__).resolve().parent / "img"
plt.rcParams.update({"figure.dpi": 110, "font.size": 9, "savefig.bbox": "tight",
                     "axes.grid": True, "grid.alpha": 0.3, "svg.hashsalt": "adamw-ref",
                     "path.simplify": False})
META = {"Software": None}  # no version/timestamp metadata: regenerating gives the same bytes


def _decay_only(profile: str, lr: float, wd: float, steps: int, w0: float = 1.0,
                **changes: object) -> list[float]:
    cfg = get_profile(profile).config.replace(lr=lr, weight_decay=wd, **changes)
    traj = run_trajectory({"w": [w0]}, ({"w": [0.0]} for _ in range(steps)), cfg)
    return [p["w"][0] for p in traj.params]


def shrinkage() -> None:
    """Decay step vectors on a 2-D example: decoupled (torch) vs coupled L2 (adam_l2).

    Both optimizers have seen the same gradient history, large on axis 0 and small on axis 1, so
    sqrt(v_hat) differs by 100x between the coordinates. The decay step is the difference between
    one step with weight decay and the same step without it.
    """
    lr, wd = 0.1, 0.5
    history = [{"w": [1.0, 0.01]}, {"w": [-1.0, -0.01]}] * 10
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    for k in range(16):
        ang = 2 * math.pi * (k + 0.5) / 16
        w = [math.cos(ang), math.sin(ang)]
        for profile, color, label in (("torch", "tab:blue", "decoupled (AdamW)"),
                                      ("adam_l2", "tab:red", "coupled L2 (Adam+L2)")):
            cfg = get_profile(profile).config.replace(lr=lr, weight_decay=wd)
            steps = {}
            for decay in (wd, 0.0):
                c = cfg.replace(weight_decay=decay)
                state = init({"w": w}, c)
                p = {"w": tuple(w)}
                for g in history:  # same history; parameters held at w
                    _, state = step(p, g, state, c)
                new, _ = step(p, {"w": [0.0, 0.0]}, state, c)
                steps[decay] = new["w"]
            d = [steps[wd][i] - steps[0.0][i] for i in range(2)]
            ax.annotate("", xy=(w[0] + 3 * d[0], w[1] + 3 * d[1]), xytext=(w[0], w[1]),
                        arrowprops={"arrowstyle": "->", "color": color, "lw": 1.2})
            if k == 0:
                ax.plot([], [], color=color, label=label)
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, ls=":", color="gray"))
    ax.plot([0], [0], "k+")
    ax.set_aspect("equal")
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-1.6, 1.6)
    ax.set_xlabel(r"$w_0$ (large past gradients)")
    ax.set_ylabel(r"$w_1$ (small past gradients)")
    ax.set_title("Decay step (x3) at points of the unit circle")
    ax.legend(loc="lower left", fontsize=8)
    fig.savefig(OUT / "shrinkage.png", metadata=META)
    plt.close(fig)


def half_life() -> None:
    """|w| vs step with zero gradients for several eta*lambda (torch profile)."""
    fig, ax = plt.subplots(figsize=(5.2, 3.3))
    steps = 3000
    for s in (1e-2, 3e-3, 1e-3, 3e-4):
        ws = _decay_only("torch", lr=1e-3, wd=s / 1e-3, steps=steps)
        line, = ax.plot(range(steps + 1), ws, label=rf"$\eta\lambda$={s:g}")
        t_half = math.log(2) / -math.log1p(-s)
        if t_half < steps:
            ax.axvline(t_half, color=line.get_color(), ls=":", lw=0.8)
    ax.axhline(0.5, color="gray", lw=0.8)
    ax.set_xlabel("step t")
    ax.set_ylabel(r"$|w_t|/|w_0|$ (no gradients)")
    ax.set_title(r"Half-life $t_{1/2}=\ln 2/(-\ln(1-\eta\lambda))\approx \ln 2/(\eta\lambda)$")
    ax.legend(fontsize=8)
    fig.savefig(OUT / "half_life.png", metadata=META)
    plt.close(fig)


def warmup() -> None:
    """Cumulative shrinkage with linear warmup: decay from step 1 vs delayed until the end of
    warmup with a compensated lambda_post giving the same total shrinkage at T."""
    lr, wd, warm, total = 1e-2, 1.0, 200, 600
    sched = LinearWarmup(warmup_steps=warm)
    base = _decay_only("torch", lr, wd, total, lr_schedule=sched)
    # Compensation: solve prod_{c>=W}(1 - lr*eta(c)*lam) = base[T] by bisection on lam.
    def delayed(lam: float) -> list[float]:
        return _decay_only("torch", lr, lam, total, lr_schedule=sched,
                           wd_schedule=Delayed(until=warm))
    lo, hi = wd, 4 * wd
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if delayed(mid)[-1] > base[-1] else (lo, mid)
    lam_post = (lo + hi) / 2
    fig, ax = plt.subplots(figsize=(5.2, 3.3))
    ax.plot(base, label=rf"decay from step 1, $\lambda$={wd:g}")
    ax.plot(delayed(wd), ls="--", label=rf"delayed to step {warm}, same $\lambda$")
    ax.plot(delayed(lam_post), label=rf"delayed, compensated $\lambda_{{post}}$={lam_post:.3f}")
    ax.axvline(warm, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("step t")
    ax.set_ylabel(r"cumulative shrinkage $\prod(1-\alpha\eta_t\lambda_t)$")
    ax.set_title(f"Linear warmup over {warm} steps, lr={lr:g}")
    ax.legend(fontsize=8)
    fig.savefig(OUT / "warmup.png", metadata=META)
    plt.close(fig)


def epsilon() -> None:
    """The effective eps_t of an epsilon-hat implementation, measured from the reference.

    A constant gradient g gives m_hat = g and v_hat = g^2 at every step, so the update is
    u_t = g/(|g| + eps_t): eps_t = g/u_t - |g|. Measured with the keras3 profile (eps-hat) for
    several beta2 and divided by eps_hat.
    """
    fig, ax = plt.subplots(figsize=(5.2, 3.3))
    g, eps = 1e-8, 1e-8
    ts = [1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]
    for b2 in (0.95, 0.99, 0.999):
        cfg = get_profile("keras3").config.replace(lr=1.0, weight_decay=0.0, eps=eps, beta2=b2)
        traj = run_trajectory({"w": [0.0]}, ({"w": [g]} for _ in range(ts[-1])), cfg)
        ratio = []
        for t in ts:
            u = traj.params[t - 1]["w"][0] - traj.params[t]["w"][0]
            ratio.append((g / u - g) / eps)
        ax.plot(ts, ratio, marker=".", label=rf"$\beta_2$={b2}")
    ax.axhline(1.0, color="gray", lw=0.8, label=r"canonical $\epsilon$ (PyTorch, Optax)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel(r"$\epsilon_t/\hat\epsilon = 1/\sqrt{1-\beta_2^t}$")
    ax.set_title(r"Effective $\epsilon$ of an $\hat\epsilon$ implementation (Keras)")
    ax.legend(fontsize=8)
    fig.savefig(OUT / "eps_hat.png", metadata=META)
    plt.close(fig)


def proximal() -> None:
    """Decay only, large s: multiplicative (1-s)^t vs proximal (1+s)^-t (torch vs proximal)."""
    fig, ax = plt.subplots(figsize=(5.2, 3.3))
    for s, color in ((0.05, "tab:blue"), (0.3, "tab:orange")):
        mult = _decay_only("torch", 1.0, s, 25)
        prox = _decay_only("proximal", 1.0, s, 25)
        ax.plot(mult, color=color, label=f"(1-s)^t, s={s}")
        ax.plot(prox, color=color, ls="--", label=f"1/(1+s)^t, s={s}")
    ax.set_xlabel("step t")
    ax.set_ylabel(r"$|w_t|/|w_0|$ (no gradients)")
    ax.set_title("Multiplicative vs exact proximal decay")
    ax.legend(fontsize=8)
    fig.savefig(OUT / "proximal.png", metadata=META)
    plt.close(fig)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for fn in (shrinkage, half_life, warmup, epsilon, proximal):
        fn()
        print(f"wrote {fn.__name__}")


if __name__ == "__main__":
    main()
