"""Class weights from training labels (scikit-learn's ``compute_class_weight``), for Keras' ``class_weight``."""

from __future__ import annotations

import numpy as np

from .._errors import InputError
from .._options import look_up_option

__all__ = ["class_weights_from_labels", "CLASS_WEIGHT_METHODS"]

CLASS_WEIGHT_METHODS = ("balanced",)


def class_weights_from_labels(labels, method: str = "balanced", *, num_classes: int | None = None) -> dict[int, float]:
    """Weights per class index that make each class count as much in the loss as the others.

    ``"balanced"`` is scikit-learn's rule ``n_samples / (n_classes * count(class))``: with 90 normal and 10
    pneumonia images the weights are 0.56 and 5.0, so the ten positives weigh as much as the ninety negatives.

    Args:
        labels: training targets of a binary task (0/1, shape ``(n,)`` or ``(n, 1)``) or a multiclass task
            (class indices ``(n,)`` as ``make_dataset`` gives them, or one-hot ``(n, K)``).
        method: ``"balanced"``.
        num_classes: the number of classes of a multiclass task; default: the largest index + 1. Every class
            must have at least one training case.

    Returns:
        ``{class_index: weight}`` for ``model.fit(class_weight=...)``.

    Raises:
        InputError: multi-label or continuous targets (class weights are defined for one class per case), a
            class without training cases, or no labels.
        OptionError: an unknown ``method``.

    Example:
        >>> weights = class_weights_from_labels([0] * 90 + [1] * 10)
        >>> {k: round(v, 3) for k, v in weights.items()}
        {0: 0.556, 1: 5.0}
    """
    # deferred: scikit-learn, only when weights are computed
    from sklearn.utils.class_weight import compute_class_weight

    method = look_up_option(method, CLASS_WEIGHT_METHODS, what="class weighting method")
    y = np.asarray(labels)
    if y.size == 0:
        raise InputError("class_weights_from_labels received no labels; give the training targets.")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        rows_one_hot = np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()
        if not rows_one_hot:
            raise InputError(
                f"class_weights_from_labels expects one class per case (indices or one-hot); received a {y.shape} "
                "matrix whose rows are not one-hot (multi-label targets). Use class_weighting='none' for "
                "multi-label tasks."
            )
        if num_classes is None:
            num_classes = y.shape[1]
        y = y.argmax(axis=1)
    if y.ndim != 1:
        raise InputError(f"class_weights_from_labels expects labels of shape (n,) or (n, K); received {y.shape}.")
    values = y.astype(np.float64)
    if not np.isfinite(values).all() or not (values == np.round(values)).all() or (values < 0).any():
        raise InputError(
            "class_weights_from_labels expects class indices 0, 1, ... (binary 0/1); received non-integer or "
            "negative values. Class weights do not apply to regression targets: use class_weighting='none'."
        )
    y = values.astype(np.int64)
    if num_classes is None:
        num_classes = int(y.max()) + 1
    num_classes = max(int(num_classes), 2)
    counts = np.bincount(y, minlength=num_classes)
    if len(counts) > num_classes:
        raise InputError(
            f"class_weights_from_labels: label {int(y.max())} is outside the {num_classes} classes given."
        )
    missing = [i for i, c in enumerate(counts) if c == 0]
    if missing:
        raise InputError(
            f"class_weights_from_labels: class {', '.join(map(str, missing))} has no training cases, so it cannot "
            "be weighted. Check the split (stratify by label) or use class_weighting='none'."
        )
    classes = np.arange(num_classes)
    weights = compute_class_weight(class_weight=method, classes=classes, y=y)
    return {int(c): float(w) for c, w in zip(classes, weights)}
