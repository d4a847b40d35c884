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
    "CT_WINDOWS",
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
#: Named CT windows as (center, width) in HU, from Radiopaedia "Windowing (CT)"; ``tl_radiology.transforms.Window``
#: applies them, a recipe's ``windows`` names them.
CT_WINDOWS = {
    "lung": (-600.0, 1500.0),  # chest, lungs W:1500 L:-600
    "mediastinum": (50.0, 350.0),  # chest, mediastinum W:350 L:50
    "bone": (400.0, 1800.0),  # spine, bone W:1800 L:400
    "brain": (40.0, 80.0),  # head, brain W:80 L:40
    # head, subdural W:130-300 L:50-100: the middle of both ranges.
    "subdural": (75.0, 215.0),
    # head, stroke W:8 L:32 or W:40 L:40: the second, the "stroke window" of Turner & Holdsworth (BJR 2011);
    # an 8 HU wide window saturates almost every pixel of a network's input.
    "stroke": (40.0, 40.0),
    "liver": (30.0, 150.0),  # abdomen, liver W:150 L:30
    "abdomen": (50.0, 400.0),  # abdomen, soft tissues W:400 L:50
    "soft_tissue": (50.0, 400.0),  # alias of "abdomen" (same values, listed for findability)
}
