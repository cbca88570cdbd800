r"""The semantic knobs: every point on which real AdamW implementations differ.

Each enum member's docstring-comment lists the implementations that use it
(verified against the installed sources; see ``docs/spec.md`` for citations).
Values are lower-case strings so that JSON case files can name them.
"""

from __future__ import annotations

from enum import Enum


class EpsPlacement(str, Enum):
    r"""Where :math:`\epsilon` enters the denominator.

    * ``after_bias_correction``: :math:`\hat m/(\sqrt{\hat v}+\epsilon)` (PyTorch, Optax, apex,
      DeepSpeed, MLX, Optimisers.jl, the paper's Algorithm 2).
    * ``before_bias_correction`` ("epsilon hat"):
      :math:`\hat m\sqrt{1-\beta_2^k}/(\sqrt{v}+\hat\epsilon)` (Keras, tf.keras, TF-Addons, HF legacy,
      ONNX, the authors' Lua code). Equal to the first form with
      :math:`\epsilon_k=\hat\epsilon/\sqrt{1-\beta_2^k}`.
    """

    AFTER_BIAS_CORRECTION = "after_bias_correction"
    BEFORE_BIAS_CORRECTION = "before_bias_correction"


class DecayScaling(str, Enum):
    r"""What multiplies :math:`\lambda` to give the per-step decay strength :math:`s_t`.

    * ``lr``: :math:`s_t=\alpha\,\eta(c)\,\lambda_t`, the full scheduled learning rate (PyTorch,
      Keras 3, tf.keras, Optax, MLX, HF legacy, apex, DeepSpeed, Optimisers.jl couple=true).
    * ``schedule_multiplier``: :math:`s_t=\eta(c)\,\lambda_t`, the schedule multiplier only
      (Loshchilov & Hutter, Algorithm 2, line 12).
    * ``unscaled``: :math:`s_t=\lambda_t` (TF-Addons, Optimisers.jl couple=false, ONNX post-decay).
    """

    LR = "lr"
    SCHEDULE_MULTIPLIER = "schedule_multiplier"
    UNSCALED = "unscaled"


class DecayForm(str, Enum):
    r"""How the decay acts on the parameter.

    * ``multiplicative``: :math:`\theta\leftarrow(1-s_t)\theta` (PyTorch, Keras, TF-Addons, MLX).
    * ``proximal``: :math:`\theta\leftarrow\theta/(1+s_t)`, the exact proximal map of
      :math:`\tfrac{\lambda}{2}\lVert\theta\rVert^2`; equal to ``multiplicative`` to first order,
      differing by :math:`O(s_t^2)` per step.
    * ``added_to_update``: :math:`\theta\leftarrow\theta-\alpha\eta(u+\lambda_t\theta)`: the decay is
      summed into the update before the learning-rate scaling (Optax, apex, DeepSpeed, Optimisers.jl).
      Identical to ``multiplicative``/``before_step`` in exact arithmetic; differs in rounding.
    * ``coupled_l2``: :math:`g\leftarrow g+\lambda_t\theta` before the moments (Adam+L2; torch ``Adam``
      with ``weight_decay``; ONNX ``norm_coefficient``). The contrast case, not AdamW.
    * ``none``: no decay at all.
    """

    MULTIPLICATIVE = "multiplicative"
    PROXIMAL = "proximal"
    ADDED_TO_UPDATE = "added_to_update"
    COUPLED_L2 = "coupled_l2"
    NONE = "none"


class DecayTiming(str, Enum):
    r"""Which parameter the decoupled decay acts on.

    * ``before_step``: on :math:`\theta_{t-1}` (PyTorch, Keras, Optax, paper, most).
    * ``after_step``: on the Adam-updated parameter,
      :math:`\theta_t=(\theta_{t-1}-\alpha\eta u)(1-s_t)` (HF legacy ``transformers.AdamW``,
      ONNX ``norm_coefficient_post``, bitsandbytes CUDA before PR #2040).
    """

    BEFORE_STEP = "before_step"
    AFTER_STEP = "after_step"


class AmsgradMode(str, Enum):
    r"""What AMSGrad takes the running maximum of (only used when ``amsgrad=True``).

    * ``raw_v``: :math:`v^{max}_t=\max(v^{max}_{t-1},v_t)`, then divided by the *current*
      :math:`1-\beta_2^k` (PyTorch, Keras).
    * ``bias_corrected_v``: :math:`\hat v^{max}_t=\max(\hat v^{max}_{t-1},v_t/(1-\beta_2^k))`
      (``optax.amsgrad``).
    """

    RAW_V = "raw_v"
    BIAS_CORRECTED_V = "bias_corrected_v"


class ScheduleCount(str, Enum):
    r"""Which count the schedules see at the optimizer step that makes update number :math:`t`.

    * ``pre_increment``: :math:`c=t-1` (first update uses :math:`\eta(0)`): Keras, Optax, MLX, and
      PyTorch with ``lr_scheduler.step()`` after ``optimizer.step()``.
    * ``post_increment``: :math:`c=t` (first update uses :math:`\eta(1)`): Algorithm 2's
      ``SetScheduleMultiplier(t)``.
    """

    PRE_INCREMENT = "pre_increment"
    POST_INCREMENT = "post_increment"


class StepCountScope(str, Enum):
    r"""Whose count indexes bias correction when some parameters are frozen (gradient ``None``).

    * ``per_parameter``: each parameter counts its own updates (PyTorch ``state['step']``,
      DeepSpeed per-param steps).
    * ``global``: one optimizer-wide count (Keras ``iterations``, Optax ``count``, MLX ``step``).
    """

    PER_PARAMETER = "per_parameter"
    GLOBAL = "global"
