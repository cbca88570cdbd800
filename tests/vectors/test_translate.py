"""`adamw-ref translate`: the stated residual bound holds when both sides run (the reference with
each side's profile, 100 steps on seeded gradients), and the naive untranslated config breaks it."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys

import pytest

from adamw_ref import AdamWConfig, get_profile, run_trajectory
from adapters.translate import (
    FRAMEWORKS,
    cli_main,
    effective_eps,
    ratio_bound,
    source_config,
    step_bounds,
    translate,
)

STEPS = 100
G = 1e-4  # every gradient element has |g| in [G, 10G]: sqrt(v_hat) >= G, the --grad-scale premise
LR, WD, EPS = 1e-3, 1e-2, 1e-8


def _stream(seed: int = 5) -> tuple[dict[str, list[float]], list[dict[str, list[float]]]]:
    r = random.Random(seed)
    params = {"w": [r.uniform(-0.5, 0.5) for _ in range(4)], "b": [r.uniform(-0.5, 0.5)]}
    grads = [
        {k: [r.choice((-1, 1)) * G * r.uniform(1, 10) for _ in v] for k, v in params.items()}
        for _ in range(STEPS)
    ]
    return params, grads


def _max_diff(a: AdamWConfig, b: AdamWConfig) -> list[float]:
    params, grads = _stream()
    ta, tb = run_trajectory(params, grads, a), run_trajectory(params, grads, b)
    out = []
    for t in range(1, STEPS + 1):
        out.append(max(abs(x - y) for k in params for x, y in zip(ta.params[t][k], tb.params[t][k])))
        assert all(abs(x) <= 2.0 for k in params for x in ta.params[t][k])  # param_scale premise
    return out


def _naive(target: str) -> AdamWConfig:
    # What a user gets by calling the target constructor with the learning rate (and the weight
    # decay where the constructor requires one) copied over unchanged.
    prof = get_profile(FRAMEWORKS[target].profile)
    cfg = prof.config.replace(lr=LR)
    return cfg.replace(weight_decay=WD) if "weight_decay" in prof.required else cfg


@pytest.mark.parametrize(
    ("target", "eps_match"),
    [
        ("keras", "asymptotic"),
        ("keras", "first"),
        ("optax", "asymptotic"),
        ("mlx", "asymptotic"),
        ("paper", "asymptotic"),
        ("tfa", "asymptotic"),
        ("hf_legacy", "asymptotic"),
        ("apex", "asymptotic"),
    ],
)
def test_translation_bound_holds_and_naive_violates(target: str, eps_match: str) -> None:
    src = source_config("torch", lr=LR, weight_decay=WD, eps=EPS)
    tr = translate("torch", target, src, eps_match=eps_match, grad_scale=G, param_scale=2.0)
    assert tr.reproducible
    bound = step_bounds(tr, STEPS)
    diff = _max_diff(tr.source_config, tr.target_config)
    for t in range(STEPS):
        assert diff[t] <= bound[t], (t + 1, diff[t], bound[t])
    naive = _max_diff(tr.source_config, _naive(target))
    assert naive[-1] > bound[-1], (naive[-1], bound[-1])


def test_exact_translations_differ_by_rounding_only() -> None:
    src = source_config("torch", lr=LR, weight_decay=WD)
    for target in ("optax", "mlx", "paper", "apex"):
        tr = translate("torch", target, src)
        assert tr.exact, (target, tr.residuals)
        assert step_bounds(tr, STEPS)[-1] < 1e-12


def test_specific_native_arguments() -> None:
    src = source_config("torch", lr=LR, weight_decay=WD)
    # optax's default weight_decay is 1e-4: it must be passed explicitly.
    opt = translate("torch", "optax", src)
    assert opt.native()["weight_decay"] == WD
    assert any("optax: pass weight_decay explicitly" in n for n in opt.notes)
    # TF-Addons and the paper do not multiply the decay by lr: wd_tfa = lr * wd.
    assert translate("torch", "tfa", src).native()["weight_decay"] == LR * WD
    assert translate("torch", "paper", src).native()["lambda"] == LR * WD
    # MLX needs bias_correction=True.
    assert translate("torch", "mlx", src).native()["bias_correction"] is True
    # Keras: the same weight_decay (both multiply by lr); epsilon-hat chosen per eps_match.
    k1 = translate("torch", "keras", src).native()
    k2 = translate("torch", "keras", src, eps_match="first").native()
    assert k1["weight_decay"] == WD and k1["epsilon"] == src.eps
    assert k2["epsilon"] == pytest.approx(src.eps * math.sqrt(1 - src.beta2), rel=1e-15)
    # The reverse direction undoes it.
    back = translate(
        "keras", "torch", translate("torch", "keras", src, eps_match="first").target_config, eps_match="first"
    )
    assert back.native()["eps"] == pytest.approx(src.eps, rel=1e-14)


def test_eps_hat_statements() -> None:
    src = source_config("torch", lr=LR, weight_decay=WD, eps=EPS)
    tr = translate("torch", "keras", src)
    # eps_t / eps = 1/sqrt(1 - b2^t): 31.6 at t=1 for b2 = 0.999.
    assert effective_eps(tr.target_config, 1) / EPS == pytest.approx(1 / math.sqrt(0.001))
    payload = json.loads(json.dumps(__import__("adapters.translate", fromlist=["to_json"]).to_json(tr)))
    # Independent: first t with 1/sqrt(1 - 0.999^t) - 1 < 1%, by brute force.
    t = 1
    while 1 / math.sqrt(1 - 0.999**t) - 1 > 0.01:
        t += 1
    assert payload["eps"]["within1PercentFromStep"] == t
    assert payload["residuals"][0]["knob"] == "eps"


def test_ratio_bound_is_a_bound() -> None:
    # |m_hat| <= C_t sqrt(v_hat) for adversarial gradients: alternating huge/tiny magnitudes.
    cfg = get_profile("torch").config
    r = random.Random(1)
    m = v = 0.0
    for t in range(1, 300):
        g = r.choice((-1, 1)) * 10.0 ** r.uniform(-6, 2)
        m = cfg.beta1 * m + (1 - cfg.beta1) * g
        v = cfg.beta2 * v + (1 - cfg.beta2) * g * g
        mh, vh = m / (1 - cfg.beta1**t), v / (1 - cfg.beta2**t)
        assert abs(mh) <= ratio_bound(cfg, t) * math.sqrt(vh) * (1 + 1e-12)


def test_unreproducible_is_reported() -> None:
    # MLX's default (no bias correction) cannot be expressed by torch.
    tr = translate("mlx", "torch", source_config("mlx", lr=LR))
    assert not tr.reproducible and math.isinf(step_bounds(tr, 10)[-1])


def test_cli_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--from", "torch", "--to", "keras", "--lr", "1e-3", "--weight-decay", "0.01"]) == 0
    text = capsys.readouterr().out
    assert "keras.optimizers.AdamW(" in text and "from step 3925" in text
    assert cli_main(["--from", "torch", "--to", "optax", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["exact"] is True and data["target"]["native"]["weight_decay"] == 0.01
    assert cli_main(["--from", "mlx", "--to", "torch"]) == 1
    with pytest.raises(SystemExit):
        cli_main(["--from", "torch", "--to", "keras", "--betas", "0.9"])


def test_cli_rejects_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["--from", "nope", "--to", "keras"])
    assert cli_main(["--from", "torch", "--to", "keras", "--lr", "-1"]) == 2
    assert "lr" in capsys.readouterr().err


def _in_fresh_process_if_keras_taken(request: pytest.FixtureRequest, adapter_name: str) -> bool:
    """Keras fixes its backend per process. When this process already imported keras with another
    backend, run this very test in a child process with KERAS_BACKEND set and report its result
    here (so CI, which imports every framework, skips nothing). True when the child ran it."""
    if not adapter_name.startswith("keras-") or os.environ.get("ADAMW_TEST_CHILD"):
        return False
    backend = adapter_name.split("-", 1)[1]
    keras = sys.modules.get("keras")
    if keras is None or keras.backend.backend() == backend:
        return False
    env = {**os.environ, "KERAS_BACKEND": backend, "ADAMW_TEST_CHILD": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", request.node.nodeid],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout, proc.stdout[-2000:]
    return True


@pytest.mark.parametrize(
    ("target", "adapter_name"),
    [
        ("optax", "optax"),
        ("mlx", "mlx"),
        ("keras", "keras-torch"),
        ("keras", "keras-jax"),
    ],
)
def test_translation_through_the_frameworks(
    target: str, adapter_name: str, request: pytest.FixtureRequest
) -> None:
    # Where installed: torch runs the source config, the target framework the translated one,
    # both in float64 when the adapter offers it; the same stated bound must hold.
    if _in_fresh_process_if_keras_taken(request, adapter_name):
        return
    np = pytest.importorskip("numpy")
    pytest.importorskip("torch")
    from adapters import AdapterError, load_adapter

    try:
        src_ad, dst_ad = load_adapter("torch"), load_adapter(adapter_name)
        if isinstance(dst_ad, type):  # registry returned the class (class-level info)
            dst_ad = dst_ad()
    except AdapterError as exc:
        pytest.skip(f"{adapter_name}: {exc}")
    dtype = "float64"
    if dtype not in dst_ad.info.dtypes:
        pytest.skip(f"{adapter_name} has no float64")
    src = source_config("torch", lr=LR, weight_decay=WD, eps=EPS)
    tr = translate("torch", target, src, grad_scale=G, param_scale=2.0)
    params, grads = _stream()
    runs = []
    try:
        for ad, cfg in ((src_ad, tr.source_config), (dst_ad, tr.target_config)):
            runs.append(ad.create(cfg, {k: np.array(v) for k, v in params.items()}, dtype=dtype))
    except AdapterError as exc:  # FrameworkUnavailable included
        pytest.skip(f"{adapter_name}: {exc}")
    # MLX keeps learning_rate and beta**step in float32 even for float64 parameters (documented
    # in adapters/mlx/adapter.py): its rounding term is binary32 although the arrays are float64.
    bound = step_bounds(tr, STEPS, "float32" if adapter_name == "mlx" else "float64")
    try:
        for t, g in enumerate(grads):
            for run in runs:
                run.step({k: np.array(v) for k, v in g.items()})
            a, b = runs[0].params(), runs[1].params()
            diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in params)
            assert diff <= bound[t], (t + 1, diff, bound[t])
    finally:
        for run in runs:
            run.close()


@pytest.mark.parametrize(
    ("target", "adapter_name"),
    [
        ("torch", "torch"),
        ("optax", "optax"),
        ("mlx", "mlx"),
        ("keras", "keras-torch"),
    ],
)
def test_native_spelling_agrees_with_the_adapters(
    target: str, adapter_name: str, request: pytest.FixtureRequest
) -> None:
    # translate spells native arguments in its own table; where an adapter's to_native can be
    # called, the arguments both name must have the same values.
    if _in_fresh_process_if_keras_taken(request, adapter_name):
        return
    from adapters import AdapterError, load_adapter

    try:
        adapter = load_adapter(adapter_name)
        if isinstance(adapter, type):
            adapter = adapter()
        src = source_config("keras", lr=LR, weight_decay=WD, eps=1e-7)
        tr = translate("keras", target, src)
        theirs = adapter.to_native(tr.target_config)
    except (AdapterError, ImportError) as exc:
        pytest.skip(f"{adapter_name}: {exc}")
    ours = tr.native()
    common = set(ours) & set(theirs)
    assert len(common) >= 3, (ours, theirs)
    assert {k: ours[k] for k in common} == {k: theirs[k] for k in common}


def test_translate_accepts_profile_names_and_aliases() -> None:
    from adapters.translate import framework_name, translate

    assert framework_name("keras3") == framework_name("keras-jax") == "keras"
    assert framework_name("pytorch") == "torch"
    tr = translate("keras3", "pytorch")
    assert (tr.source, tr.target) == ("keras", "torch")
    assert tr.target_config == translate("keras", "torch").target_config
