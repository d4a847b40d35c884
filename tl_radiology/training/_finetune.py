"""Two-phase fine-tuning: train the new head on a frozen backbone, then unfreeze layer groups at a low rate.

The schedule of the Keras transfer-learning guide and fastai's ``fine_tune``. :func:`build_for_config` builds
the network and :func:`fit_two_phases` trains it (the search's ``HyperModel.build`` / ``fit`` call them
separately); :func:`fine_tune` is their composition.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

import keras

from .._atomic import atomic_write_text
from .._errors import InputError
from .._progress import Progress, status
from ..backbones import get_backbone
from ..models import TaskSpec, build_model, compile_model, model_info, unfreeze_layer_groups
from ._augment import make_augmentation
from ._class_weights import class_weights_from_labels
from ._config import MONITORS, FineTuneConfig
from ._curves import plot_training_curves
from ._optim import group_learning_rate_factors, make_layerwise_optimizer
from ._trained import save_keras_model
from .._options import look_up_option

__all__ = ["FineTuneResult", "build_for_config", "fit_two_phases", "fine_tune", "PHASES", "EpochProgress"]

#: Names of the two phases, as written in the ``phase`` column of the history.
PHASES = ("head", "finetune")

HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "checkpoint.keras"
CURVES_FILE = "curves.png"


# ---------------------------------------------------------------------------------------------------- result

@dataclasses.dataclass
class FineTuneResult:
    """What :func:`fine_tune` / :func:`fit_two_phases` return.

    Attributes:
        model: the trained network, with the weights of the best epoch on ``monitor`` restored.
        history: one row per epoch of both phases: ``epoch`` (1-based, continuing across phases), ``phase``
            (``"head"`` / ``"finetune"``), the training loss and metrics, their ``val_`` counterparts and the
            ``learning_rate``.
        config: the :class:`FineTuneConfig` trained with.
        task: the :class:`~tl_radiology.models.TaskSpec`.
        monitor: the monitored validation quantity (``"val_auc"``, ``"val_loss"``, ...).
        best_epoch: the epoch (as in ``history.epoch``) whose weights the model holds.
        best_value: the monitored value at ``best_epoch``.
        trainable_params: trainable parameters per phase, ``{"head": n, "finetune": m}`` (``finetune`` absent
            when phase 2 did not run).
        unfrozen_groups: the backbone's layer groups trained in phase 2, lowest first.
        group_learning_rates: the learning rate of each unfrozen group in phase 2 (equal unless
            ``learning_rate_spread`` > 1).
        class_weights: the class weights used, or ``None``.
        classes: class names in index order, if given.
        out_dir: where ``history.csv``, ``checkpoint.keras`` and ``curves.png`` were written, or ``None``.
    """

    model: Any
    history: pd.DataFrame
    config: FineTuneConfig
    task: TaskSpec
    monitor: str
    best_epoch: int | None
    best_value: float | None
    trainable_params: dict
    unfrozen_groups: list
    group_learning_rates: dict
    class_weights: dict | None = None
    classes: list | None = None
    out_dir: Path | None = None

    @property
    def checkpoint_path(self) -> Path | None:
        """``out_dir/checkpoint.keras`` (the best epoch's model), if written."""
        path = None if self.out_dir is None else self.out_dir / CHECKPOINT_FILE
        return path if path is not None and path.is_file() else None

    def best_metrics(self) -> dict[str, float]:
        """The best epoch's validation values, e.g. ``{"val_loss": 0.41, "val_auc": 0.88, ...}``.

        keras-tuner accepts this dict as the result of ``HyperModel.fit``.
        """
        if self.best_epoch is None:
            return {}
        row = self.history.loc[self.history["epoch"] == self.best_epoch].iloc[0]
        return {k: float(row[k]) for k in self.history.columns if k.startswith("val_") and pd.notna(row[k])}

    def to_trained_model(self, *, loader=None, classes: Sequence[str] | None = None):
        """The model as a :class:`~tl_radiology.training.TrainedModel` (kind ``"keras"``) to save in a run.

        Args:
            loader: the ``CaseLoader`` the training data were loaded with (its config is saved, so prediction
                re-applies the same preprocessing), or its ``get_config()`` dict, or ``None``.
            classes: class names in index order (default: those given to :func:`fine_tune`).
        """
        from ._trained import TrainedModel

        return TrainedModel.from_keras(
            self.model, task=self.task, classes=classes if classes is not None else self.classes, loader=loader,
            training_config={
                # Flat: the FineTuneConfig fields (monitor resolved), then how the training went.
                "mode": "fine_tune", **self.config.to_dict(), "monitor": self.monitor,
                "best_epoch": self.best_epoch, "best_value": self.best_value,
                "trainable_params": dict(self.trainable_params), "unfrozen_groups": list(self.unfrozen_groups),
                "group_learning_rates": dict(self.group_learning_rates),
                "class_weights": None if self.class_weights is None else {str(k): v for k, v in
                                                                          self.class_weights.items()},
            },
        )


# ---------------------------------------------------------------------------------------------------- build

def build_for_config(config: FineTuneConfig, task, input_shape, num_classes: int | None = None):
    """Build the network a configuration describes (uncompiled); Keras' random state is seeded first.

    Args:
        config: a :class:`FineTuneConfig`.
        task: ``"binary"``, ``"multiclass"``, ``"multilabel"``, ``"regression"`` or a ``TaskSpec``.
        input_shape: ``(H, W, C)`` of the loaded cases (float32 in [0, 1]).
        num_classes: classes / labels / targets (see ``TaskSpec``); not needed for binary or with a ``TaskSpec``.

    Returns:
        A ``keras.Model`` from ``tl_radiology.models.build_model``.

    Raises:
        InputError: ``config.input_size`` disagrees with ``input_shape`` (resize in the loader instead), or any
            error of ``build_model``.

    Example:
        >>> model = build_for_config(FineTuneConfig(backbone="vgg16", weights=None), "binary", (32, 32, 1))
    """
    if not isinstance(config, FineTuneConfig):
        raise InputError(f"Expected config to be a FineTuneConfig; received {type(config).__name__}.")
    shape = _check_shape(input_shape)
    if config.input_size is not None and tuple(shape[:2]) != (config.input_size, config.input_size):
        raise InputError(
            f"FineTuneConfig.input_size={config.input_size} but the data are {shape[0]}x{shape[1]}. Resize the "
            f"images in the loader (e.g. Resize({config.input_size})) or set input_size=None."
        )
    keras.utils.set_random_seed(config.seed)
    if isinstance(task, TaskSpec):
        task_spec = task
    else:
        task_spec = TaskSpec(task, num_classes)
    return build_model(
        config.backbone, input_shape=shape, task=task_spec, adapter=config.adapter, weights=config.weights,
        pooling=config.pooling, dropout=config.dropout, dense_units=config.dense_units, l2=config.l2,
        precision=config.precision,
    )


def _check_shape(input_shape) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"Expected input_shape to be (height, width, channels); received {input_shape!r}.")
    return shape


# ---------------------------------------------------------------------------------------------------- data

def _as_dataset(data, *, name: str, batch_size: int, shuffle: bool, seed: int):
    """A batched ``tf.data.Dataset`` of ``(x, y)`` or ``(x, y, w)`` from a data set or from arrays."""
    import tensorflow as tf

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
    import tensorflow as tf

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


# ---------------------------------------------------------------------------------------------------- recording

class _Recorder:
    """The state shared by both phases: the history, the best epoch and its weights, early stopping."""

    def __init__(self, *, monitor: str, patience: int | None, out_dir: Path | None, verbose: bool, total: int):
        self.monitor = monitor
        self.mode = MONITORS[monitor]
        self.patience = patience
        self.out_dir = out_dir
        self.verbose = verbose
        self.total = total
        self.rows: list[dict] = []
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.best_weights = None
        self.epochs_done = 0

    def improved(self, value: float) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        return value > self.best_value if self.mode == "max" else value < self.best_value

    def history(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows)
        if frame.empty:
            return pd.DataFrame(columns=["epoch", "phase"])
        front = ["epoch", "phase"]
        train = [c for c in frame.columns if c not in front and not c.startswith("val_") and c != "learning_rate"]
        val = [c for c in frame.columns if c.startswith("val_")]
        rest = [c for c in frame.columns if c not in front + train + val]
        return frame[front + train + val + rest]

    def write_history(self) -> None:
        if self.out_dir is None:
            return
        buffer = io.StringIO()
        self.history().to_csv(buffer, index=False, float_format="%.6g")
        atomic_write_text(self.out_dir / HISTORY_FILE, buffer.getvalue())


class EpochProgress(keras.callbacks.Callback):
    """A Keras callback printing ``final training (epochs): 3/10 (30%) elapsed 12s, ETA 28s`` after each epoch.

    Args:
        total: the epochs expected (both phases).
        desc: the line's label.
    """

    def __init__(self, total: int, desc: str):
        super().__init__()
        self.progress = Progress(total, desc)

    def on_epoch_end(self, epoch, logs=None):
        self.progress.update()

    def on_train_end(self, logs=None):
        self.progress.close()


class _PhaseCallback(keras.callbacks.Callback):
    """Records each epoch of one phase, keeps the best weights, writes the files, stops early."""

    def __init__(self, recorder: _Recorder, phase: str):
        super().__init__()
        self.recorder = recorder
        self.phase = phase
        self.wait = 0

    def on_epoch_end(self, epoch, logs=None):
        rec = self.recorder
        logs = dict(logs or {})
        if rec.monitor not in logs:
            raise InputError(
                f"The monitored quantity {rec.monitor!r} is not in the training logs ({', '.join(sorted(logs))}). "
                "Give validation data, or set FineTuneConfig.monitor to one of them."
            )
        row = {"epoch": epoch + 1, "phase": self.phase}
        row.update({k: _to_float(v) for k, v in logs.items()})
        row.setdefault("learning_rate", _to_float(self.model.optimizer.learning_rate))
        rec.rows.append(row)
        rec.epochs_done = epoch + 1
        value = row[rec.monitor]
        if rec.improved(value):
            rec.best_value, rec.best_epoch = value, epoch + 1
            rec.best_weights = self.model.get_weights()
            self.wait = 0
            if rec.out_dir is not None:
                save_keras_model(self.model, rec.out_dir / CHECKPOINT_FILE)
        else:
            self.wait += 1
        rec.write_history()
        if rec.verbose:
            shown = ", ".join(f"{k} {row[k]:.4g}" for k in row if k not in ("epoch", "phase", "learning_rate"))
            mark = " (best)" if rec.best_epoch == epoch + 1 else ""
            status(f"epoch {epoch + 1}/{rec.total} ({self.phase}): {shown}{mark}")
        if rec.patience is not None and self.wait >= rec.patience:
            self.model.stop_training = True
            if rec.verbose:
                status(f"{self.phase}: no improvement of {rec.monitor} for {self.wait} epochs; phase stopped early.")


def _to_float(value) -> float:
    try:
        return float(keras.ops.convert_to_numpy(value))
    except (TypeError, ValueError):
        return math.nan


def _num_trainable(model) -> int:
    return int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))


# ---------------------------------------------------------------------------------------------------- fitting

def fit_two_phases(
    model,
    train,
    val,
    config: FineTuneConfig,
    *,
    task=None,
    classes: Sequence[str] | None = None,
    out_dir=None,
    callbacks: Sequence = (),
    verbose: bool = True,
) -> FineTuneResult:
    """Train a network from :func:`build_for_config` (or ``build_model``) in two phases.

    Phase 1 (``head``): every backbone layer frozen; the head (and a ``projection`` adapter) trains at
    ``config.head_learning_rate`` for ``config.head_epochs``. Phase 2 (``finetune``): the top
    ``config.unfreeze`` layer groups of the backbone (registry groups, via ``unfreeze_layer_groups``) become
    trainable with the head, at ``config.finetune_learning_rate`` (lower rates for lower groups with
    ``learning_rate_spread``), epochs numbered on from phase 1 (``initial_epoch``). The model is recompiled
    with a fresh optimizer after each change of ``trainable``. BatchNormalization layers stay in inference mode
    and keep their moving statistics throughout (unless ``config.train_batchnorm``).

    Each epoch the history row is added to ``out_dir/history.csv`` (rewritten atomically, so a killed run leaves
    the last complete version), and when the monitored value improves on the best so far the model is saved to
    ``out_dir/checkpoint.keras`` (atomically). A phase stops early after ``early_stopping_patience`` epochs
    without improvement; at the end the best epoch's weights are restored and ``curves.png`` is drawn.

    Augmentation (``config.augmentation``, ``config.flip``) and class weights (``config.class_weighting``) apply
    to the training data only; don't also give ``make_dataset`` an ``augment``. Balanced class weights read the
    training set's targets once before training.

    Args:
        model: a model from ``build_model`` (its backbone is the layer ``"backbone"``).
        train: training data: a ``tf.data.Dataset`` of ``(x, y)`` / ``(x, y, w)`` batches from
            ``make_dataset(..., shuffle=True)``, or a tuple ``(x, y)`` of arrays (batched and shuffled here with
            ``config.batch_size`` and ``config.seed``).
        val: validation data, likewise (never augmented or shuffled).
        config: the :class:`FineTuneConfig`.
        task: the ``TaskSpec`` or task name; default: the one the model was built with.
        classes: class names in index order, kept in the result.
        out_dir: folder for ``history.csv``, ``checkpoint.keras`` and ``curves.png`` (created), or ``None``.
        callbacks: more Keras callbacks for both phases (e.g. keras-tuner's).
        verbose: one status line per epoch on standard error.

    Returns:
        A :class:`FineTuneResult`.

    Raises:
        InputError: data of another shape than the model's input, targets that do not fit the task, a monitor
            the task does not record, or class weights for a multi-label / regression task.

    Example:
        >>> config = FineTuneConfig(backbone="resnet50", weights=None, head_epochs=1, finetune_epochs=1)
        >>> model = build_for_config(config, "binary", (32, 32, 1))  # doctest: +SKIP
        >>> result = fit_two_phases(model, (x_train, y_train), (x_val, y_val), config)  # doctest: +SKIP
        >>> result.history[["epoch", "phase", "val_auc"]]  # doctest: +SKIP
    """
    if not isinstance(config, FineTuneConfig):
        raise InputError(f"Expected config to be a FineTuneConfig; received {type(config).__name__}.")
    info = model_info(model)
    if info["backbone"] != config.backbone:
        raise InputError(
            f"The model's backbone is {info['backbone']!r} but FineTuneConfig.backbone is {config.backbone!r}. "
            "Build the model with build_for_config(config, ...)."
        )
    if task is None:
        task_spec = TaskSpec(**info["task"])
    elif isinstance(task, TaskSpec):
        task_spec = task
    else:
        task_spec = TaskSpec(task, info["num_classes"] if task != "binary" else None)
    monitor = config.resolved_monitor(task_spec.task)
    out = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)

    train_ds = _as_dataset(train, name="train", batch_size=config.batch_size, shuffle=True, seed=config.seed)
    val_ds = _as_dataset(val, name="val", batch_size=config.batch_size, shuffle=False, seed=config.seed)
    _check_data_shape(train_ds, model, "train")
    _check_data_shape(val_ds, model, "val")

    class_weights = None
    if config.class_weighting == "balanced":
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
        class_weights = class_weights_from_labels(_collect_labels(train_ds), num_classes=num)

    import tensorflow as tf

    augment = make_augmentation(config.augmentation, config.seed, flip=config.flip)
    if augment is not None:
        def augment_batch(x, *rest):
            return (augment(x, training=True), *rest)

        # Sequential: the layers draw from one seed generator, and parallel calls would take turns in any order.
        train_ds = train_ds.map(augment_batch)
    adapt = _target_adapter(task_spec)
    train_ds = train_ds.map(adapt, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    val_ds = val_ds.map(adapt, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    total = config.head_epochs + (config.finetune_epochs if config.has_finetune_phase else 0)
    recorder = _Recorder(monitor=monitor, patience=config.early_stopping_patience, out_dir=out, verbose=verbose,
                         total=total)
    trainable_params: dict[str, int] = {}
    unfrozen: list[str] = []
    group_rates: dict[str, float] = {}
    extra = list(callbacks or ())

    # Phase 1: the head on a frozen backbone.
    if config.head_epochs > 0:
        unfreeze_layer_groups(model, 0, backbone=config.backbone, train_batchnorm=config.train_batchnorm)
        compile_model(model, task_spec, config.optimizer, config.head_learning_rate, momentum=config.momentum)
        trainable_params["head"] = _num_trainable(model)
        model.fit(train_ds, validation_data=val_ds, epochs=config.head_epochs, initial_epoch=0,
                  class_weight=class_weights, callbacks=[_PhaseCallback(recorder, "head"), *extra], shuffle=False,
                  verbose=0)

    # Phase 2: unfreeze the top layer groups and train on at a lower rate.
    if config.has_finetune_phase:
        unfrozen = unfreeze_layer_groups(model, config.num_unfrozen_groups, backbone=config.backbone,
                                         train_batchnorm=config.train_batchnorm)
        factors = group_learning_rate_factors(len(unfrozen), config.learning_rate_spread)
        group_rates = {g: config.finetune_learning_rate * f for g, f in zip(unfrozen, factors)}
        if config.learning_rate_spread != 1.0 and len(unfrozen) > 1:
            groups = get_backbone(config.backbone).assign_layer_groups(model.get_layer("backbone"))
            pairs = [(variable, factor) for group, factor in zip(unfrozen, factors)
                     for layer in groups[group] for variable in layer.trainable_weights]
            optimizer = make_layerwise_optimizer(config.optimizer, config.finetune_learning_rate, pairs,
                                                 momentum=config.momentum)
            compile_model(model, task_spec, optimizer)
        else:
            compile_model(model, task_spec, config.optimizer, config.finetune_learning_rate,
                          momentum=config.momentum)
        trainable_params["finetune"] = _num_trainable(model)
        start = recorder.epochs_done
        model.fit(train_ds, validation_data=val_ds, epochs=start + config.finetune_epochs, initial_epoch=start,
                  class_weight=class_weights, callbacks=[_PhaseCallback(recorder, "finetune"), *extra],
                  shuffle=False, verbose=0)

    if recorder.best_weights is not None:
        model.set_weights(recorder.best_weights)
    history = recorder.history()
    if out is not None and len(history):
        plot_training_curves(history, out / CURVES_FILE, monitor=monitor, best_epoch=recorder.best_epoch)
    if verbose and recorder.best_epoch is not None:
        status(f"best epoch {recorder.best_epoch}: {monitor} {recorder.best_value:.4g} (weights restored)")
    return FineTuneResult(
        model=model, history=history, config=config, task=task_spec, monitor=monitor,
        best_epoch=recorder.best_epoch, best_value=recorder.best_value, trainable_params=trainable_params,
        unfrozen_groups=list(unfrozen), group_learning_rates=group_rates, class_weights=class_weights,
        classes=list(classes) if classes is not None else None, out_dir=out,
    )


def fine_tune(
    train,
    val,
    *,
    config: FineTuneConfig,
    task="binary",
    classes: Sequence[str] | None = None,
    out_dir=None,
    model=None,
    callbacks: Sequence = (),
    verbose: bool = True,
) -> FineTuneResult:
    """Fine-tune a pretrained backbone on radiology images in two phases (head first, then layer groups).

    Builds the network for the data's shape with :func:`build_for_config` (unless ``model`` is given) and
    trains it with :func:`fit_two_phases`; see there for what each phase does and the files written.

    Args:
        train: training batches from ``make_dataset(..., task=..., shuffle=True)``, or a tuple ``(x, y)`` of
            arrays (``x`` N x H x W x C in [0, 1]; ``y`` encoded as ``tl_radiology.data.encode_labels`` does).
        val: validation data, likewise.
        config: the :class:`FineTuneConfig`.
        task: ``"binary"``, ``"multiclass"``, ``"multilabel"``, ``"regression"`` or a ``TaskSpec``.
        classes: class names in index order (``Manifest.classes``); for multiclass and multilabel tasks their
            number is the number of outputs.
        out_dir: folder for ``history.csv``, ``checkpoint.keras`` and ``curves.png``, or ``None``.
        model: a model from ``build_model`` to train instead of building one.
        callbacks: more Keras callbacks for both phases.
        verbose: one status line per epoch on standard error.

    Returns:
        A :class:`FineTuneResult`; ``result.to_trained_model(loader=loader).save(run_dir)`` saves it.

    Raises:
        InputError: see :func:`build_for_config` and :func:`fit_two_phases`; a multiclass or multilabel task
            without ``classes`` (or a ``TaskSpec``).

    Example:
        >>> config = FineTuneConfig(backbone="densenet121", weights="imagenet", head_epochs=5, finetune_epochs=10)
        >>> result = fine_tune(train, val, config=config, task="binary", classes=manifest.classes,
        ...                    out_dir="runs/a")  # doctest: +SKIP
        >>> result.best_metrics()["val_auc"]  # doctest: +SKIP
        0.91
    """
    if isinstance(task, TaskSpec):
        task_spec = task
    else:
        from ..models import TASKS

        name = look_up_option(task, TASKS, what="task")
        num_classes = None
        if name in ("multiclass", "multilabel"):
            if classes is None:
                raise InputError(
                    f"task={name!r} needs classes (the class names in index order, e.g. manifest.classes) to know "
                    "the number of outputs; or pass a TaskSpec."
                )
            num_classes = len(classes)
        task_spec = TaskSpec(name, num_classes)
    if classes is not None and task_spec.task == "binary" and len(classes) != 2:
        raise InputError(f"task='binary' needs 2 classes (negative, positive); received classes={list(classes)}.")
    if model is None:
        if not isinstance(config, FineTuneConfig):
            raise InputError(f"Expected config to be a FineTuneConfig; received {type(config).__name__}.")
        probe = _as_dataset(train, name="train", batch_size=config.batch_size, shuffle=False, seed=config.seed)
        shape = tuple(int(v) for v in probe.element_spec[0].shape[1:])
        model = build_for_config(config, task_spec, shape)
    else:
        keras.utils.set_random_seed(config.seed)
    return fit_two_phases(model, train, val, config, task=task_spec, classes=classes, out_dir=out_dir,
                          callbacks=callbacks, verbose=verbose)
