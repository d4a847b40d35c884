"""Task heads: the last layer's activation, the loss and the metrics that belong to each task type.

The review's Table 2 (Yamashita et al., 2018): binary classification -> sigmoid, multiclass (one label of K) ->
softmax, multilabel (several labels at once) -> sigmoid per label, regression -> identity (linear).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import keras
from keras import ops

from .._errors import InputError
from .._options import look_up_option
from ..config import TASKS

__all__ = ["TaskSpec", "TASKS", "SparseAUC", "SmoothedSparseCategoricalCrossentropy"]

_REGRESSION_LOSSES = ("mse", "mae")


@dataclass(frozen=True)
class TaskSpec:
    """A task type and its size: decides the head's units and activation, the loss and the metrics.

    ============  =====================  =================  ======================================  ============
    task          output                 activation         loss                                    metrics
    ============  =====================  =================  ======================================  ============
    binary        1 unit                 sigmoid            binary cross-entropy                    accuracy, auc
    multiclass    ``num_classes`` units  softmax            sparse categorical cross-entropy        accuracy, auc
    multilabel    ``num_classes`` units  sigmoid per label  binary cross-entropy                    accuracy, auc
    regression    ``num_classes`` units  linear             MSE (or MAE with ``loss="mae"``)        mae, rmse
    ============  =====================  =================  ======================================  ============

    Labels, as ``tl_radiology.data.encode_labels`` gives them (the contract in ``docs/ARCHITECTURE.md``): binary
    float32 0/1 ``(n,)``; multiclass int64 class indices ``(n,)`` (sparse, not one-hot); multilabel float32
    multi-hot ``(n, K)``; regression float32 ``(n,)`` (or ``(n, K)`` for K targets). AUC is ROC AUC: for
    multiclass the macro average of one-vs-rest AUCs (:class:`SparseAUC`), for multilabel the macro average over
    labels.

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
        return "sparse_categorical_crossentropy" if self.task == "multiclass" else "binary_crossentropy"

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
            if label_smoothing:
                return SmoothedSparseCategoricalCrossentropy(label_smoothing=label_smoothing)
            return keras.losses.SparseCategoricalCrossentropy()
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)

    def make_metrics(self) -> list:
        """New Keras metric objects for this task (named as :attr:`metric_names`)."""
        if self.task == "regression":
            return [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.RootMeanSquaredError(name="rmse")]
        if self.task == "multiclass":
            return [
                keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                SparseAUC(name="auc", multi_label=True, num_labels=self.num_classes),
            ]
        if self.task == "multilabel":
            return [
                keras.metrics.BinaryAccuracy(name="accuracy"),
                keras.metrics.AUC(name="auc", multi_label=True, num_labels=self.num_classes),
            ]
        return [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]

    def to_dict(self) -> dict:
        """A JSON-able record of this spec (``TaskSpec(**d)`` recreates it)."""
        return {"task": self.task, "num_classes": self.num_classes, "loss": self.loss}


def _one_hot_labels(y_true, y_pred):
    """Integer class labels ``(n,)`` or ``(n, 1)`` as one-hot rows matching softmax outputs ``(n, K)``."""
    labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
    return ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)


@keras.saving.register_keras_serializable(package="tl_radiology")
class SparseAUC(keras.metrics.AUC):
    """Keras' ROC AUC for integer class labels against softmax outputs (labels one-hot encoded first).

    With ``multi_label=True, num_labels=K`` (how :class:`TaskSpec` makes it) it is the macro average of the K
    one-vs-rest AUCs, as ``sklearn.metrics.roc_auc_score(..., multi_class="ovr")``.

    Example:
        >>> metric = SparseAUC(name="auc", multi_label=True, num_labels=3)
    """

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        one_hot = _one_hot_labels(y_true, y_pred)
        if sample_weight is not None:
            weights = ops.reshape(ops.cast(sample_weight, y_pred.dtype), (-1, 1))
            sample_weight = ops.broadcast_to(weights, ops.shape(one_hot))
        return super().update_state(one_hot, y_pred, sample_weight=sample_weight)


@keras.saving.register_keras_serializable(package="tl_radiology")
class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Categorical cross-entropy with label smoothing for integer class labels (Keras' sparse loss has none).

    Args:
        label_smoothing: in [0, 1): the one-hot target becomes ``(1 - s) * one_hot + s / K``.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "sparse_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        one_hot = _one_hot_labels(y_true, y_pred)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        config = super().get_config()
        config["label_smoothing"] = self.label_smoothing
        return config
