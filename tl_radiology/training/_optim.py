"""Discriminative learning rates: one Keras optimizer whose step size differs per variable (per layer group).

fastai trains earlier (more generic) layer groups at lower rates than later ones. Scaling gradients does not do
that for Adam-type optimizers (their step is invariant to the gradient's scale), so the rate itself is scaled:
each optimizer class below calls the standard update with ``learning_rate * factor(variable)``. Everything else
(moments, momentum, schedules, weight decay) is the stock Keras optimizer's.
"""

from __future__ import annotations

import math
from typing import Iterable

import keras

from .._errors import InputError
from .._options import look_up_option

__all__ = ["make_layerwise_optimizer", "group_learning_rate_factors", "LAYERWISE_OPTIMIZERS"]


class _LayerwiseRates:
    """Mixin: multiply the learning rate of each variable by its factor (1 for variables not listed).

    The factors are keyed by the optimizer's own variable keys and are not part of ``get_config``: they belong
    to the live variables of one model. A reloaded optimizer applies one rate to all variables.
    """

    def __init__(self, *args, learning_rate_factors: Iterable | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        factors = {}
        for variable, factor in learning_rate_factors or ():
            if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
                raise InputError(f"Learning-rate factors must be positive numbers; received {factor!r}.")
            factors[self._var_key(variable)] = float(factor)
        self._layerwise_factors = factors

    def layerwise_factor(self, variable) -> float:
        """The factor this optimizer applies to ``variable``'s learning rate."""
        return self._layerwise_factors.get(self._var_key(variable), 1.0)

    def update_step(self, gradient, variable, learning_rate):
        factor = self.layerwise_factor(variable)
        if factor != 1.0:
            learning_rate = learning_rate * factor
        return super().update_step(gradient, variable, learning_rate)


@keras.saving.register_keras_serializable(package="tl_radiology")
class LayerwiseSGD(_LayerwiseRates, keras.optimizers.SGD):
    """SGD with per-variable learning-rate factors (``learning_rate_factors=[(variable, factor), ...]``)."""


@keras.saving.register_keras_serializable(package="tl_radiology")
class LayerwiseAdam(_LayerwiseRates, keras.optimizers.Adam):
    """Adam with per-variable learning-rate factors (``learning_rate_factors=[(variable, factor), ...]``)."""


@keras.saving.register_keras_serializable(package="tl_radiology")
class LayerwiseAdamW(_LayerwiseRates, keras.optimizers.AdamW):
    """AdamW with per-variable learning-rate factors (``learning_rate_factors=[(variable, factor), ...]``)."""


@keras.saving.register_keras_serializable(package="tl_radiology")
class LayerwiseRMSprop(_LayerwiseRates, keras.optimizers.RMSprop):
    """RMSprop with per-variable learning-rate factors (``learning_rate_factors=[(variable, factor), ...]``)."""


LAYERWISE_OPTIMIZERS = {
    "sgd": LayerwiseSGD,
    "adam": LayerwiseAdam,
    "adamw": LayerwiseAdamW,
    "rmsprop": LayerwiseRMSprop,
}


def group_learning_rate_factors(num_groups: int, spread: float) -> list[float]:
    """Factors of the learning rate for ``num_groups`` unfrozen groups, from the lowest to the top group.

    Geometric from ``1 / spread`` (the lowest unfrozen group) to 1 (the top group), as fastai's
    ``slice(lr / spread, lr)``; a single group trains at the full rate.

    Example:
        >>> [round(f, 3) for f in group_learning_rate_factors(3, 100.0)]
        [0.01, 0.1, 1.0]
    """
    if num_groups <= 1:
        return [1.0] * max(num_groups, 0)
    return [spread ** (-(num_groups - 1 - i) / (num_groups - 1)) for i in range(num_groups)]


def make_layerwise_optimizer(name: str, learning_rate: float, factors: Iterable, *, momentum: float = 0.9):
    """A Keras optimizer chosen by name whose rate is ``learning_rate * factors[variable]`` per variable.

    Args:
        name: ``"sgd"``, ``"adam"``, ``"adamw"`` or ``"rmsprop"``.
        learning_rate: the base rate (variables not in ``factors`` use it unchanged).
        factors: ``(variable, factor)`` pairs (Keras variables cannot be dictionary keys).
        momentum: SGD momentum.

    Returns:
        The optimizer (pass it to ``compile_model(model, optimizer=...)``).

    Example:
        >>> opt = make_layerwise_optimizer("sgd", 0.1, [(model.get_layer("dense").kernel, 0.1)])  # doctest: +SKIP
    """
    cls = look_up_option(name, LAYERWISE_OPTIMIZERS, what="optimizer")
    kwargs = {"learning_rate": float(learning_rate), "learning_rate_factors": factors}
    if cls is LayerwiseSGD:
        kwargs["momentum"] = float(momentum)
    return cls(**kwargs)
