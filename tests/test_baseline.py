"""A model no better than always answering the majority class, or than chance, is flagged where a reader looks:
``val_metrics.json``, ``final_test.json``, the terminal and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_evaluate_validation import copy_run, pristine_run
from tl_radiology.cli import main
from tl_radiology.evaluation import binary_metrics
from tl_radiology.evaluation._baseline import compare_with_baseline


def _scored(labels, probabilities):
    y = (np.asarray(labels) == "1").astype(int)
    return binary_metrics(y, np.asarray(probabilities), threshold=0.5, n_bootstrap=200, seed=0)


def test_a_model_that_always_answers_the_commoner_class_is_flagged():
    labels = ["1"] * 30 + ["0"] * 10
    rng = np.random.default_rng(0)
    result = _scored(labels, rng.uniform(0.6, 0.9, 40))  # everything called "1", ranking at random
    record = compare_with_baseline("binary", ["0", "1"], labels, result)
    assert record["majority_class"] == "1" and record["majority_accuracy"] == pytest.approx(0.75)
    assert record["accuracy"] == pytest.approx(0.75) and record["no_better_than_majority"] is True
    assert record["no_better_than_chance"] is True
    assert record["warning"].startswith("On the test set the model is no better than always answering the majority")
    assert 'always "1"' in record["warning"] and "includes 0.5" in record["warning"]


def test_a_good_model_gets_no_warning():
    labels = ["1"] * 30 + ["0"] * 10
    probabilities = [0.9] * 30 + [0.1] * 10
    record = compare_with_baseline("binary", ["0", "1"], labels, _scored(labels, probabilities), what="validation")
    assert record["warning"] is None and record["no_better_than_majority"] is False
    assert record["auc"] == pytest.approx(1.0)


def test_multiclass_uses_macro_auc_and_regression_has_no_baseline():
    metrics = {"metrics": {"accuracy": {"estimate": 0.30}, "macro_roc_auc": {"estimate": 0.71, "ci_low": 0.62}}}
    record = compare_with_baseline("multiclass", ["a", "b", "c"], ["a"] * 5 + ["b"] * 3 + ["c"] * 2, metrics,
                                   what="validation")
    assert record["majority_accuracy"] == pytest.approx(0.5) and record["no_better_than_majority"] is True
    assert record["no_better_than_chance"] is False
    assert record["warning"] == ('On validation the model is no better than always answering the majority class '
                                 '(accuracy 0.300 vs 0.500 for always "a").')
    assert compare_with_baseline("regression", [], [1.0, 2.0], {"metrics": {}}) is None


@pytest.mark.slow
def test_the_comparison_reaches_final_test_json_and_the_report(tmp_path_factory, tmp_path, capsys):
    run = copy_run(pristine_run(tmp_path_factory), tmp_path / "run")
    validation = json.loads((run / "val_metrics.json").read_text())
    assert set(validation["baseline"]) >= {"majority_class", "majority_accuracy", "warning"}
    assert main(["evaluate", str(run), "--n-bootstrap", "200"]) == 0
    capsys.readouterr()
    final = json.loads((run / "final_test.json").read_text())
    baseline = final["baseline"]
    counts = final["counts"]["per_class"]
    assert baseline["majority_accuracy"] == pytest.approx(max(counts.values()) / sum(counts.values()))
    assert baseline["accuracy"] == final["metrics"]["metrics"]["accuracy"]["estimate"]
    assert main(["report", str(run)]) == 0
    html = (run / "report" / "report.html").read_text()
    assert "Prevalence-only baseline: always answering" in html
    if baseline["warning"]:
        assert "WARNING:" in html
