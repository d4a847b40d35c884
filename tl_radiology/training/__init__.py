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

from .._lazy import lazy_exports, lazy_names
from ._config import FineTuneConfig

# Everything else imports TensorFlow; it is loaded on first use, so that checking a configuration (a recipe,
# `tl-radiology recipes`) stays light.
_LAZY = {
    "_augment": ("make_augmentation",),
    "_class_weights": ("class_weights_from_labels",),
    "_curves": ("overfitting_note", "plot_training_curves", "stack_curve_images"),
    "_classifiers": ("CLASSIFIERS", "make_classifier"),
    "_features": ("BackboneFeatures",),
    "_callbacks": ("EpochProgress",),
    "_finetune": ("FineTuneResult", "build_for_config", "fine_tune", "fit_two_phases"),
    "_trained": ("TrainedModel",),
}


__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY)


__all__ = [
    "FineTuneConfig",
    *lazy_exports(_LAZY),
]
