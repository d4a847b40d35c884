"""The data of a fine-tuning: arrays or ``make_dataset`` batches as batched data sets, their shape checked
against the model's, targets in the encoding the task's loss expects, augmentation and balanced class weights.
"""

from __future__ import annotations

import numpy as np

import keras

from .._errors import InputError
from ..models import TaskSpec
from ._augment import make_augmentation
from ._class_weights import class_weights_from_labels
from ._config import FineTuneConfig

__all__ = ["prepare_fit_data"]


def _as_dataset(data, *, name: str, batch_size: int, shuffle: bool, seed: int):
    """A batched ``tf.data.Dataset`` of ``(x, y)`` or ``(x, y, w)`` from a data set or from arrays."""
    import tensorflow as tf  # deferred: tf.data is needed only once a fit starts

    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if not isinstance(spec, tuple) or len(spec) not in (2, 3):
            raise InputError(
                f"{name}: expected a tf.data.Dataset of (x, y) or (x, y, sample_weight) batches, as "
                f"make_dataset(..., task=...) gives; received elements {spec}. Give make_dataset a task."
            )
        if spec[0].shape.rank != 4:
            raise InputError(
                f"{name}: expected batches of images B x H x W x C; received x of shape {spec[0].shape}. Batch the "
                "data set (make_dataset does)."
            )
        return data
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        x = np.asarray(data[0], dtype=np.float32)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4:
            raise InputError(f"{name}: expected images N x H x W x C (or N x H x W); received shape {x.shape}.")
        arrays = [x] + [np.asarray(a) for a in data[1:]]
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1:
            raise InputError(f"{name}: x, y (and weights) differ in length: {[len(a) for a in arrays]}.")
        if len(x) == 0:
            raise InputError(f"{name}: no cases; give at least one.")
        dataset = tf.data.Dataset.from_tensor_slices(tuple(arrays))
        if shuffle:
            dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        return dataset.batch(batch_size)
    raise InputError(
        f"{name}: expected a tf.data.Dataset from make_dataset or a tuple (x, y) of arrays; received "
        f"{type(data).__name__}."
    )


def _collect_labels(dataset) -> np.ndarray:
    """The targets of every batch, concatenated (this reads the data set once)."""
    parts = [np.asarray(element[1]) for element in dataset.as_numpy_iterator()]
    return np.concatenate(parts) if parts else np.empty((0,))


def _target_adapter(task_spec: TaskSpec):
    """Map targets from make_dataset's encoding to what the task's loss expects (a no-op when they agree).

    make_dataset gives multiclass targets as class indices (sparse); a one-hot loss needs them one-hot. Binary
    and single-target regression come as ``(B,)``; the output is ``(B, 1)``.
    """
    import tensorflow as tf  # deferred, as in _as_dataset

    sparse_loss = isinstance(task_spec.make_loss(), keras.losses.SparseCategoricalCrossentropy)
    units = task_spec.units

    def adapt(y):
        if task_spec.task == "multiclass":
            if sparse_loss:
                if y.shape.rank == 2 and y.shape[-1] == units:
                    y = tf.argmax(y, axis=-1)
                return tf.cast(tf.reshape(y, (-1,)), tf.int64)
            if y.shape.rank == 1 or (y.shape.rank == 2 and y.shape[-1] == 1):
                return tf.one_hot(tf.cast(tf.reshape(y, (-1,)), tf.int32), units, dtype=tf.float32)
            return tf.cast(y, tf.float32)
        y = tf.cast(y, tf.float32)
        if y.shape.rank == 1:
            y = tf.reshape(y, (-1, units)) if units == 1 else y
        return y

    def apply(x, y, *weights):
        return (x, adapt(y), *weights)

    return apply


def _check_data_shape(dataset, model, name: str) -> None:
    data_shape = tuple(dataset.element_spec[0].shape[1:])
    model_shape = tuple(model.input_shape[1:])
    if data_shape != model_shape:
        raise InputError(
            f"{name}: the images are {'x'.join(map(str, data_shape))} but the model takes "
            f"{'x'.join(map(str, model_shape))}. Build the model for the data's shape (input_size=None) or resize "
            "in the loader."
        )


def _balanced_class_weights(train_ds, config: FineTuneConfig, task_spec: TaskSpec) -> dict | None:
    """``config.class_weighting``'s class weights from the training targets, or ``None``."""
    if config.class_weighting != "balanced":
        return None
    if task_spec.task not in ("binary", "multiclass"):
        raise InputError(
            f"FineTuneConfig.class_weighting='balanced' applies to binary and multiclass tasks; the task is "
            f"{task_spec.task!r}. Use class_weighting='none'."
        )
    if len(train_ds.element_spec) == 3:
        raise InputError(
            "FineTuneConfig.class_weighting='balanced' and per-case sample weights from the data set cannot "
            "both be used. Drop sample_weights from make_dataset or set class_weighting='none'."
        )
    num = task_spec.num_classes if task_spec.task == "multiclass" else 2
    return class_weights_from_labels(_collect_labels(train_ds), num_classes=num)


def prepare_fit_data(train, val, model, config: FineTuneConfig, task_spec: TaskSpec) -> tuple:
    """``(train_ds, val_ds, class_weights)`` for ``model.fit``: batched, shape-checked, targets adapted to the
    task, the training data augmented (``config.augmentation``, ``config.flip``), class weights or ``None``."""
    import tensorflow as tf  # deferred as in _as_dataset: tf.data is needed only once a fit starts

    train_ds = _as_dataset(train, name="train", batch_size=config.batch_size, shuffle=True, seed=config.seed)
    val_ds = _as_dataset(val, name="val", batch_size=config.batch_size, shuffle=False, seed=config.seed)
    _check_data_shape(train_ds, model, "train")
    _check_data_shape(val_ds, model, "val")
    class_weights = _balanced_class_weights(train_ds, config, task_spec)

    augment = make_augmentation(config.augmentation, config.seed, flip=config.flip)
    if augment is not None:
        def augment_batch(x, *rest):
            return (augment(x, training=True), *rest)

        # Sequential: the layers draw from one seed generator, and parallel calls would take turns in any order.
        train_ds = train_ds.map(augment_batch)
    adapt = _target_adapter(task_spec)
    train_ds = train_ds.map(adapt, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    val_ds = val_ds.map(adapt, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return train_ds, val_ds, class_weights
