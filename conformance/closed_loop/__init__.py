"""Closed-loop training: the same small models trained natively in each framework and by the
reference, compared loss by loss.

:mod:`~conformance.closed_loop.data` (tasks and batches), :mod:`~conformance.closed_loop.reference`
(numpy model + the reference optimizer), :mod:`~conformance.closed_loop.frameworks` (the same
model in torch, Keras, Optax, MLX), :mod:`~conformance.closed_loop.bound` (the rounding bound),
:mod:`~conformance.closed_loop.compare` (grading and the naive-port cases),
:mod:`~conformance.closed_loop.plot`, :mod:`~conformance.closed_loop.suite` (runs, one process per
framework; ``python -m conformance.closed_loop.suite``).
"""
