"""Optax: ``optax.adamw`` (jit and eager) and the chains that emulate the other profiles.

:mod:`~adapters.optax.capabilities` (what Optax can express, the chain plan, per-group
partitions), :mod:`~adapters.optax.adapter` (the factory), :mod:`~adapters.optax.run` (a live
optimizer over a JAX pytree).
"""
