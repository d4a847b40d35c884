"""Two-phase fine-tuning: train the new head on a frozen backbone, then unfreeze layer groups at a low rate.

The schedule of the Keras transfer-learning guide and fastai's ``fine_tune``. :func:`build_for_config` builds
the network and :func:`fit_two_phases` trains it (the search's ``HyperModel.build`` / ``fit`` call them
separately); :func:`fine_tune` is their composition.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

import keras

from .._errors import InputError
from .._options import look_up_option
from .._progress import status
from ..backbones import get_backbone
from ..models import TASKS, TaskSpec, build_model, compile_model, model_info, unfreeze_layer_groups
from ._callbacks import CHECKPOINT_FILE, _PhaseCallback, _Recorder
from ._config import FineTuneConfig
from ._curves import plot_training_curves
from ._fit_data import _as_dataset, prepare_fit_data
from ._optim import group_learning_rate_factors, make_layerwise_optimizer
from ._trained import TrainedModel

__all__ = ["FineTuneResult", "build_for_config", "fit_two_phases", "fine_tune", "PHASES"]

#: Names of the two phases, as written in the ``phase`` column of the history.
PHASES = ("head", "finetune")

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


# ---------------------------------------------------------------------------------------------------- phases

def _num_trainable(model) -> int:
    return int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))


# ---------------------------------------------------------------------------------------------------- fitting

def _resolve_task(model, config: FineTuneConfig, task) -> TaskSpec:
    """The task of ``fit_two_phases``: the one given, or the one the model was built with."""
    if not isinstance(config, FineTuneConfig):
        raise InputError(f"Expected config to be a FineTuneConfig; received {type(config).__name__}.")
    info = model_info(model)
    if info["backbone"] != config.backbone:
        raise InputError(
            f"The model's backbone is {info['backbone']!r} but FineTuneConfig.backbone is {config.backbone!r}. "
            "Build the model with build_for_config(config, ...)."
        )
    if task is None:
        return TaskSpec(**info["task"])
    if isinstance(task, TaskSpec):
        return task
    return TaskSpec(task, info["num_classes"] if task != "binary" else None)


def _run_head_phase(model, data, config: FineTuneConfig, task_spec: TaskSpec, recorder: _Recorder,
                    extra: list) -> int:
    """Phase 1: the head on a frozen backbone. Returns the trainable parameters."""
    train_ds, val_ds, class_weights = data
    unfreeze_layer_groups(model, 0, backbone=config.backbone, train_batchnorm=config.train_batchnorm)
    compile_model(model, task_spec, config.optimizer, config.head_learning_rate, momentum=config.momentum)
    trainable = _num_trainable(model)
    model.fit(train_ds, validation_data=val_ds, epochs=config.head_epochs, initial_epoch=0,
              class_weight=class_weights, callbacks=[_PhaseCallback(recorder, "head"), *extra], shuffle=False,
              verbose=0)
    return trainable


def _run_finetune_phase(model, data, config: FineTuneConfig, task_spec: TaskSpec, recorder: _Recorder,
                        extra: list) -> tuple[int, list, dict]:
    """Phase 2: unfreeze the top layer groups and train on at a lower rate (lower still for lower groups with
    ``learning_rate_spread``). Returns the trainable parameters, the unfrozen groups and their rates."""
    train_ds, val_ds, class_weights = data
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
    trainable = _num_trainable(model)
    start = recorder.epochs_done
    model.fit(train_ds, validation_data=val_ds, epochs=start + config.finetune_epochs, initial_epoch=start,
              class_weight=class_weights, callbacks=[_PhaseCallback(recorder, "finetune"), *extra],
              shuffle=False, verbose=0)
    return trainable, unfrozen, group_rates


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
    task_spec = _resolve_task(model, config, task)
    monitor = config.resolved_monitor(task_spec.task)
    out = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
    data = prepare_fit_data(train, val, model, config, task_spec)

    total = config.head_epochs + (config.finetune_epochs if config.has_finetune_phase else 0)
    recorder = _Recorder(monitor=monitor, patience=config.early_stopping_patience, out_dir=out, verbose=verbose,
                         total=total)
    trainable_params: dict[str, int] = {}
    unfrozen: list[str] = []
    group_rates: dict[str, float] = {}
    extra = list(callbacks or ())
    if config.head_epochs > 0:
        trainable_params["head"] = _run_head_phase(model, data, config, task_spec, recorder, extra)
    if config.has_finetune_phase:
        trainable_params["finetune"], unfrozen, group_rates = _run_finetune_phase(model, data, config, task_spec,
                                                                                  recorder, extra)

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
        unfrozen_groups=list(unfrozen), group_learning_rates=group_rates, class_weights=data[2],
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
