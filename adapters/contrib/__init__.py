"""Adapters for third-party optimizers, written exactly as an outside plugin would write them.

Each is loadable by spec (``adapters.contrib.pytorch_optimizer:StableAdamWAdapter``)
or, once registered, by its entry-point name in the group ``adamw_ref.adapters``.
"""
