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

from .._lazy import lazy_names
from ._config import FineTuneConfig

# Everything else imports TensorFlow; it is loaded on first use, so that checking a configuration (a recipe,
# `tl-radiology recipes`) stays light.
_LAZY = {
    "make_augmentation": "_augment",
    "class_weights_from_labels": "_class_weights",
    "overfitting_note": "_curves",
    "plot_training_curves": "_curves",
    "stack_curve_images": "_curves",
    "CLASSIFIERS": "_features",
    "BackboneFeatures": "_features",
    "make_classifier": "_features",
    "EpochProgress": "_callbacks",
    "FineTuneResult": "_finetune",
    "build_for_config": "_finetune",
    "fine_tune": "_finetune",
    "fit_two_phases": "_finetune",
    "TrainedModel": "_trained",
}


__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY)


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
