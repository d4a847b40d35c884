"""Calibration: does a predicted 30% mean that 30% of such cases are positive?

Bins are equal-width on [0, 1] and closed on the right, exactly as scikit-learn's
``calibration_curve(strategy="uniform")`` makes them: with 10 bins, [0, 0.1], (0.1, 0.2], ..., (0.9, 1]. A
prediction of exactly 0.1 falls in the first bin.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.calibration import calibration_curve

from .._errors import InputError
from ._checks import as_binary_labels, as_probabilities, check_same_length

__all__ = ["expected_calibration_error", "reliability_curve", "bin_index", "weighted_ece"]


def _check_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral) or n_bins < 1:
        raise InputError(f"n_bins must be a whole number >= 1, such as 10; received {n_bins!r}.")
    return int(n_bins)


def _inputs(y_true, y_prob):
    y = as_binary_labels(y_true, "y_true")
    p = as_probabilities(y_prob, "y_prob")
    check_same_length(y_true=y, y_prob=p)
    return y, p


def bin_index(y_prob: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each probability, with scikit-learn's ``calibration_curve`` edges (right-closed, equal width)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], y_prob)


def weighted_ece(y: np.ndarray, p: np.ndarray, n_bins: int):
    """Prepare a kernel computing the ECE for many case-weight vectors at once (see ``_bootstrap``).

    Returns:
        ``kernel(weights) -> values``, one ECE per row of ``weights``.
    """
    one_hot = np.zeros((len(p), n_bins))
    one_hot[np.arange(len(p)), bin_index(p, n_bins)] = 1.0
    gap = one_hot * (y - p)[:, None]  # per case: observed minus predicted, in its bin's column

    def kernel(weights: np.ndarray) -> np.ndarray:
        total = weights.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(weights @ gap).sum(axis=1) / total

    return kernel


def expected_calibration_error(y_true, y_prob, n_bins: int = 10) -> float:
    """Expected calibration error of binary predictions, with equal-width bins.

    ECE = sum over bins of (cases in the bin / all cases) x |observed fraction positive - mean predicted
    probability|. Bins are equal-width and right-closed ([0, 0.1], (0.1, 0.2], ... for 10 bins), the same as
    :func:`reliability_curve` and scikit-learn's ``calibration_curve``. 0 means that in every bin the fraction
    of positives equals the average prediction; 0.05 means predictions are off by 5 percentage points on
    average (weighted by how many cases get such predictions). Empty bins contribute nothing. The value depends
    on ``n_bins`` and is noisy for small test sets: read it with its confidence interval (``binary_metrics``).

    Args:
        y_true: 0/1 labels, one per case.
        y_prob: predicted probability of the positive class, one per case.
        n_bins: number of equal-width bins on [0, 1].

    Returns:
        The ECE, between 0 and 1.

    Raises:
        InputError: labels other than 0/1, probabilities outside [0, 1], different lengths, bad ``n_bins``.

    Example:
        >>> round(expected_calibration_error([0, 1, 0, 1], [0.2, 0.2, 0.8, 0.8], n_bins=2), 6)
        0.3
    """
    n_bins = _check_bins(n_bins)
    y, p = _inputs(y_true, y_prob)
    counts = np.bincount(bin_index(p, n_bins), minlength=n_bins)
    observed, predicted = calibration_curve(y, p, n_bins=n_bins, strategy="uniform", pos_label=1)
    # calibration_curve returns only the non-empty bins, in order.
    weights = counts[counts > 0] / len(p)
    return float(np.sum(weights * np.abs(observed - predicted)))


def reliability_curve(y_true, y_prob, n_bins: int = 10) -> dict:
    """Data of a reliability diagram: per equal-width bin, the mean prediction and the observed fraction.

    Args:
        y_true: 0/1 labels, one per case.
        y_prob: predicted probability of the positive class, one per case.
        n_bins: number of equal-width bins on [0, 1] (right-closed, as scikit-learn's ``calibration_curve``).

    Returns:
        A JSON-able dict with lists of length ``n_bins``: ``bin_lower``, ``bin_upper``, ``count`` (cases in the
        bin), ``mean_predicted`` and ``observed_fraction`` (``None`` for an empty bin); plus ``n_bins`` and
        ``ece``.

    Raises:
        InputError: as :func:`expected_calibration_error`.

    Example:
        >>> curve = reliability_curve([0, 1, 0, 1], [0.2, 0.2, 0.8, 0.8], n_bins=2)
        >>> curve["observed_fraction"], curve["mean_predicted"]
        ([0.5, 0.5], [0.2, 0.8])
    """
    n_bins = _check_bins(n_bins)
    y, p = _inputs(y_true, y_prob)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(bin_index(p, n_bins), minlength=n_bins)
    observed, predicted = calibration_curve(y, p, n_bins=n_bins, strategy="uniform", pos_label=1)
    mean_predicted: list = [None] * n_bins
    observed_fraction: list = [None] * n_bins
    for k, obs, pred in zip(np.flatnonzero(counts), observed, predicted):
        mean_predicted[k], observed_fraction[k] = float(pred), float(obs)
    ece = float(np.sum(counts[counts > 0] / len(p) * np.abs(observed - predicted)))
    return {
        "n_bins": n_bins,
        "binning": "equal-width, right-closed",
        "bin_lower": [float(e) for e in edges[:-1]],
        "bin_upper": [float(e) for e in edges[1:]],
        "count": [int(c) for c in counts],
        "mean_predicted": mean_predicted,
        "observed_fraction": observed_fraction,
        "ece": ece,
    }
