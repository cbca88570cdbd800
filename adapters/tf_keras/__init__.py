"""Keras 2: ``tf_keras.optimizers.AdamW`` on TensorFlow (:mod:`~adapters.tf_keras.adapter`)."""
