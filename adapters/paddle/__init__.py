"""PaddlePaddle: ``paddle.optimizer.AdamW`` (:mod:`~adapters.paddle.adapter`)."""
