"""The patient-level bootstrap: it groups, skips undefined resamples, reproduces with a seed, and is fast."""

from __future__ import annotations


import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from tl_radiology import InputError
from tl_radiology.evaluation import binary_metrics, bootstrap_ci
from tl_radiology.evaluation._bootstrap import resample_weights, weighted_rank_metrics
from tl_radiology.evaluation._calibration import expected_calibration_error, weighted_ece


def _auc_kernel(y, p, weights):
    return weighted_rank_metrics(y, p)(weights)["roc_auc"]


def _scores(n, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.5 * y - 0.7)))
    return y, (np.round(p, 1) if ties else p)


@pytest.mark.parametrize("ties", [False, True])
def test_vectorised_kernels_equal_scikit_learn_on_every_resample(ties):
    y, p = _scores(300, ties=ties)
    groups = np.arange(300) // 4
    weights = next(resample_weights(groups, 75, 25, seed=1))
    ranked = weighted_rank_metrics(y, p)(weights)
    ece = weighted_ece(y, p, 10)(weights)
    for row, w in enumerate(weights):
        take = np.repeat(np.arange(300), w.astype(int))
        assert ranked["roc_auc"][row] == pytest.approx(roc_auc_score(y[take], p[take]), abs=1e-12)
        assert ranked["pr_auc"][row] == pytest.approx(average_precision_score(y[take], p[take]), abs=1e-12)
        assert ece[row] == pytest.approx(expected_calibration_error(y[take], p[take]), abs=1e-12)


def test_vectorised_and_per_resample_paths_give_the_same_interval():
    y, p = _scores(200)
    groups = np.arange(200) // 2
    slow = bootstrap_ci(roc_auc_score, y, p, groups=groups, n_bootstrap=300, seed=4)
    fast = bootstrap_ci(_auc_kernel, y, p, groups=groups, n_bootstrap=300, seed=4, vectorized=True)
    for key in ("estimate", "ci_low", "ci_high"):
        assert fast[key] == pytest.approx(slow[key], abs=1e-12)
    assert fast["n_resamples_used"] == slow["n_resamples_used"] == 300
    assert slow["unit"] == "patient" and slow["n_units"] == 100


def test_each_resample_takes_all_cases_of_a_drawn_patient():
    # Patient k has k + 1 cases; a resample drawing patient k twice must hold exactly 2 (k + 1) of its cases.
    ids = np.repeat(np.arange(8), np.arange(1, 9))
    sizes = np.bincount(ids)

    def grouping(resampled_ids):
        counts = np.bincount(resampled_ids, minlength=8)
        return {"distinct_patients": np.count_nonzero(counts),
                "whole_patients": float(np.all(counts % sizes == 0)),
                "patients_drawn": float(np.sum(counts // sizes))}

    by_patient = bootstrap_ci(grouping, ids, groups=ids, n_bootstrap=400, seed=0)
    assert by_patient["whole_patients"]["ci_low"] == 1.0  # every resample: whole patients only
    assert by_patient["patients_drawn"]["ci_low"] == by_patient["patients_drawn"]["ci_high"] == 8
    # 8 draws from 8 patients: about 8 (1 - (7/8)^8) = 5.3 distinct patients, rarely all 8.
    distinct = by_patient["distinct_patients"]
    assert 2 <= distinct["ci_low"] <= 5 and 6 <= distinct["ci_high"] <= 8
    assert by_patient["whole_patients"]["unit"] == "patient"

    by_case = bootstrap_ci(grouping, ids, n_bootstrap=400, seed=0)
    assert by_case["whole_patients"]["unit"] == "case"
    assert by_case["whole_patients"]["ci_low"] == 0.0  # case resampling splits patients


def test_patient_bootstrap_is_wider_than_image_bootstrap_when_patients_have_many_images():
    # 20 patients with 2 images each, and 2 patients with 100 images each whose scores all go the same way.
    rng = np.random.default_rng(7)
    ids = np.r_[np.repeat(np.arange(20), 2), np.full(100, 20), np.full(100, 21)]
    y = np.r_[np.repeat(np.arange(20) % 2, 2), np.ones(100, int), np.zeros(100, int)]
    p = np.clip(0.35 + 0.3 * y + rng.normal(0, 0.15, len(y)), 0, 1)
    p[ids == 20] = np.clip(0.3 + rng.normal(0, 0.03, 100), 0, 1)  # a positive patient the model misses
    p[ids == 21] = np.clip(0.45 + rng.normal(0, 0.03, 100), 0, 1)  # a negative patient it over-calls
    patient = bootstrap_ci(_auc_kernel, y, p, groups=ids, vectorized=True, n_bootstrap=1000)
    image = bootstrap_ci(_auc_kernel, y, p, vectorized=True, n_bootstrap=1000)
    assert patient["estimate"] == image["estimate"]
    assert (patient["ci_high"] - patient["ci_low"]) > 2 * (image["ci_high"] - image["ci_low"])
    assert (patient["unit"], patient["n_units"]) == ("patient", 22)
    assert (image["unit"], image["n_units"]) == ("case", 240)


def test_interval_contains_the_estimate_and_narrows_with_more_data():
    widths = []
    for n in (100, 2500):
        y, p = _scores(n, seed=3)
        ci = bootstrap_ci(_auc_kernel, y, p, vectorized=True, n_bootstrap=1000)
        assert ci["ci_low"] < ci["estimate"] < ci["ci_high"]
        widths.append(ci["ci_high"] - ci["ci_low"])
    assert widths[1] < widths[0] / 3  # about sqrt(25) = 5 times narrower


def test_confidence_level_widens_the_interval():
    y, p = _scores(300)
    ci90 = bootstrap_ci(_auc_kernel, y, p, vectorized=True, confidence=0.90, n_bootstrap=1000)
    ci99 = bootstrap_ci(_auc_kernel, y, p, vectorized=True, confidence=0.99, n_bootstrap=1000)
    assert ci99["ci_low"] < ci90["ci_low"] and ci99["ci_high"] > ci90["ci_high"]


def test_seed_reproduces_and_another_seed_differs():
    y, p = _scores(300)
    groups = np.arange(300) // 3
    first = binary_metrics(y, p, threshold=0.5, patient_ids=groups, n_bootstrap=200, seed=11)
    again = binary_metrics(y, p, threshold=0.5, patient_ids=groups, n_bootstrap=200, seed=11)
    other = binary_metrics(y, p, threshold=0.5, patient_ids=groups, n_bootstrap=200, seed=12)
    assert first == again
    assert first["metrics"]["roc_auc"]["ci_low"] != other["metrics"]["roc_auc"]["ci_low"]


def test_resamples_where_the_metric_is_undefined_are_skipped_and_counted():
    # One positive patient among four: about (3/4)^4 = 32% of patient resamples have no positive case.
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.7, 0.2, 0.4, 0.3, 0.8, 0.1, 0.5])
    ids = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    slow = bootstrap_ci(roc_auc_score, y, p, groups=ids, n_bootstrap=2000, seed=0)
    fast = bootstrap_ci(_auc_kernel, y, p, groups=ids, n_bootstrap=2000, seed=0, vectorized=True)
    assert slow["n_resamples_used"] == fast["n_resamples_used"]
    assert 0.6 * 2000 < fast["n_resamples_used"] < 0.76 * 2000
    assert fast["ci_low"] == pytest.approx(slow["ci_low"]) and fast["ci_high"] == pytest.approx(slow["ci_high"])


def test_no_resamples_gives_the_estimate_only():
    y, p = _scores(50)
    ci = bootstrap_ci(roc_auc_score, y, p, n_bootstrap=0)
    assert ci["estimate"] == pytest.approx(roc_auc_score(y, p))
    assert ci["ci_low"] is None and ci["ci_high"] is None and ci["n_resamples_used"] == 0


def test_two_thousand_patient_resamples_of_three_thousand_cases_complete():
    # Speed is measured in benchmarks, not asserted here (timed tests are flaky on shared machines).
    y, p = _scores(3000, seed=9)
    ci = bootstrap_ci(_auc_kernel, y, p, groups=np.arange(3000) // 3, vectorized=True, n_bootstrap=2000)
    assert ci["n_resamples_used"] == 2000
    assert ci["ci_low"] < ci["estimate"] < ci["ci_high"]


def test_bootstrap_errors():
    with pytest.raises(InputError, match=r"array 1 has 3 cases but array 2 has 2"):
        bootstrap_ci(roc_auc_score, [0, 1, 1], [0.2, 0.4])
    with pytest.raises(InputError, match=r"n_bootstrap must be a whole number >= 0"):
        bootstrap_ci(roc_auc_score, [0, 1], [0.2, 0.4], n_bootstrap=-5)
    with pytest.raises(InputError, match=r"confidence must be a number between 0 and 1, such as 0.95"):
        bootstrap_ci(roc_auc_score, [0, 1], [0.2, 0.4], confidence=1.0)
    with pytest.raises(InputError, match=r"needs at least one array"):
        bootstrap_ci(roc_auc_score)
    with pytest.raises(InputError, match=r"array 1 has 2 cases but groups has 3"):
        bootstrap_ci(roc_auc_score, [0, 1], [0.2, 0.4], groups=["a", "b", "c"])
