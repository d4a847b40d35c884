"""``FineTuneConfig``: every model and schedule hyperparameter of two-phase fine-tuning, as one flat record.

The record is flat and every field is a plain JSON value (str, int, float, bool or None), because the search
builds on it: a search-space key is a field name and a trial's configuration is ``config.replace(**sampled)``;
``to_dict`` / ``from_dict`` carry it through ``recipe.json`` and ``model.json``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from .._errors import InputError
from .._options import look_up_option
from ..config import (
    ADAPTERS,
    CLASS_WEIGHTINGS,
    FLIPS,
    MONITORS,
    OPTIMIZERS,
    POOLINGS,
    PRECISIONS,
    check_number,
    is_integer,
)

__all__ = [
    "FineTuneConfig",
    "CLASS_WEIGHTINGS",
    "FLIPS",
    "MONITORS",
    "POOLINGS",
    "ADAPTERS",
    "OPTIMIZERS",
    "PRECISIONS",
]

@dataclasses.dataclass(frozen=True)
class FineTuneConfig:
    """Every hyperparameter of a fine-tuned network and its two-phase schedule (validated on creation).

    Phase 1 trains the new head (and a ``projection`` adapter) with the backbone frozen, at
    ``head_learning_rate`` for ``head_epochs``; phase 2 unfreezes the top ``unfreeze`` layer groups of the
    backbone and trains on at ``finetune_learning_rate`` for ``finetune_epochs`` (see
    :func:`~tl_radiology.training.fine_tune`).

    Attributes:
        backbone: registry name (``tl_radiology.backbones.list_backbones()``).
        weights: ``"imagenet"`` (Keras' file, offline), the path of a weights file, or ``None`` (random start).
        adapter: ``"replicate"``, ``"projection"`` or ``"stem"`` (how C-channel images meet the backbone).
        input_size: side of the square model input in pixels, or ``None`` to take it from the data. The loader
            resizes (``Resize``); a value that disagrees with the data is refused, never resampled silently.
        pooling: ``"avg"`` or ``"max"`` global pooling of the last feature map.
        dropout: dropout rate before the output layer, in [0, 1).
        dense_units: units of a hidden ReLU layer in the head (0 = none).
        l2: L2 penalty on the head's kernels (0 = none).
        optimizer: ``"sgd"``, ``"adam"``, ``"adamw"`` or ``"rmsprop"``.
        momentum: SGD momentum, in [0, 1).
        head_learning_rate: learning rate of phase 1 (> 0).
        finetune_learning_rate: learning rate of phase 2 for the head and the top unfrozen group (> 0); keep it
            low (1e-5 with Adam, as the Keras guide does) so the pretrained features are adjusted, not erased.
        learning_rate_spread: discriminative learning rates in phase 2 (fastai's ``slice(lr / spread, lr)``):
            the lowest unfrozen group trains at ``finetune_learning_rate / spread``, the groups in between at
            geometrically interpolated rates, the top group and the head at ``finetune_learning_rate``.
            ``1.0`` = one rate for all (off); must be >= 1.
        head_epochs: epochs of phase 1 (>= 0).
        finetune_epochs: epochs of phase 2 (>= 0; no phase 2 when 0 or ``unfreeze`` is ``"none"``).
        unfreeze: how much of the backbone phase 2 trains: ``"all"``, ``"none"`` (0), or the number of layer
            groups counted from the top (1 = the last block: ``block5`` of VGG16, ``conv5`` of ResNet50).
        train_batchnorm: let BatchNormalization layers learn and update their statistics in phase 2. Default
            ``False``: they stay in inference mode throughout (Keras guide), so small radiology batches cannot
            overwrite statistics learned on large data. From random weights (``weights=None``) frozen BatchNorm
            layers hold mean 0 / variance 1; MobileNet and EfficientNet then give near-constant features
            (measured: pooled MobileNetV2 features of about 1e-13), so train from scratch with ``True``.
        batch_size: cases per batch (used when arrays are given; tf.data sets keep their own batching).
        augmentation: strength of random augmentation of training images, in [0, 1] (0 = none); see
            :func:`~tl_radiology.training.make_augmentation`.
        flip: random flips, an explicit choice because laterality matters in radiology: ``"none"`` (default),
            ``"horizontal"``, ``"vertical"`` or ``"horizontal_and_vertical"``.
        class_weighting: ``"none"`` or ``"balanced"`` (inverse class frequency; binary and multiclass).
        early_stopping_patience: stop a phase after this many epochs without improving the monitored value on
            the best so far (the best weights are restored at the end); ``None`` = never stop early.
        monitor: the validation quantity followed by early stopping and checkpoints: ``"val_auc"``,
            ``"val_loss"``, ``"val_accuracy"``, ``"val_mae"``, ``"val_rmse"``; ``None`` = ``"val_auc"`` for
            classification, ``"val_loss"`` for regression.
        seed: seed of shuffling, augmentation and Keras' initialisation.
        precision: ``"float32"`` (default) or ``"mixed_bfloat16"``: the backbone computes in bfloat16 on float32
            variables, the input, preprocessing, pooling and head (output, activation, loss) stay float32 (see
            :func:`~tl_radiology.models.build_model`). Measured on a CPU with native bfloat16 (avx512_bf16):
            training steps 1.1-1.25x faster, inference 1.3-2.0x, validation AUC within 0.001. CPUs without
            native bfloat16 (no avx512_bf16 / AMX: ``grep -o avx512_bf16 /proc/cpuinfo`` prints nothing) emulate
            it and may be slower.

    Example:
        >>> config = FineTuneConfig(backbone="densenet121", weights=None, head_epochs=3, finetune_epochs=5)
        >>> config.replace(unfreeze=2).unfreeze
        2
        >>> FineTuneConfig.from_dict(config.to_dict()) == config
        True
    """

    backbone: str = "resnet50"
    weights: str | None = "imagenet"
    adapter: str = "replicate"
    input_size: int | None = None
    pooling: str = "avg"
    dropout: float = 0.0
    dense_units: int = 0
    l2: float = 0.0
    optimizer: str = "adam"
    momentum: float = 0.9
    head_learning_rate: float = 1e-3
    finetune_learning_rate: float = 1e-5
    learning_rate_spread: float = 1.0
    head_epochs: int = 5
    finetune_epochs: int = 10
    unfreeze: str | int = "all"
    train_batchnorm: bool = False
    batch_size: int = 32
    augmentation: float = 0.0
    flip: str = "none"
    class_weighting: str = "none"
    early_stopping_patience: int | None = 5
    monitor: str | None = None
    seed: int = 0
    precision: str = "float32"

    # ------------------------------------------------------------------------------------------------ checks
    def __post_init__(self):
        def fail(field: str, expected: str):
            raise InputError(
                f"FineTuneConfig.{field}: expected {expected}; received {getattr(self, field)!r}. "
                f"Fix {field}=... in the configuration."
            )

        def option(field: str, names, what: str):
            value = look_up_option(getattr(self, field), names, what=f"{what} (FineTuneConfig.{field})")
            object.__setattr__(self, field, value)

        def number(field: str, *, low, high=None, low_open=False, high_open=False, integer=False, none=False):
            value = getattr(self, field)
            expected = check_number(value, low=low, high=high, low_open=low_open, high_open=high_open,
                                    integer=integer, none=none)
            if expected is not None:
                fail(field, expected)
            if value is not None:
                object.__setattr__(self, field, int(value) if integer else float(value))  # also numpy values

        # deferred: import tl_radiology.training stays without the registry
        from ..backbones import get_backbone, list_backbones

        if not isinstance(self.backbone, str):
            fail("backbone", "a backbone name such as 'resnet50'")
        name = look_up_option(self.backbone, list_backbones(), what="backbone (FineTuneConfig.backbone)",
                              fix="List them with `tl-radiology backbones`.")
        spec = get_backbone(name)
        object.__setattr__(self, "backbone", spec.name)
        if self.weights is not None and not isinstance(self.weights, str):
            weights = self.weights
            if hasattr(weights, "__fspath__"):
                object.__setattr__(self, "weights", str(weights))
            else:
                fail("weights", "'imagenet', the path of a weights file, or None")
        elif isinstance(self.weights, str) and self.weights.strip().lower() == "imagenet":
            object.__setattr__(self, "weights", "imagenet")
        option("adapter", ADAPTERS, "adapter")
        number("input_size", low=spec.min_size, integer=True, none=True)
        option("pooling", POOLINGS, "pooling")
        number("dropout", low=0.0, high=1.0, high_open=True)
        number("dense_units", low=0, integer=True)
        number("l2", low=0.0)
        option("optimizer", OPTIMIZERS, "optimizer")
        number("momentum", low=0.0, high=1.0, high_open=True)
        number("head_learning_rate", low=0.0, low_open=True)
        number("finetune_learning_rate", low=0.0, low_open=True)
        number("learning_rate_spread", low=1.0)
        number("head_epochs", low=0, integer=True)
        number("finetune_epochs", low=0, integer=True)
        num_groups = len(spec.layer_groups)
        if isinstance(self.unfreeze, str):
            option("unfreeze", ("all", "none"), "unfreeze setting")
            if self.unfreeze == "none":
                object.__setattr__(self, "unfreeze", 0)
        elif is_integer(self.unfreeze) and 0 <= self.unfreeze <= num_groups:
            object.__setattr__(self, "unfreeze", int(self.unfreeze))
        else:
            fail("unfreeze", f"'all', 'none' or a number of layer groups from 0 to {num_groups} for {spec.name}")
        if not isinstance(self.train_batchnorm, bool):
            fail("train_batchnorm", "True or False")
        number("batch_size", low=1, integer=True)
        number("augmentation", low=0.0, high=1.0)
        option("flip", FLIPS, "flip")
        option("class_weighting", CLASS_WEIGHTINGS, "class weighting")
        number("early_stopping_patience", low=1, integer=True, none=True)
        if self.monitor is not None:
            option("monitor", tuple(MONITORS), "monitor")
        number("seed", low=0, high=2**32 - 2, integer=True)  # keras-tuner seeds its oracle with seed + 1 < 2**32
        option("precision", PRECISIONS, "precision")
        if self.head_epochs + self.finetune_epochs == 0:
            raise InputError(
                "FineTuneConfig: head_epochs and finetune_epochs are both 0, so nothing would be trained. Give "
                "head_epochs >= 1 (and finetune_epochs for phase 2)."
            )

    # ------------------------------------------------------------------------------------------------ derived
    @property
    def num_unfrozen_groups(self) -> int:
        """How many layer groups phase 2 unfreezes, counted from the top (``"all"`` resolved for the backbone)."""
        if self.unfreeze == "all":
            from ..backbones import get_backbone  # deferred, as in __post_init__

            return len(get_backbone(self.backbone).layer_groups)
        return int(self.unfreeze)

    @property
    def has_finetune_phase(self) -> bool:
        """Whether phase 2 runs (some epochs and at least one unfrozen group)."""
        return self.finetune_epochs > 0 and self.num_unfrozen_groups > 0

    def resolved_monitor(self, task: str) -> str:
        """The monitored quantity for ``task``: :attr:`monitor`, or the task's default.

        Raises:
            InputError: a monitor the task does not record (``val_auc`` for regression, ``val_mae`` for a
                classification task).
        """
        regression = task == "regression"
        monitor = self.monitor or ("val_loss" if regression else "val_auc")
        allowed = ("val_loss", "val_mae", "val_rmse") if regression else ("val_loss", "val_auc", "val_accuracy")
        if monitor not in allowed:
            raise InputError(
                f"FineTuneConfig.monitor={monitor!r} is not recorded for task {task!r}; use one of "
                f"{', '.join(allowed)} (or None for the default)."
            )
        return monitor

    # ------------------------------------------------------------------------------------------------ changes
    def replace(self, **changes) -> "FineTuneConfig":
        """A copy with some fields changed (validated again); unknown field names fail with close matches.

        Example:
            >>> FineTuneConfig(weights=None).replace(head_learning_rate=3e-4).head_learning_rate
            0.0003
        """
        names = [f.name for f in dataclasses.fields(self)]
        for key in changes:
            look_up_option(key, names, what="FineTuneConfig field", fix="Check the spelling of the field name.")
        # look_up_option ignores case and '-'/'_'; use the canonical names.
        canonical = {look_up_option(k, names): v for k, v in changes.items()}
        return dataclasses.replace(self, **canonical)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-able dict (every value a str, int, float, bool or None)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "FineTuneConfig":
        """Rebuild a configuration from :meth:`to_dict`'s dict (missing fields take their defaults).

        Raises:
            OptionError: an unknown field name, with close matches.
            InputError: a value out of range.
        """
        if not isinstance(values, Mapping):
            raise InputError(
                f"FineTuneConfig.from_dict expects a dict of field values; received {type(values).__name__}."
            )
        return cls().replace(**dict(values)) if values else cls()
