"""Evaluation: metrics with patient-level confidence intervals, thresholds, the one-shot final test, Grad-CAM,
the run report and prediction on new images.

The metric functions take predictions already made (arrays), so they work for any model; the decision threshold
is chosen on validation data (:func:`choose_threshold`, :func:`finalize_on_validation`) and applied unchanged to
the sealed test set, which :func:`evaluate_run` opens once. :func:`evaluate_external` does the same for another
site's data; :func:`grad_cam` / :func:`explain_run` show where the model looks; :func:`write_report` gathers a
run into one HTML file; :func:`predict` applies a run's model and preprocessing to new images.

Example:
    >>> from tl_radiology.evaluation import binary_metrics, choose_threshold  # doctest: +SKIP
    >>> choice = choose_threshold(y_val, p_val, method="sensitivity", target=0.9)  # doctest: +SKIP
    >>> result = binary_metrics(y_test, p_test, threshold=choice, patient_ids=test_patients)  # doctest: +SKIP
    >>> evaluate_run("runs/a")["key_metrics"]["roc_auc"]  # doctest: +SKIP
"""

from ._bootstrap import bootstrap_ci
from ._calibration import expected_calibration_error, reliability_curve
from ._explain import explain_run
from ._final import evaluate_external, evaluate_run
from ._gradcam import class_activation_map, grad_cam, overlay
from ._gradcam_graph import explain_target
from ._metrics import binary_metrics
from ._metrics_multi import multiclass_metrics, multilabel_metrics
from ._metrics_regression import regression_metrics
from ._plots import plot_bland_altman, plot_confusion_matrix, plot_pr, plot_reliability, plot_roc
from ._predict import predict
from ._recipe_record import load_run_recipe_file, record_recipe_file
from ._baseline import compare_with_baseline
from ._report import write_report
from ._scoring import format_summary, key_metric_rows
from ._threshold import ThresholdChoice, choose_threshold
from ._validation import finalize_on_validation

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
    # the run: validation finalisation, the one-shot final test, external validation
    "finalize_on_validation",
    "evaluate_run",
    "evaluate_external",
    # explanations
    "grad_cam",
    "class_activation_map",
    "explain_target",
    "overlay",
    "explain_run",
    "record_recipe_file",
    "load_run_recipe_file",
    # report and prediction
    "write_report",
    "predict",
    # reading results: the key metrics, one line each, and the prevalence-only baseline
    "key_metric_rows",
    "format_summary",
    "compare_with_baseline",
]
