"""Users' Keras models, imported by path in the tests (``keras_user_models.wide``...)."""

from __future__ import annotations

from typing import Any

import keras


def wide(n_in: int, n_out: int, width: int = 8) -> Any:
    """A functional model with a softmax head."""
    inputs = keras.Input((n_in,))
    hidden = keras.layers.Dense(width, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(n_out, activation="softmax")(hidden))


def with_lambda(n_in: int, n_out: int) -> Any:
    """A model whose Lambda layer holds Python code (Keras' safe mode refuses it)."""
    inputs = keras.Input((n_in,))
    doubled = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    return keras.Model(inputs, keras.layers.Dense(n_out, activation="softmax")(doubled))


def three_outputs(n_in: int) -> Any:
    """Three probabilities whatever the task."""
    return keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(3, activation="softmax")])


def logits(n_in: int, n_out: int) -> Any:
    """Raw scores, not probabilities."""
    return keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(n_out)])


def not_a_model() -> Any:
    return "a string"
