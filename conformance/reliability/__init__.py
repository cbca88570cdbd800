"""Reliability reports (issue 15): what the frameworks do with bad input, NaN and Inf, and saved
state, each measured by code and committed under ``docs/reports/reliability/``.

* :mod:`conformance.reliability.parity`: error parity, every framework called natively (not
  through the adapters) on each bad input; ``python -m conformance.reliability.parity --out DIR``.
* :mod:`conformance.reliability.nan_inf`: a NaN or an infinity in one gradient element at step
  ``k``, then clean gradients, per implementation against the reference (the rule), plus the
  AMP-style skipped steps (``torch.amp.GradScaler``, ``optax.apply_if_finite``,
  ``keras.optimizers.LossScaleOptimizer``).
* :mod:`conformance.reliability.fidelity`: save after ``N`` steps, load in a fresh process,
  continue ``M`` steps, compare bit patterns with the uninterrupted run.
* :mod:`conformance.reliability.transfer_check`: canonical state moved between frameworks
  mid-training (:mod:`adapters.transfer`), each segment checked against the reference.

``python -m conformance.reliability --out DIR`` writes all of them. Every framework runs in its
own worker process (:mod:`conformance.reliability.worker`; Keras fixes its backend per process),
so a crash is recorded as a crash instead of ending the report.
"""
