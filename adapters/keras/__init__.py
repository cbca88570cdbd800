"""Keras 3: ``keras.optimizers.AdamW`` on the TensorFlow, JAX and torch backends.

:mod:`~adapters.keras.capabilities` (what Keras can express, as data, and the refusal rules),
:mod:`~adapters.keras.adapter` (one factory per backend), :mod:`~adapters.keras.run` (a live
optimizer), :mod:`~adapters.keras.backend` (choosing and importing a backend),
:mod:`~adapters.keras.fresh_process` (jobs for another backend in a fresh process).
"""
