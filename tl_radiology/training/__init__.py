"""Training: the two transfer modes and the model a run saves.

- **Mode 1, fixed features**: :class:`BackboneFeatures` (a scikit-learn transformer with a feature cache) in a
  ``Pipeline`` with a classifier from :func:`make_classifier`.
- **Mode 2, fine-tuning**: :func:`fine_tune` (= :func:`build_for_config` + :func:`fit_two_phases`) trains the
  head on a frozen backbone, then unfreezes layer groups at a low rate, with BatchNorm kept in inference mode,
  augmentation (:func:`make_augmentation`) and class weights (:func:`class_weights_from_labels`) on the training
  data, early stopping and atomic checkpoints, ``history.csv`` and curves (:func:`plot_training_curves`).
- :class:`TrainedModel`: what a run saves (``model.json`` + artefacts) and ``evaluate`` / ``predict`` load.

Example:
    >>> from tl_radiology.training import FineTuneConfig, fine_tune
    >>> config = FineTuneConfig(backbone="densenet121", weights="imagenet", head_epochs=5, finetune_epochs=10)
    >>> result = fine_tune(train, val, config=config, task="binary", out_dir="runs/a")  # doctest: +SKIP
"""

from ._augment import make_augmentation
from ._class_weights import class_weights_from_labels
from ._config import FineTuneConfig
from ._curves import overfitting_note, plot_training_curves, stack_curve_images
from ._features import CLASSIFIERS, BackboneFeatures, make_classifier
from ._finetune import EpochProgress, FineTuneResult, build_for_config, fine_tune, fit_two_phases
from ._trained import TrainedModel

__all__ = [
    "CLASSIFIERS",
    "EpochProgress",
    "stack_curve_images",
    "FineTuneConfig",
    "fine_tune",
    "build_for_config",
    "fit_two_phases",
    "FineTuneResult",
    "make_augmentation",
    "class_weights_from_labels",
    "plot_training_curves",
    "overfitting_note",
    "BackboneFeatures",
    "make_classifier",
    "TrainedModel",
]
