"""The toolkit's vocabulary: every string option's allowed values, defined once.

Each tuple is what :func:`~tl_radiology._options.look_up_option` checks a user's word against (with "did you
mean" suggestions), wherever the option is read: a recipe, ``--set``, :class:`~tl_radiology.training.FineTuneConfig`,
the search, the evaluation. Plain tuples, so that checking a setting needs no TensorFlow.
"""

from __future__ import annotations

__all__ = [
    "TASKS",
    "MODES",
    "INTENSITIES",
    "RESIZE_MODES",
    "EXPECTS",
    "TUNERS",
    "OBJECTIVES",
    "THRESHOLD_METHODS",
    "CLASSIFIER_NAMES",
    "ADAPTERS",
    "POOLINGS",
    "OPTIMIZERS",
    "PRECISIONS",
    "CLASS_WEIGHTINGS",
    "FLIPS",
    "MONITORS",
]

#: What a model predicts: one of two classes, one of several, several labels at once, or a number.
TASKS = ("binary", "multiclass", "multilabel", "regression")
#: Transfer modes: fine-tuning one backbone, fixed features + classical classifiers, or an ensemble of fine-tuned
#: backbones whose probabilities are averaged.
MODES = ("finetune", "features", "ensemble")
#: How pixel values become [0, 1]: CT windows in HU, min-max, percentiles, or a fixed range (8-bit PNG: 0..255).
INTENSITIES = ("window", "minmax", "percentile", "range")
RESIZE_MODES = ("stretch", "pad")
#: The colour an image must have when read.
EXPECTS = ("any", "gray", "rgb")
#: keras-tuner's tuners.
TUNERS = ("random", "bayesian", "hyperband")
#: Validation quantities a search may judge trials on (never a test quantity).
OBJECTIVES = ("val_auc", "val_loss", "val_accuracy", "val_mae", "val_rmse")
#: How the decision threshold is chosen on validation.
THRESHOLD_METHODS = ("youden", "sensitivity", "specificity")
#: scikit-learn classifiers of the features mode.
CLASSIFIER_NAMES = ("logistic_regression", "svm", "random_forest", "gradient_boosting", "knn")
#: How C-channel images meet a 3-channel backbone.
ADAPTERS = ("replicate", "projection", "stem")
POOLINGS = ("avg", "max")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
PRECISIONS = ("float32", "mixed_bfloat16")
CLASS_WEIGHTINGS = ("none", "balanced")
#: Random flips are an explicit choice: laterality matters in radiology.
FLIPS = ("none", "horizontal", "vertical", "horizontal_and_vertical")
#: Validation quantities early stopping and checkpoints can follow, and whether larger is better.
MONITORS = {
    "val_loss": "min",
    "val_auc": "max",
    "val_accuracy": "max",
    "val_mae": "min",
    "val_rmse": "min",
}
