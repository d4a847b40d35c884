"""Regression metrics (MAE, RMSE, R², Bland-Altman limits of agreement), each with a patient-level bootstrap
confidence interval; the pieces all tasks share are in ``_metrics``.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

from .._errors import InputError
from ._bootstrap import bootstrap_info, summarize
from ._checks import as_values, check_same_length
from ._metrics import _bootstrap, _header, _setup

__all__ = ["regression_metrics"]


# -------------------------------------------------------------------------------------------------- regression

LOA_MULTIPLIER = 1.96


def regression_metrics(y_true, y_pred, *, patient_ids=None, n_bootstrap: int = 2000, confidence: float = 0.95,
                       seed: int | None = 0) -> dict:
    """Metrics of a regression task (e.g. an age, a volume, a score), with patient-level bootstrap intervals.

    Reported: MAE, RMSE and R² (``r2_score``; undefined when ``y_true`` is constant), and the Bland–Altman
    agreement statistics of the differences ``y_pred - y_true``: the bias (mean difference), the SD of the
    differences (n - 1 denominator) and the 95% limits of agreement ``bias ± 1.96 SD``, each with an interval.
    The limits treat every case as one measurement; with several cases per patient the patient bootstrap
    widens their intervals accordingly.

    Args:
        y_true: reference values, one per case.
        y_pred: predicted values, one per case (shape ``(n,)`` or ``(n, 1)``).
        patient_ids: patient id of each case; ``None``: one patient per case.
        n_bootstrap, confidence, seed: the bootstrap, as in :func:`binary_metrics`.

    Returns:
        A JSON-able dict: ``task``, ``n_cases``, ``n_patients``, ``metrics`` (``mae``, ``rmse``, ``r2``),
        ``bland_altman`` (``difference``, ``bias``, ``sd_difference``, ``loa_lower``, ``loa_upper``,
        ``loa_multiplier``), ``bootstrap``.

    Raises:
        InputError: fewer than 2 cases, NaN/inf values, different lengths, bad bootstrap options.

    Example:
        >>> result = regression_metrics([50, 60, 70, 80], [52, 59, 73, 80], n_bootstrap=0)
        >>> result["metrics"]["mae"]["estimate"], result["bland_altman"]["bias"]["estimate"]
        (1.5, 1.0)
    """
    y = as_values(y_true, "y_true")
    yhat = as_values(y_pred, "y_pred")
    n = check_same_length(y_true=y, y_pred=yhat)
    if n < 2:
        raise InputError(f"regression_metrics needs at least 2 cases; received {n}.")
    codes, n_groups, given = _setup(n_bootstrap, confidence, seed, patient_ids, n)

    diff = yhat - y
    sd = float(np.std(diff, ddof=1))
    bias = float(np.mean(diff))
    point = {"mae": mean_absolute_error(y, yhat), "rmse": root_mean_squared_error(y, yhat),
             "r2": r2_score(y, yhat, force_finite=False),
             "bias": bias, "sd_difference": sd,
             "loa_lower": bias - LOA_MULTIPLIER * sd, "loa_upper": bias + LOA_MULTIPLIER * sd}

    # Centre before squaring sums so variances of large values (e.g. volumes in mm³) keep their precision.
    y_c = y - y.mean()
    d_c = diff - bias
    columns = np.column_stack([np.abs(diff), diff ** 2, y_c, y_c ** 2, d_c, d_c ** 2])

    def kernel(weights):
        total = weights.sum(axis=1)
        s_abs, s_sq, s_y, s_y2, s_d, s_d2 = (weights @ columns).T
        with np.errstate(divide="ignore", invalid="ignore"):
            ss_tot = s_y2 - s_y ** 2 / total
            r2 = 1.0 - s_sq / ss_tot
            r2[ss_tot <= 1e-12 * np.maximum(s_y2, 1e-300)] = np.nan
            mean_d = bias + s_d / total
            sd_d = np.sqrt(np.maximum(s_d2 - s_d ** 2 / total, 0.0) / (total - 1))
        return {"mae": s_abs / total, "rmse": np.sqrt(s_sq / total), "r2": r2, "bias": mean_d,
                "sd_difference": sd_d, "loa_lower": mean_d - LOA_MULTIPLIER * sd_d,
                "loa_upper": mean_d + LOA_MULTIPLIER * sd_d}

    values = _bootstrap(kernel, codes, n_groups, n_bootstrap, seed)
    result = _header("regression", n, n_groups, given)
    result.update(
        metrics={name: summarize(point[name], values.get(name), confidence) for name in ("mae", "rmse", "r2")},
        bland_altman={
            "difference": "y_pred - y_true",
            **{name: summarize(point[name], values.get(name), confidence)
               for name in ("bias", "sd_difference", "loa_lower", "loa_upper")},
            "loa_multiplier": LOA_MULTIPLIER,
        },
        bootstrap=bootstrap_info(n_bootstrap, confidence, seed, n_groups, given),
        notes=[] if np.ptp(y) > 0 else ["y_true is constant: R² is undefined."],
    )
    return result
