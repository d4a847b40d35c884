"""Point metrics of every task type against scikit-learn and hand-computed examples, and their error messages."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    cohen_kappa_score,
    f1_score,
    mean_absolute_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

from tl_radiology import InputError
from tl_radiology.evaluation import (
    binary_metrics,
    choose_threshold,
    expected_calibration_error,
    multiclass_metrics,
    multilabel_metrics,
    regression_metrics,
)

# Ten cases worked out by hand. At threshold 0.5: positives 0.9, 0.8, 0.7 are found (TP 3), 0.3 is missed (FN 1);
# negative 0.6 is a false alarm (FP 1), the other five negatives are correct (TN 5).
Y10 = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
P10 = [0.9, 0.8, 0.7, 0.3, 0.6, 0.4, 0.2, 0.1, 0.15, 0.05]


def est(result, name):
    return result["metrics"][name]["estimate"]


def test_binary_metrics_match_a_hand_computed_example():
    result = binary_metrics(Y10, P10, threshold=0.5, n_bootstrap=0)
    assert result["confusion_matrix"]["matrix"] == [[5, 1], [1, 3]]
    assert result["confusion_matrix"]["class_order"] == ["negative (0)", "positive (1)"]
    assert result["confusion_matrix"]["rows"] == "true class"
    assert est(result, "sensitivity") == pytest.approx(3 / 4)
    assert est(result, "specificity") == pytest.approx(5 / 6)
    assert est(result, "ppv") == pytest.approx(3 / 4)
    assert est(result, "npv") == pytest.approx(5 / 6)
    assert est(result, "accuracy") == pytest.approx(8 / 10)
    assert est(result, "f1") == pytest.approx(6 / 8)
    assert est(result, "prevalence") == pytest.approx(0.4)
    # 24 positive-negative pairs; only the positive at 0.3 loses, to the negatives at 0.6 and 0.4.
    assert est(result, "roc_auc") == pytest.approx(22 / 24)
    squared = [0.01, 0.04, 0.09, 0.49, 0.36, 0.16, 0.04, 0.01, 0.0225, 0.0025]
    assert est(result, "brier_score") == pytest.approx(sum(squared) / 10)
    assert (result["n_cases"], result["n_positive"], result["n_negative"]) == (10, 4, 6)
    assert result["threshold"]["rule"] == "positive if y_prob >= threshold"


def test_binary_metrics_agree_with_scikit_learn_on_random_data():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    t = 0.47
    called = (p >= t).astype(int)
    result = binary_metrics(y, p, threshold=t, n_bootstrap=0)
    assert est(result, "roc_auc") == pytest.approx(roc_auc_score(y, p))
    assert est(result, "pr_auc") == pytest.approx(average_precision_score(y, p))
    assert est(result, "accuracy") == pytest.approx(accuracy_score(y, called))
    assert est(result, "sensitivity") == pytest.approx(recall_score(y, called))
    assert est(result, "specificity") == pytest.approx(recall_score(1 - y, 1 - called))
    assert est(result, "ppv") == pytest.approx(precision_score(y, called))
    assert est(result, "npv") == pytest.approx(precision_score(1 - y, 1 - called))
    assert est(result, "f1") == pytest.approx(f1_score(y, called))
    assert est(result, "brier_score") == pytest.approx(brier_score_loss(y, p))
    assert est(result, "ece") == pytest.approx(expected_calibration_error(y, p, n_bins=10))


def test_binary_metrics_output_is_json_with_intervals_and_the_validation_choice():
    rng = np.random.default_rng(0)
    y_val, y_test = rng.integers(0, 2, 200), rng.integers(0, 2, 300)
    p_val = np.clip(rng.normal(0.3 + 0.4 * y_val, 0.2), 0, 1)
    p_test = np.clip(rng.normal(0.3 + 0.4 * y_test, 0.2), 0, 1)
    patients = [f"patient-{i // 3}" for i in range(300)]
    choice = choose_threshold(y_val, p_val, method="sensitivity", target=0.9)
    result = binary_metrics(y_test, p_test, threshold=choice, patient_ids=patients, n_bootstrap=300)
    text = json.dumps(result, allow_nan=False)  # strict JSON: no NaN
    assert "patient-" not in text  # only counts of patients, never their ids
    assert result["n_patients"] == 100 and result["patient_ids_given"] is True
    assert result["threshold"]["value"] == choice.threshold
    assert result["threshold"]["chosen_on_validation"]["method"] == "sensitivity"
    assert result["bootstrap"]["unit"] == "patient" and result["bootstrap"]["n_units"] == 100
    for name, summary in result["metrics"].items():
        assert summary["ci_low"] <= summary["estimate"] <= summary["ci_high"], name
        assert summary["n_resamples_used"] == 300, name


def test_binary_metrics_without_patient_ids_says_each_case_is_its_own_patient():
    result = binary_metrics(Y10, P10, threshold=0.5, n_bootstrap=50)
    assert result["n_patients"] is None and result["patient_ids_given"] is False
    assert result["bootstrap"]["unit"] == "case"
    assert "each case treated as its own patient" in result["bootstrap"]["note"]


def test_binary_metrics_reports_undefined_ppv_as_none_with_a_note():
    result = binary_metrics(Y10, P10, threshold=0.95, n_bootstrap=20)
    assert result["metrics"]["ppv"]["estimate"] is None
    assert result["metrics"]["ppv"]["n_resamples_used"] == 0
    assert any("PPV is undefined" in note for note in result["notes"])
    assert est(result, "sensitivity") == 0.0


def test_binary_metrics_accept_a_keras_style_column_and_do_not_change_inputs():
    p = np.array(P10, dtype=np.float32)[:, None]
    before = p.copy()
    result = binary_metrics(np.array(Y10), p, threshold=0.5, n_bootstrap=10)
    assert est(result, "sensitivity") == pytest.approx(0.75)
    np.testing.assert_array_equal(p, before)


@pytest.mark.parametrize(
    "y, p, kwargs, message",
    [
        ([0] * 10, P10, {}, r"y_true holds only class 0 \(10 cases\); ROC AUC, sensitivity and specificity"),
        (Y10, P10[:9], {}, r"y_true has 10 cases but y_prob has 9"),
        (Y10, [1.3] + P10[1:], {}, r"y_prob holds 1 value outside \[0, 1\] .*not logits"),
        ([2] + Y10[1:], P10, {}, r"y_true must hold 0/1 labels \(1 = positive\); received other values \[2\]"),
        (Y10, P10, {"threshold": 1.5}, r"threshold must be in \[0, 1\]"),
        (Y10, P10, {"patient_ids": ["a"] * 9}, r"y_true has 10 cases but patient_ids has 9"),
        (Y10, P10, {"confidence": 95}, r"confidence must be a number between 0 and 1"),
        (Y10, P10, {"patient_ids": ["a", None] + ["b"] * 8}, r"patient_ids is missing for 1 cases"),
    ],
)
def test_binary_metrics_errors_name_the_argument_and_the_fix(y, p, kwargs, message):
    kwargs = {"threshold": 0.5, "n_bootstrap": 10, **kwargs}
    with pytest.raises(InputError, match=message):
        binary_metrics(y, p, **kwargs)


# --------------------------------------------------------------------------------------------------- multiclass

def _softmax_data(n=400, k=4, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += 1.2
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def test_multiclass_metrics_agree_with_scikit_learn():
    y, p = _softmax_data()
    names = ["grade0", "grade1", "grade2", "grade3"]
    result = multiclass_metrics(y, p, class_names=names, ordinal=True, n_bootstrap=0)
    pred = p.argmax(axis=1)
    assert est(result, "macro_roc_auc") == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert est(result, "accuracy") == pytest.approx(accuracy_score(y, pred))
    assert est(result, "quadratic_weighted_kappa") == pytest.approx(
        cohen_kappa_score(y, pred, weights="quadratic"))
    sens = recall_score(y, pred, average=None)
    for k, name in enumerate(names):
        entry = result["per_class"][name]
        assert entry["roc_auc"]["estimate"] == pytest.approx(roc_auc_score(y == k, p[:, k]))
        assert entry["sensitivity"]["estimate"] == pytest.approx(sens[k])
        assert entry["specificity"]["estimate"] == pytest.approx(recall_score(y != k, pred != k))
        assert entry["n_cases"] == int(np.sum(y == k))
    assert result["confusion_matrix"]["class_order"] == names
    assert np.array(result["confusion_matrix"]["matrix"]).sum() == len(y)


def test_multiclass_kappa_is_an_ordinal_option_with_an_interval():
    y, p = _softmax_data(n=300, k=5)
    plain = multiclass_metrics(y, p, class_names=list("ABCDE"), n_bootstrap=100)
    graded = multiclass_metrics(y, p, class_names=list("ABCDE"), ordinal=True, n_bootstrap=100)
    assert "quadratic_weighted_kappa" not in plain["metrics"]
    kappa = graded["metrics"]["quadratic_weighted_kappa"]
    assert kappa["ci_low"] < kappa["estimate"] < kappa["ci_high"]
    assert graded["metrics"]["macro_roc_auc"] == plain["metrics"]["macro_roc_auc"]  # same seed, same resamples


def test_multiclass_accepts_class_names_as_labels_and_reports_an_absent_class():
    y, p = _softmax_data(n=200, k=3)
    y = np.where(y == 2, 0, y)  # no case of class 2
    names = ["normal", "benign", "malignant"]
    result = multiclass_metrics(np.array(names)[y], p, class_names=names, n_bootstrap=50)
    assert result["per_class"]["malignant"]["roc_auc"]["estimate"] is None
    assert result["per_class"]["malignant"]["n_cases"] == 0
    expected = np.mean([roc_auc_score(y == k, p[:, k]) for k in (0, 1)])
    assert est(result, "macro_roc_auc") == pytest.approx(expected)
    assert any("'malignant' has no cases" in note for note in result["notes"])
    json.dumps(result, allow_nan=False)


def test_multiclass_errors():
    y, p = _softmax_data(n=20, k=3)
    with pytest.raises(InputError, match=r"class_names has 2 names but y_prob has 3 columns"):
        multiclass_metrics(y, p, class_names=["a", "b"], n_bootstrap=0)
    with pytest.raises(InputError, match=r"y_prob rows must sum to 1 \(softmax outputs\).*use multilabel_metrics"):
        multiclass_metrics(y, p * 0.5, class_names=["a", "b", "c"], n_bootstrap=0)
    with pytest.raises(InputError, match=r"y_true must hold class indices 0\.\.2 .* received \[3\]"):
        multiclass_metrics(np.r_[y[:-1], 3], p, class_names=["a", "b", "c"], n_bootstrap=0)
    with pytest.raises(InputError, match=r"y_true holds class names not in class_names: \['cyst'\]"):
        multiclass_metrics(["a"] * 19 + ["cyst"], p, class_names=["a", "b", "c"], n_bootstrap=0)


# --------------------------------------------------------------------------------------------------- multilabel

def test_multilabel_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, (300, 3))
    p = np.clip(0.3 + 0.35 * y + rng.normal(0, 0.2, y.shape), 0, 1)
    names = ["effusion", "nodule", "pneumothorax"]
    thresholds = {"effusion": 0.5, "nodule": 0.4, "pneumothorax": 0.6}
    result = multilabel_metrics(y, p, label_names=names, thresholds=thresholds, n_bootstrap=100)
    aucs = roc_auc_score(y, p, average=None)
    assert est(result, "macro_roc_auc") == pytest.approx(roc_auc_score(y, p, average="macro"))
    for j, name in enumerate(names):
        entry = result["per_label"][name]
        called = (p[:, j] >= thresholds[name]).astype(int)
        assert entry["threshold"] == thresholds[name]
        assert entry["roc_auc"]["estimate"] == pytest.approx(aucs[j])
        assert entry["pr_auc"]["estimate"] == pytest.approx(average_precision_score(y[:, j], p[:, j]))
        assert entry["sensitivity"]["estimate"] == pytest.approx(recall_score(y[:, j], called))
        assert entry["specificity"]["estimate"] == pytest.approx(recall_score(1 - y[:, j], 1 - called))
        assert entry["n_positive"] == int(y[:, j].sum())
        assert entry["roc_auc"]["ci_low"] < entry["roc_auc"]["estimate"] < entry["roc_auc"]["ci_high"]


def test_multilabel_thresholds_forms_and_errors():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p = np.array([[0.9, 0.2], [0.3, 0.6], [0.7, 0.8], [0.1, 0.4]])
    by_list = multilabel_metrics(y, p, label_names=["a", "b"], thresholds=[0.5, 0.5], n_bootstrap=0)
    by_number = multilabel_metrics(y, p, label_names=["a", "b"], thresholds=0.5, n_bootstrap=0)
    assert by_list["per_label"] == by_number["per_label"]
    with pytest.raises(InputError, match=r"thresholds must have one entry per label; missing \['b'\]"):
        multilabel_metrics(y, p, label_names=["a", "b"], thresholds={"a": 0.5}, n_bootstrap=0)
    with pytest.raises(InputError, match=r"thresholds has 3 values but there are 2 labels"):
        multilabel_metrics(y, p, label_names=["a", "b"], thresholds=[0.5] * 3, n_bootstrap=0)
    with pytest.raises(InputError, match=r"multilabel_metrics needs thresholds"):
        multilabel_metrics(y, p, label_names=["a", "b"], thresholds=None, n_bootstrap=0)
    with pytest.raises(InputError, match=r"y_true has 3 label columns but y_prob has 2"):
        multilabel_metrics(np.c_[y, y[:, 0]], p, label_names=["a", "b"], thresholds=0.5, n_bootstrap=0)


def test_multilabel_label_with_one_class_has_no_auc_and_is_left_out_of_the_macro():
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    p = np.array([[0.9, 0.2], [0.3, 0.6], [0.7, 0.8], [0.1, 0.4]])
    result = multilabel_metrics(y, p, label_names=["a", "b"], thresholds=0.5, n_bootstrap=20)
    assert result["per_label"]["b"]["roc_auc"]["estimate"] is None
    assert est(result, "macro_roc_auc") == pytest.approx(1.0)
    assert any("'b' has only class 0" in note for note in result["notes"])


# --------------------------------------------------------------------------------------------------- regression

def test_regression_metrics_match_a_hand_computed_bland_altman_example():
    y_true, y_pred = [50, 60, 70, 80], [52, 59, 73, 80]  # differences 2, -1, 3, 0
    result = regression_metrics(y_true, y_pred, n_bootstrap=0)
    sd = math.sqrt((1 + 4 + 4 + 1) / 3)
    ba = result["bland_altman"]
    assert ba["difference"] == "y_pred - y_true"
    assert ba["bias"]["estimate"] == pytest.approx(1.0)
    assert ba["sd_difference"]["estimate"] == pytest.approx(sd)
    assert ba["loa_lower"]["estimate"] == pytest.approx(1.0 - 1.96 * sd)
    assert ba["loa_upper"]["estimate"] == pytest.approx(1.0 + 1.96 * sd)
    assert est(result, "mae") == pytest.approx(6 / 4)
    assert est(result, "rmse") == pytest.approx(math.sqrt(14 / 4))
    assert est(result, "r2") == pytest.approx(1 - 14 / 500)


def test_regression_metrics_agree_with_scikit_learn_and_have_intervals():
    rng = np.random.default_rng(2)
    y = rng.normal(60, 12, 400)
    pred = y + rng.normal(1.5, 4, 400)
    result = regression_metrics(y, pred, patient_ids=np.arange(400) // 2, n_bootstrap=300)
    assert est(result, "mae") == pytest.approx(mean_absolute_error(y, pred))
    assert est(result, "rmse") == pytest.approx(root_mean_squared_error(y, pred))
    assert est(result, "r2") == pytest.approx(r2_score(y, pred))
    for summary in [*result["metrics"].values(), result["bland_altman"]["bias"]]:
        assert summary["ci_low"] < summary["estimate"] < summary["ci_high"]
    assert result["bland_altman"]["bias"]["ci_low"] > 0.5  # the +1.5 bias is detected


def test_regression_errors():
    with pytest.raises(InputError, match=r"y_true has 3 cases but y_pred has 2"):
        regression_metrics([1, 2, 3], [1, 2], n_bootstrap=0)
    with pytest.raises(InputError, match=r"y_pred holds 1 NaN or infinite values"):
        regression_metrics([1, 2, 3], [1, np.nan, 3], n_bootstrap=0)
    with pytest.raises(InputError, match=r"y_true must be 1-D .* evaluate each column separately"):
        regression_metrics(np.ones((3, 2)), np.ones((3, 2)), n_bootstrap=0)
    with pytest.raises(InputError, match=r"at least 2 cases"):
        regression_metrics([1.0], [2.0], n_bootstrap=0)
