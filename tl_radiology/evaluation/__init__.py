"""Evaluation: metrics with patient-level confidence intervals, thresholds, calibration and plots.

The metric functions take predictions already made (arrays), so they work for any model; the decision threshold
is chosen on validation data with :func:`choose_threshold` and applied unchanged to the test set.

Example:
    >>> from tl_radiology.evaluation import binary_metrics, choose_threshold  # doctest: +SKIP
    >>> choice = choose_threshold(y_val, p_val, method="sensitivity", target=0.9)  # doctest: +SKIP
    >>> result = binary_metrics(y_test, p_test, threshold=choice, patient_ids=test_patients)  # doctest: +SKIP
"""

from ._bootstrap import bootstrap_ci
from ._calibration import expected_calibration_error, reliability_curve
from ._gradcam import class_activation_map, explain_target, grad_cam, overlay
from ._metrics import binary_metrics, multiclass_metrics, multilabel_metrics, regression_metrics
from ._plots import plot_bland_altman, plot_confusion_matrix, plot_pr, plot_reliability, plot_roc
from ._threshold import ThresholdChoice, choose_threshold

__all__ = [
    # thresholds (chosen on validation)
    "ThresholdChoice",
    "choose_threshold",
    # metrics
    "binary_metrics",
    "multiclass_metrics",
    "multilabel_metrics",
    "regression_metrics",
    "bootstrap_ci",
    "expected_calibration_error",
    "reliability_curve",
    # plots
    "plot_roc",
    "plot_pr",
    "plot_reliability",
    "plot_confusion_matrix",
    "plot_bland_altman",
    # explanations
    "grad_cam",
    "class_activation_map",
    "explain_target",
    "overlay",
]
