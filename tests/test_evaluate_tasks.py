"""Each task scored, thresholded, tabled and plotted the same way by validation, final test and predict:
multiclass end to end on a real 4-class run, multilabel and regression on predictions with known answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from test_evaluate_validation import PNG_SIGNATURE, copy_run, pristine_run
from tl_radiology import InputError
from tl_radiology.evaluation import evaluate_run, write_report
from tl_radiology.evaluation._scoring import (
    choose_thresholds,
    format_summary,
    key_metric_rows,
    predicted_labels,
    prediction_table,
    score,
    threshold_values,
    write_plots,
)

LABELS = ("effusion", "nodule")


@pytest.mark.slow
def test_a_multiclass_run_is_scored_by_argmax_with_per_class_intervals(tmp_path_factory, tmp_path):
    run = copy_run(pristine_run(tmp_path_factory, "multiclass"), tmp_path / "run")
    model = json.loads((run / "model.json").read_text())
    assert model["threshold"] is None  # argmax: nothing to choose on validation
    validation = pd.read_csv(run / "val_predictions.csv")
    classes = ["cyst", "hcc", "hemangioma", "metastasis"]
    assert [f"prob_{c}" for c in classes] == [c for c in validation.columns if c.startswith("prob_")]
    probabilities = validation[[f"prob_{c}" for c in classes]].to_numpy()
    assert list(validation["predicted"]) == [classes[i] for i in probabilities.argmax(axis=1)]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)

    result = evaluate_run(run, n_bootstrap=100)
    assert result["threshold"]["values"] is None and "argmax" in result["threshold"]["rule"]
    assert set(result["metrics"]["per_class"]) == set(classes)
    assert set(result["key_metrics"]) >= {"accuracy", "macro_roc_auc"}
    test = pd.read_csv(run / "final" / "test_predictions.csv")
    assert result["metrics"]["metrics"]["accuracy"]["estimate"] == pytest.approx((test["predicted"] ==
                                                                                  test["label"]).mean())
    assert set(result["files"]["plots"]) == {"roc", "pr", "confusion_matrix"}
    html = write_report(run).read_text()
    auc = result["metrics"]["per_class"]["hcc"]["roc_auc"]["estimate"]  # every class is in the stratified test set
    assert f'data-metric="test_roc_auc[hcc]" data-estimate="{auc!r}"' in html


def test_multilabel_thresholds_are_chosen_per_label_and_a_one_class_label_falls_back_to_half():
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0], [1, 0], [0, 0]], dtype=float)
    p = np.array([[0.9, 0.2], [0.1, 0.7], [0.8, 0.1], [0.3, 0.4], [0.6, 0.3], [0.2, 0.2]])
    record = choose_thresholds("multilabel", LABELS, y, p)
    assert record["per_label"]["effusion"]["chosen_on"] == "validation"
    assert 0.3 < record["per_label"]["effusion"]["threshold"] <= 0.6  # separates 0.6 from 0.3
    assert record["per_label"]["nodule"]["threshold"] == 0.5 and "one class only" in record["notes"][0]
    np.testing.assert_allclose(threshold_values("multilabel", LABELS, record),
                               [record["per_label"]["effusion"]["threshold"], 0.5])
    assert predicted_labels("multilabel", LABELS, p[:2], [0.45, 0.5]) == ["effusion", "nodule"]
    cases = pd.DataFrame({"case_id": ["C-1", "C-2"], "patient": ["P-1", "P-1"], "label": ["effusion", "nodule"]})
    table = prediction_table(cases, "multilabel", LABELS, p[:2], record)
    assert list(table.columns) == ["case_id", "patient", "label", "prob_effusion", "prob_nodule", "predicted",
                                   "threshold_effusion", "threshold_nodule"]
    with pytest.raises(InputError, match=r"no validation threshold for label\(s\) nodule"):
        threshold_values("multilabel", LABELS, {"per_label": {"effusion": {"threshold": 0.5}}})


def test_multilabel_scores_and_plots_use_each_labels_threshold(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, (40, 2))
    p = np.clip(truth * 0.5 + rng.uniform(0, 0.5, (40, 2)), 0, 1)
    labels = ["|".join(n for n, v in zip(LABELS, row) if v) for row in truth]
    record = choose_thresholds("multilabel", LABELS, truth.astype(float), p)
    result = score("multilabel", LABELS, labels, p, patients=[f"P{i // 2}" for i in range(40)],
                   threshold_record=record, n_bootstrap=50)
    assert result["per_label"]["effusion"]["threshold"] == record["per_label"]["effusion"]["threshold"]
    assert result["metrics"]["macro_roc_auc"]["estimate"] == 1.0  # positives score above 0.5, negatives below
    names = [name for name, _ in key_metric_rows(result)]
    assert names == ["macro_roc_auc", "roc_auc[effusion]", "roc_auc[nodule]"]
    plots = write_plots(tmp_path, "multilabel", LABELS, labels, p, threshold_record=record, n_bootstrap=0)
    assert plots == {"roc": "roc.png", "pr": "pr.png"}
    assert all((tmp_path / f).read_bytes().startswith(PNG_SIGNATURE) for f in plots.values())


def test_regression_is_scored_with_bland_altman_and_predicts_values(tmp_path):
    truth = np.array([10.0, 12.0, 15.0, 20.0, 22.0, 30.0])
    predicted = truth + np.array([1.0, -1.0, 2.0, 0.0, 1.0, 3.0])
    result = score("regression", None, truth, predicted, n_bootstrap=0)
    assert result["metrics"]["mae"]["estimate"] == pytest.approx(np.mean([1, 1, 2, 0, 1, 3]))
    assert result["bland_altman"]["bias"]["estimate"] == pytest.approx(1.0)
    assert [n for n, _ in key_metric_rows(result)] == ["mae", "rmse", "r2", "bias", "loa_lower", "loa_upper"]
    assert choose_thresholds("regression", None, truth, predicted) is None
    cases = pd.DataFrame({"case_id": ["C-1", "C-2"], "label": [10.0, 12.0]})
    table = prediction_table(cases, "regression", None, predicted[:2], None)
    assert list(table.columns) == ["case_id", "label", "prediction", "predicted"]
    assert list(table["predicted"]) == [11.0, 11.0]
    assert write_plots(tmp_path, "regression", None, truth, predicted, n_bootstrap=0) == \
        {"bland_altman": "bland_altman.png"}
    assert (tmp_path / "bland_altman.png").read_bytes().startswith(PNG_SIGNATURE)


def test_a_binary_model_without_a_threshold_cannot_be_scored_and_summaries_read_well():
    with pytest.raises(InputError, match=r"no decision threshold chosen on validation"):
        threshold_values("binary", ["a", "b"], None)
    assert format_summary({"estimate": 0.91234, "ci_low": 0.85, "ci_high": 0.96}) == "0.912 (95% CI 0.850-0.960)"
    assert format_summary({"estimate": None, "ci_low": None, "ci_high": None}) == "n/a"
