"""MLX: ``mlx.optimizers.AdamW`` (:mod:`~adapters.mlx.adapter`)."""
