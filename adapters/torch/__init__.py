"""PyTorch: ``torch.optim.AdamW`` and ``Adam(decoupled_weight_decay=True)`` behind the protocol.

:mod:`~adapters.torch.adapter` (the factories: implementations, capabilities, ``to_native``),
:mod:`~adapters.torch.run` (a live optimizer: step, state read-back, save/load, teacher forcing),
:mod:`~adapters.torch.common` (tensors, devices, dtypes, bit-exact state encoding, refusals; shared
with the torch-based plug-ins in :mod:`adapters.contrib`). ``torch`` is imported lazily.
"""
