"""Threshold choice on validation data, and calibration (ECE, reliability data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from tl_radiology import InputError, OptionError
from tl_radiology.evaluation import (
    ThresholdChoice,
    binary_metrics,
    choose_threshold,
    expected_calibration_error,
    reliability_curve,
)


def _rates(y, p, t):
    y, p = np.asarray(y), np.asarray(p)
    called = p >= t
    return called[y == 1].mean(), (~called[y == 0]).mean()


# ------------------------------------------------------------------------------------------------- thresholds

def test_youden_threshold_on_a_constructed_example():
    # At 'p >= 0.5': sensitivity 5/6, specificity 5/5, J = 0.833; at 'p >= 0.35': 6/6 and 4/5, J = 0.8.
    y = [0, 0, 0, 0, 1, 0, 1, 1, 1, 1, 1]
    p = [0.05, 0.1, 0.2, 0.3, 0.35, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9]
    choice = choose_threshold(y, p)
    assert choice.method == "youden" and choice.target is None
    assert choice.threshold == pytest.approx(0.475)  # midway between 0.45 and 0.5: same calls on validation
    assert choice.sensitivity == pytest.approx(5 / 6) and choice.specificity == 1.0
    assert choice.youden_j == pytest.approx(5 / 6)
    assert (choice.n_cases, choice.n_positive) == (11, 6)
    # No threshold on a fine grid does better.
    grid = np.linspace(0, 1, 2001)
    assert max(sum(_rates(y, p, t)) - 1 for t in grid) == pytest.approx(choice.youden_j)


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 1.0])
def test_target_sensitivity_is_reached_with_the_highest_such_threshold(target):
    rng = np.random.default_rng(int(target * 100))
    y = rng.integers(0, 2, 400)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.18), 0, 1)
    choice = choose_threshold(y, p, method="sensitivity", target=target)
    sens, spec = _rates(y, p, choice.threshold)
    assert sens >= target
    assert (sens, spec) == pytest.approx((choice.sensitivity, choice.specificity))
    # The threshold lies just below a validation probability (same calls); the next one up misses the target,
    # so no more specific threshold reaches it.
    above = np.unique(p[p > choice.threshold])
    assert _rates(y, p, above[0]) == pytest.approx((choice.sensitivity, choice.specificity))
    assert _rates(y, p, above[1])[0] < target


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_target_specificity_is_reached_with_the_lowest_such_threshold(target):
    rng = np.random.default_rng(int(target * 1000))
    y = rng.integers(0, 2, 400)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.18), 0, 1)
    choice = choose_threshold(y, p, method="specificity", target=target)
    sens, spec = _rates(y, p, choice.threshold)
    assert spec >= target
    assert (sens, spec) == pytest.approx((choice.sensitivity, choice.specificity))
    lower = np.unique(p[p < choice.threshold])[-1]
    assert _rates(y, p, lower)[1] < target  # a lower threshold breaks the target: this is the most sensitive


def test_threshold_choice_travels_to_the_test_metrics_and_to_json():
    y_val, p_val = [0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9]
    choice = choose_threshold(y_val, p_val, method="sensitivity", target=1.0)
    assert isinstance(choice, ThresholdChoice)
    record = json.loads(json.dumps(choice.to_dict()))
    assert record["rule"] == "positive if probability >= threshold" and record["chosen_on"] == "validation"
    result = binary_metrics([0, 1, 1, 0], [0.3, 0.33, 0.9, 0.1], threshold=choice, n_bootstrap=0)
    assert result["threshold"]["value"] == choice.threshold
    # 0.33 is below every validation positive (0.35) but above the midpoint 0.275: still called positive.
    assert result["metrics"]["sensitivity"]["estimate"] == 1.0


def test_threshold_errors():
    with pytest.raises(InputError, match=r"y_val holds only class 1 \(3 cases\); a threshold needs positive and "
                                         r"negative validation cases\. Use a validation split stratified"):
        choose_threshold([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(InputError, match=r"method='sensitivity' needs target"):
        choose_threshold([0, 1], [0.2, 0.9], method="sensitivity")
    with pytest.raises(InputError, match=r"target=0\.9 is only used with method='sensitivity' or 'specificity'"):
        choose_threshold([0, 1], [0.2, 0.9], target=0.9)
    with pytest.raises(InputError, match=r"target must be a specificity in \(0, 1\]"):
        choose_threshold([0, 1], [0.2, 0.9], method="specificity", target=90)
    with pytest.raises(OptionError, match=r"Unknown threshold method 'yuoden'\. Did you mean 'youden'\?"):
        choose_threshold([0, 1], [0.2, 0.9], method="yuoden")
    with pytest.raises(InputError, match=r"y_val has 2 cases but p_val has 3"):
        choose_threshold([0, 1], [0.2, 0.9, 0.4])
    with pytest.raises(InputError, match=r"No threshold in \[0, 1\] reaches the target"):
        choose_threshold([0, 1, 0], [0.2, 0.9, 1.0], method="specificity", target=1.0)


# ------------------------------------------------------------------------------------------------ calibration

def test_ece_is_zero_for_perfectly_calibrated_binned_predictions():
    # In every bin the fraction of positives equals the (single) predicted probability.
    p = np.repeat([0.05, 0.25, 0.55, 0.85], 20)
    y = np.concatenate([np.r_[np.ones(k), np.zeros(20 - k)] for k in (1, 5, 11, 17)]).astype(int)
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_a_constructed_case():
    # Bin (0.1, 0.2]: p 0.2, 2 of 10 positive -> gap 0. Bin (0.8, 0.9]: p 0.9, 6 of 10 positive -> gap 0.3.
    p = np.r_[np.full(10, 0.2), np.full(10, 0.9)]
    y = np.r_[np.ones(2), np.zeros(8), np.ones(6), np.zeros(4)].astype(int)
    assert expected_calibration_error(y, p) == pytest.approx(0.5 * 0.3)
    # Two bins: all 20 cases in [0, 0.5] and (0.5, 1] as before.
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.5 * 0.0 + 0.5 * 0.3)
    # One bin: mean prediction 0.55, 8 / 20 positive.
    assert expected_calibration_error(y, p, n_bins=1) == pytest.approx(abs(0.4 - 0.55))


def test_reliability_curve_matches_scikit_learn_and_uses_right_closed_bins():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 500)
    y = (rng.uniform(0, 1, 500) < p ** 1.5).astype(int)
    curve = reliability_curve(y, p, n_bins=8)
    observed, predicted = calibration_curve(y, p, n_bins=8, strategy="uniform")
    filled = [k for k, c in enumerate(curve["count"]) if c]
    np.testing.assert_allclose([curve["observed_fraction"][k] for k in filled], observed)
    np.testing.assert_allclose([curve["mean_predicted"][k] for k in filled], predicted)
    assert sum(curve["count"]) == 500
    assert curve["ece"] == pytest.approx(expected_calibration_error(y, p, n_bins=8))
    # A prediction of exactly 0.1 belongs to the first of 10 bins, [0, 0.1], as in calibration_curve.
    edge = reliability_curve([1, 0], [0.1, 0.15], n_bins=10)
    assert edge["count"][:2] == [1, 1] and edge["observed_fraction"][2] is None
    json.dumps(edge, allow_nan=False)


def test_calibration_errors():
    with pytest.raises(InputError, match=r"n_bins must be a whole number >= 1"):
        expected_calibration_error([0, 1], [0.2, 0.8], n_bins=0)
    with pytest.raises(InputError, match=r"y_prob holds 1 value outside \[0, 1\] \(min -0\.1"):
        expected_calibration_error([0, 1], [-0.1, 0.8])
    with pytest.raises(InputError, match=r"y_true has 2 cases but y_prob has 1"):
        reliability_curve([0, 1], [0.8])
