"""Closed-loop training tasks: the data, the initial weights and the minibatch order.

Everything here is a pure function of ``(task, steps, seed, batch_size)`` computed with NumPy's
``default_rng(seed)``, so every framework process rebuilds bit-identical inputs.

* Data: scikit-learn's ``load_digits`` (1797 8x8 images, 10 classes; shipped inside the package,
  no download). A seeded permutation splits it 1437 train / 360 test; features are standardized
  with the *training* mean and standard deviation (a constant column keeps std 1, so it stays 0).
* Tasks: ``logreg`` (multinomial logistic regression, ``logits = x W + b``, ``W`` 64x10) and
  ``mlp`` (64-32-10, ``h = tanh(x W1 + b1)``, ``logits = h W2 + b2``) and ``mlp_wide``
  (64-512-512-10, tanh hidden layers, 299,530 parameters). Loss: mean softmax
  cross-entropy over the minibatch. Weights ``[in, out]`` Glorot-uniform, biases zero.
* Minibatches: one seeded permutation of the training set per epoch, cut into ``batch_size``
  slices (the incomplete tail is dropped); step ``t`` uses ``batches[t]``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

TASKS: dict[str, tuple[int, ...]] = {
    "logreg": (64, 10),
    "mlp": (64, 32, 10),
    # a model of realistic width (299,530 parameters; --full): two hidden layers of 512
    "mlp_wide": (64, 512, 512, 10),
}
N_TEST = 360


@dataclass(frozen=True)
class TaskData:
    """Inputs of one closed-loop run (float64; cast per framework)."""

    task: str
    seed: int
    batch_size: int
    x_train: Any  # np.ndarray [n_train, 64]
    y_train: Any  # np.ndarray [n_train] int64
    x_test: Any
    y_test: Any
    batches: Any  # np.ndarray [steps, batch_size] int64 indices into the training set
    init: dict[str, Any]  # name -> np.ndarray float64, names in layer order

    @property
    def layers(self) -> tuple[int, ...]:
        return TASKS[self.task]

    @property
    def param_names(self) -> list[str]:
        return list(self.init)


def param_names(task: str) -> list[str]:
    """``["W", "b"]`` for logreg, ``["W1", "b1", "W2", "b2"]`` for the MLP."""
    n = len(TASKS[task]) - 1
    if n == 1:
        return ["W", "b"]
    return [f"{kind}{i}" for i in range(1, n + 1) for kind in ("W", "b")]


def load_task(task: str, steps: int, seed: int = 0, batch_size: int = 64) -> TaskData:
    """Build the data, initial weights and ``steps`` minibatches of ``task``."""
    if task not in TASKS:
        raise ValueError(f"task={task!r}: unknown; expected one of {sorted(TASKS)}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r}: must be a positive integer")
    if not isinstance(batch_size, int) or not 1 <= batch_size <= 1437:
        raise ValueError(f"batch_size={batch_size!r}: must be an integer in [1, 1437]")
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.asarray(digits.data, dtype=np.float64)
    y = np.asarray(digits.target, dtype=np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    test, train = order[:N_TEST], order[N_TEST:]
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std == 0.0] = 1.0
    x = (x - mean) / std

    layers = TASKS[task]
    names = param_names(task)
    init: dict[str, Any] = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(layers)):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        init[names[2 * i]] = rng.uniform(-limit, limit, size=(fan_in, fan_out))
        init[names[2 * i + 1]] = np.zeros(fan_out)

    per_epoch = len(train) // batch_size
    slices: list[Any] = []
    while len(slices) < steps:
        perm = rng.permutation(len(train))
        slices.extend(perm[j * batch_size : (j + 1) * batch_size] for j in range(per_epoch))
    batches = np.stack(slices[:steps]).astype(np.int64)
    return TaskData(task, seed, batch_size, x[train], y[train], x[test], y[test], batches, init)
