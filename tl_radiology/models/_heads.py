"""Task heads: the last layer's activation, the loss and the metrics that belong to each task type.

The review's Table 2 (Yamashita et al., 2018): binary classification -> sigmoid, multiclass (one label of K) ->
softmax, multilabel (several labels at once) -> sigmoid per label, regression -> identity (linear).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import keras

from .._errors import InputError
from .._options import look_up_option

__all__ = ["TaskSpec", "TASKS"]

TASKS = ("binary", "multiclass", "multilabel", "regression")
_REGRESSION_LOSSES = ("mse", "mae")


@dataclass(frozen=True)
class TaskSpec:
    """A task type and its size: decides the head's units and activation, the loss and the metrics.

    ============  ======================  ==================  ===================================  ===============
    task          output                  activation          loss                                 metrics
    ============  ======================  ==================  ===================================  ===============
    binary        1 unit                  sigmoid             binary cross-entropy                 accuracy, auc
    multiclass    ``num_classes`` units   softmax             categorical cross-entropy (one-hot)  accuracy, auc
    multilabel    ``num_classes`` units   sigmoid per label   binary cross-entropy                 accuracy, auc
    regression    ``num_classes`` units   linear              MSE (or MAE with ``loss="mae"``)     mae, rmse
    ============  ======================  ==================  ===================================  ===============

    Labels (what :meth:`encode_labels` returns and ``fit`` expects): binary 0/1 as ``(n, 1)``; multiclass
    **one-hot** ``(n, K)`` (chosen over integer labels so Keras' AUC and label smoothing work unchanged);
    multilabel 0/1 ``(n, K)``; regression values ``(n, K)``. Multiclass AUC is Keras' AUC over the flattened
    one-hot matrix (micro-average); multilabel AUC is averaged over labels (``multi_label=True``).

    Args:
        task: ``"binary"``, ``"multiclass"``, ``"multilabel"`` or ``"regression"``.
        num_classes: binary: ``None`` (or 1 or 2), stored as 2; multiclass: number of classes (>= 2);
            multilabel: number of labels (>= 1); regression: number of target values (default 1).
        loss: regression only: ``"mse"`` (default) or ``"mae"``.

    Example:
        >>> spec = TaskSpec("multiclass", num_classes=4)
        >>> spec.units, spec.activation
        (4, 'softmax')
    """

    task: str = "binary"
    num_classes: int | None = None
    loss: str | None = None

    def __post_init__(self):
        task = look_up_option(self.task, TASKS, what="task")
        object.__setattr__(self, "task", task)
        n = self.num_classes
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer))):
            raise InputError(f"Expected num_classes to be an integer or None; received {n!r}.")
        if task == "binary":
            if n not in (None, 1, 2):
                raise InputError(
                    f"task='binary' has 2 classes (one sigmoid unit); received num_classes={n}. Use "
                    "task='multiclass' for more classes, or task='multilabel' for several yes/no labels."
                )
            n = 2
        elif task in ("multiclass", "multilabel"):
            least = 2 if task == "multiclass" else 1
            if n is None or n < least:
                what = "classes" if task == "multiclass" else "labels"
                raise InputError(
                    f"task={task!r} needs num_classes (the number of {what}, at least {least}); received "
                    f"num_classes={n}."
                )
        else:
            n = 1 if n is None else n
            if n < 1:
                raise InputError(f"task='regression' needs num_classes >= 1 target values; received {n}.")
        object.__setattr__(self, "num_classes", int(n))
        if task == "regression":
            object.__setattr__(self, "loss", look_up_option(self.loss or "mse", _REGRESSION_LOSSES,
                                                            what="regression loss"))
        elif self.loss is not None and self.loss != self.loss_name:
            raise InputError(
                f"task={task!r} uses the loss {self.loss_name!r}; received loss={self.loss!r}. Leave loss unset "
                "(it is only a choice for regression: 'mse' or 'mae')."
            )

    @property
    def units(self) -> int:
        """Units of the output layer."""
        return 1 if self.task == "binary" else self.num_classes

    @property
    def activation(self) -> str:
        """The output layer's activation."""
        return {"binary": "sigmoid", "multiclass": "softmax", "multilabel": "sigmoid", "regression": "linear"}[
            self.task
        ]

    @property
    def loss_name(self) -> str:
        """The loss, as Keras names it."""
        if self.task == "regression":
            return self.loss or "mse"
        return "categorical_crossentropy" if self.task == "multiclass" else "binary_crossentropy"

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Names of the metrics :meth:`make_metrics` returns (``val_`` prefixed in the validation history)."""
        return ("mae", "rmse") if self.task == "regression" else ("accuracy", "auc")

    def make_loss(self, label_smoothing: float = 0.0):
        """A new Keras loss object for this task.

        Args:
            label_smoothing: for classification tasks, Keras' label smoothing (0 = none).
        """
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise InputError(f"Expected label_smoothing in [0, 1); received {label_smoothing!r}.")
        if self.task == "regression":
            if label_smoothing:
                raise InputError("label_smoothing applies to classification tasks, not task='regression'. Remove it.")
            return keras.losses.MeanAbsoluteError() if self.loss == "mae" else keras.losses.MeanSquaredError()
        if self.task == "multiclass":
            return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)

    def make_metrics(self) -> list:
        """New Keras metric objects for this task (named as :attr:`metric_names`)."""
        if self.task == "regression":
            return [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.RootMeanSquaredError(name="rmse")]
        if self.task == "multiclass":
            return [keras.metrics.CategoricalAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
        if self.task == "multilabel":
            return [
                keras.metrics.BinaryAccuracy(name="accuracy"),
                keras.metrics.AUC(name="auc", multi_label=True, num_labels=self.num_classes),
            ]
        return [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]

    def encode_labels(self, labels) -> np.ndarray:
        """Turn labels into the float32 ``(n, units)`` targets this task's head is trained on.

        Args:
            labels: binary: 0/1 values (or booleans); multiclass: integer class indices 0..K-1; multilabel: an
                ``(n, K)`` 0/1 matrix; regression: ``(n,)`` or ``(n, K)`` numbers.

        Returns:
            float32 array of shape ``(n, units)``.

        Raises:
            InputError: values outside what the task accepts (named, with the first offending position).

        Example:
            >>> TaskSpec("multiclass", num_classes=3).encode_labels([0, 2]).tolist()
            [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
        """
        array = np.asarray(labels)
        if self.task == "multiclass":
            flat = array.reshape(-1)
            bad = [i for i, v in enumerate(flat) if not _is_index(v, self.num_classes)]
            if array.ndim != 1 or bad:
                where = f" (first at position {bad[0]}: {_plain(flat[bad[0]])!r})" if bad else f" (shape {array.shape})"
                raise InputError(
                    f"task='multiclass' expects a 1-D sequence of integer class indices 0..{self.num_classes - 1}"
                    f"{where}. Map class names to indices first."
                )
            return np.eye(self.num_classes, dtype=np.float32)[flat.astype(int)]
        try:
            values = array.astype(np.float32)
        except (TypeError, ValueError):
            raise InputError(f"task={self.task!r} expects numeric labels; received dtype {array.dtype}.") from None
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2 or values.shape[1] != self.units:
            raise InputError(
                f"task={self.task!r} expects labels of shape (n,) or (n, {self.units}); received {array.shape}."
            )
        if not np.isfinite(values).all():
            raise InputError(f"task={self.task!r} labels contain NaN or infinite values; remove or fill them.")
        if self.task in ("binary", "multilabel") and not np.isin(values, (0.0, 1.0)).all():
            position = tuple(int(i) for i in np.argwhere(~np.isin(values, (0.0, 1.0)))[0])
            raise InputError(
                f"task={self.task!r} expects 0/1 labels; received {_plain(values[position])!r} at position {position}."
            )
        return values

    def to_dict(self) -> dict:
        """A JSON-able record of this spec (``TaskSpec(**d)`` recreates it)."""
        return {"task": self.task, "num_classes": self.num_classes, "loss": self.loss}


def _plain(value):
    """A numpy scalar as the Python number it holds (for messages)."""
    return value.item() if hasattr(value, "item") else value


def _is_index(value, num_classes: int) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return number.is_integer() and 0 <= number < num_classes
