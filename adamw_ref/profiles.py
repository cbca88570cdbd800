"""Named profiles: each known implementation's defaults and knob values, with its source.

A profile is data: a name, the :class:`~adamw_ref.config.AdamWConfig` its defaults produce,
the hyperparameters its constructor requires (no default), the implementations it describes
and where that was read. ``get_profile(name).config.replace(lr=...)`` gives a concrete run.
Sources were checked against the installed packages (torch 2.13.0, keras 3.15.1, optax 0.2.8,
mlx 0.32.4) where installed; the others against the public source cited.
"""

from __future__ import annotations

from dataclasses import dataclass

from adamw_ref.config import AdamWConfig
from adamw_ref.errors import ConfigError
from adamw_ref.knobs import (
    AmsgradMode,
    DecayForm,
    DecayScaling,
    DecayTiming,
    EpsPlacement,
    ScheduleCount,
    StepCountScope,
)


@dataclass(frozen=True)
class Profile:
    """A named implementation: its default config, required arguments, and provenance."""

    name: str
    title: str
    config: AdamWConfig
    implementations: tuple[str, ...]
    source: str
    required: tuple[str, ...] = ()
    notes: str = ""


_BASE = AdamWConfig()
_EPS_HAT = EpsPlacement.BEFORE_BIAS_CORRECTION

PROFILES: dict[str, Profile] = {}


def _add(p: Profile) -> None:
    PROFILES[p.name] = p


_add(
    Profile(
        name="torch",
        title="PyTorch torch.optim.AdamW",
        config=_BASE.replace(step_count_scope=StepCountScope.PER_PARAMETER),
        implementations=(
            "torch.optim.AdamW (foreach, for-loop, fused)",
            "torch.optim.Adam(decoupled_weight_decay=True)",
            "timm create_optimizer('adamw')",
        ),
        source="torch/optim/adam.py _single_tensor_adam: param.mul_(1 - lr * weight_decay); "
        "denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps); "
        "param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1) (torch 2.13.0)",
        notes="state['step'] is per parameter; lr_scheduler.step() after optimizer.step() means "
        "the first update uses the schedule at count 0.",
    )
)
_add(
    Profile(
        name="keras3",
        title="Keras 3 keras.optimizers.AdamW",
        config=_BASE.replace(eps=1e-7, weight_decay=0.004, eps_placement=_EPS_HAT),
        implementations=("keras.optimizers.AdamW (TensorFlow, JAX, PyTorch backends)",),
        source="keras/src/optimizers/base_optimizer.py _apply_weight_decay: "
        "variable.assign(variable - variable * wd * lr); keras/src/optimizers/adam.py update_step: "
        "alpha = lr * sqrt(1 - b2**t) / (1 - b1**t); variable -= m * alpha / (sqrt(v) + epsilon) "
        "(keras 3.15.1)",
        notes="epsilon is 'epsilon hat'; schedules see iterations before the increment.",
    )
)
_add(
    Profile(
        name="tf_keras",
        title="tf.keras (Keras 2) AdamW",
        config=_BASE.replace(eps=1e-7, weight_decay=0.004, eps_placement=_EPS_HAT),
        implementations=("tf_keras.optimizers.AdamW",),
        source="keras-team/tf-keras tf_keras/optimizers/adamw.py and optimizer.py "
        "_apply_weight_decay: variable.assign_sub(variable * wd * lr)",
    )
)
_add(
    Profile(
        name="optax",
        title="Optax optax.adamw",
        config=_BASE.replace(
            weight_decay=1e-4,
            decay_form=DecayForm.ADDED_TO_UPDATE,
            amsgrad_mode=AmsgradMode.BIAS_CORRECTED_V,
        ),
        implementations=("optax.adamw", "optax.nadamw (nesterov=True)"),
        source="optax/_src/alias.py adamw: chain(scale_by_adam(b1, b2, eps, eps_root), "
        "add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate)) "
        "(optax 0.2.8)",
        required=("lr",),
        notes="learning_rate has no default; optax.amsgrad maxes the bias-corrected nu.",
    )
)
_add(
    Profile(
        name="paper",
        title="Loshchilov & Hutter, Algorithm 2 (AdamW)",
        config=_BASE.replace(
            decay_scaling=DecayScaling.SCHEDULE_MULTIPLIER,
            schedule_count=ScheduleCount.POST_INCREMENT,
        ),
        implementations=("Decoupled Weight Decay Regularization, ICLR 2019, Algorithm 2",),
        source="arXiv:1711.05101 Algorithm 2 line 12: theta_t <- theta_{t-1} - eta_t (alpha "
        "m_hat/(sqrt(v_hat)+eps) + lambda theta_{t-1}); eta_t = SetScheduleMultiplier(t)",
        required=("weight_decay",),
        notes="the paper gives no default lambda (it normalises lambda by sqrt(batches*epochs)).",
    )
)
_add(
    Profile(
        name="tfa",
        title="TensorFlow Addons tfa.optimizers.AdamW",
        config=_BASE.replace(eps=1e-7, eps_placement=_EPS_HAT, decay_scaling=DecayScaling.UNSCALED),
        implementations=("tensorflow_addons.optimizers.AdamW",),
        source="tensorflow_addons/optimizers/weight_decay_optimizers.py _decay_weights_op: "
        "var.assign_sub(weight_decay * var) before the wrapped tf.keras Adam step",
        required=("weight_decay",),
    )
)
_add(
    Profile(
        name="hf_legacy",
        title="Hugging Face transformers.AdamW (removed)",
        config=_BASE.replace(
            eps=1e-6,
            weight_decay=0.0,
            eps_placement=_EPS_HAT,
            decay_timing=DecayTiming.AFTER_STEP,
            step_count_scope=StepCountScope.PER_PARAMETER,
        ),
        implementations=("transformers.AdamW (before #36954)",),
        source="transformers src/transformers/optimization.py AdamW.step: denom = "
        "exp_avg_sq.sqrt().add_(eps); p.addcdiv_(exp_avg, denom, value=-step_size); then "
        "p.add_(p, alpha=-lr * weight_decay)",
    )
)
_add(
    Profile(
        name="onnx",
        title="ONNX ai.onnx.preview.training.Adam (post-decay)",
        config=_BASE.replace(
            eps=1e-6,
            weight_decay=0.0,
            eps_placement=_EPS_HAT,
            decay_scaling=DecayScaling.UNSCALED,
            decay_timing=DecayTiming.AFTER_STEP,
        ),
        implementations=("ai.onnx.preview.training.Adam with norm_coefficient_post",),
        source="onnx/reference/ops/aionnx_preview_training/op_adam.py: H_sqrt = sqrt(H) + epsilon; "
        "X_new = X - R_adj * V / H_sqrt; X_final = (1 - norm_coefficient_post) * X_new",
        notes="weight_decay here is norm_coefficient_post; T is supplied by the caller.",
    )
)
_add(
    Profile(
        name="mlx",
        title="MLX mlx.optimizers.AdamW",
        config=_BASE.replace(bias_correction=False),
        implementations=("mlx.optimizers.AdamW",),
        source="mlx/optimizers/optimizers.py AdamW.apply_single: "
        "super().apply_single(gradient, parameter * (1 - lr * weight_decay), state); "
        "Adam: bias_correction=False by default (mlx 0.32.4)",
        required=("lr",),
    )
)
_add(
    Profile(
        name="apex",
        title="NVIDIA apex / DeepSpeed FusedAdam (adam_w_mode)",
        config=_BASE.replace(weight_decay=0.0, decay_form=DecayForm.ADDED_TO_UPDATE),
        implementations=("apex.optimizers.FusedAdam", "deepspeed.ops.adam.FusedAdam"),
        source="apex csrc/multi_tensor_adam.cu: update = (m_hat / (sqrtf(v_hat) + eps)) + "
        "decay * p; p = p - lr * update (MATH_T = float)",
        notes="amsgrad unsupported; DeepSpeed keeps per-parameter steps, apex one per group.",
    )
)
_add(
    Profile(
        name="optimisers_jl",
        title="Optimisers.jl AdamW (couple=true, the 0.4 default)",
        config=_BASE.replace(weight_decay=0.0, decay_form=DecayForm.ADDED_TO_UPDATE),
        implementations=("Optimisers.AdamW(couple=true)", "Flux.AdamW"),
        source="FluxML/Optimisers.jl src/rules.jl AdamW: couple=true -> eta * (dx' + lambda * x)",
        notes="beta^t is kept as a running product in the parameter's element type.",
    )
)
_add(
    Profile(
        name="optimisers_jl_decoupled",
        title="Optimisers.jl AdamW (couple=false)",
        config=_BASE.replace(
            weight_decay=0.0,
            decay_form=DecayForm.ADDED_TO_UPDATE,
            decay_scaling=DecayScaling.UNSCALED,
        ),
        implementations=("Optimisers.AdamW(couple=false)",),
        source="FluxML/Optimisers.jl src/rules.jl AdamW: couple=false -> eta * dx' + lambda * x",
    )
)
_add(
    Profile(
        name="proximal",
        title="Proximal AdamW: exact prox of (lambda/2)||theta||^2",
        config=_BASE.replace(decay_form=DecayForm.PROXIMAL, decay_timing=DecayTiming.AFTER_STEP),
        implementations=("this specification (seeds: proximal-gradient view)",),
        source="theta_t = prox_{s(lambda/2)||.||^2}(theta_{t-1} - lr u) = (theta_{t-1} - lr u)/(1 + s)",
    )
)
_add(
    Profile(
        name="adam_l2",
        title="Adam + L2 (coupled decay), for contrast",
        config=_BASE.replace(decay_form=DecayForm.COUPLED_L2, step_count_scope=StepCountScope.PER_PARAMETER),
        implementations=("torch.optim.Adam(weight_decay=...)",),
        source="torch/optim/adam.py: grad = grad.add(param, alpha=weight_decay) when not decoupled",
        notes="not AdamW: the decay passes through the adaptive denominator.",
    )
)

_add(
    Profile(
        name="tinygrad",
        title="tinygrad tinygrad.nn.optim.AdamW",
        config=_BASE.replace(decay_form=DecayForm.ADDED_TO_UPDATE),
        implementations=("tinygrad.nn.optim.AdamW (LAMB with adam=True)",),
        source="tinygrad/nn/optim.py LAMB._step: m_hat = m / (1 - b1_t); v_hat = v / (1 - b2_t); "
        "up = m_hat / (v_hat.sqrt() + eps) + wd * t; t - lr * up (r = 1 for adam) (tinygrad 0.14.0)",
        notes="one global count (b1_t, b2_t running products, float32); m and v are stored in "
        "OPTIM_DTYPE (float32 by default) whatever the parameter dtype.",
    )
)


#: Other names people use for a profile's implementation: the framework name (``keras`` for Keras
#: 3's profile ``keras3``), the adapter names (``keras-jax``, ``torch-adam``, ...) and spellings.
ALIASES: dict[str, str] = {
    "pytorch": "torch",
    "torch-adam": "torch",
    "keras": "keras3",
    "keras-tensorflow": "keras3",
    "keras-jax": "keras3",
    "keras-torch": "keras3",
    "keras2": "tf_keras",
    "tf-keras": "tf_keras",
    "optimisers-jl": "optimisers_jl",
    "hf-legacy": "hf_legacy",
    "adam-l2": "adam_l2",
    "paddle": "torch",
}


def profile_name(name: str) -> str:
    """The canonical profile name for ``name`` or one of its :data:`ALIASES`."""
    return ALIASES.get(name, name)


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (or an alias of it, :data:`ALIASES`); raises ConfigError
    listing the known names."""
    try:
        return PROFILES[profile_name(name)]
    except KeyError:
        raise ConfigError(
            "profile", name, f"unknown; expected one of {sorted(PROFILES)} (or an alias: {sorted(ALIASES)})"
        ) from None
