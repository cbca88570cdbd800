"""tinygrad: ``tinygrad.nn.optim.AdamW`` (:mod:`~adapters.tinygrad.adapter`)."""
