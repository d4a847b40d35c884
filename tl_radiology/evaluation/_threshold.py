"""Choosing the decision threshold on validation data, never on the test set.

A sensitivity or specificity reported at a threshold tuned on the test set is optimistic: the threshold has seen
the answers. The threshold is therefore chosen on the validation predictions, stored with the model, and applied
unchanged to the sealed test set (``binary_metrics(..., threshold=choice)``).
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np
from sklearn.metrics import roc_curve

from .._errors import InputError
from .._options import look_up_option
from ..config import THRESHOLD_METHODS
from ._checks import as_binary_labels, as_probabilities, check_same_length

__all__ = ["ThresholdChoice", "choose_threshold"]



@dataclasses.dataclass(frozen=True)
class ThresholdChoice:
    """A decision threshold and what it achieved on the validation set.

    A case is called positive when its probability is ``>= threshold``.

    Attributes:
        threshold: the cut-off to apply to test predictions.
        method: ``"youden"``, ``"sensitivity"`` or ``"specificity"``.
        target: the sensitivity or specificity asked for (``None`` for Youden).
        sensitivity: sensitivity reached on validation at ``threshold``.
        specificity: specificity reached on validation at ``threshold``.
        youden_j: sensitivity + specificity - 1 on validation.
        n_cases: validation cases used.
        n_positive: positive validation cases.
    """

    threshold: float
    method: str
    target: float | None
    sensitivity: float
    specificity: float
    youden_j: float
    n_cases: int
    n_positive: int

    def to_dict(self) -> dict:
        """The choice as a JSON-able dict (for ``model.json`` / ``val_predictions.csv``)."""
        out = dataclasses.asdict(self)
        out["rule"] = "positive if probability >= threshold"
        out["chosen_on"] = "validation"
        return out


def choose_threshold(y_val, p_val, method: str = "youden", target: float | None = None) -> ThresholdChoice:
    """Choose a decision threshold on validation predictions.

    Methods:

    * ``"youden"`` (default): maximise Youden's J = sensitivity + specificity - 1, the point of the ROC curve
      farthest above the diagonal; it weighs a missed positive and a false alarm equally. Among ties, the
      highest threshold (fewest positive calls) is taken.
    * ``"sensitivity"``: the highest threshold whose sensitivity is at least ``target`` (a screening setting:
      "miss at most 10% of cancers" is ``target=0.90``); it is the most specific such threshold.
    * ``"specificity"``: the lowest threshold whose specificity is at least ``target`` (a confirmatory setting);
      it is the most sensitive such threshold.

    Every threshold between two neighbouring distinct validation probabilities classifies the validation cases
    the same way; the midpoint of that interval is returned, so a test case scoring just below the lowest
    validation positive that was called positive is not missed by a floating-point hair. Cases with probability
    ``>= threshold`` are positive.

    Args:
        y_val: validation labels, 0/1 (1 = positive).
        p_val: validation probabilities of the positive class.
        method: ``"youden"``, ``"sensitivity"`` or ``"specificity"``.
        target: the sensitivity or specificity to reach, in (0, 1]; required by those methods, not allowed
            with ``"youden"``.

    Returns:
        A :class:`ThresholdChoice` with the threshold and the validation sensitivity, specificity and J it gives.

    Raises:
        InputError: validation labels of one class only, labels other than 0/1, probabilities outside [0, 1],
            different lengths, a missing or out-of-range ``target``.
        OptionError: an unknown ``method``.

    Example:
        >>> choice = choose_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], method="sensitivity", target=1.0)
        >>> round(choice.threshold, 3), choice.sensitivity, choice.specificity
        (0.225, 1.0, 0.5)
    """
    method = look_up_option(method, THRESHOLD_METHODS, what="threshold method",
                            fix="Use 'youden', or 'sensitivity' / 'specificity' with a target such as 0.9.")
    if method == "youden":
        if target is not None:
            raise InputError(
                f"target={target!r} is only used with method='sensitivity' or 'specificity'; drop it for 'youden'."
            )
    elif target is None:
        raise InputError(f"method={method!r} needs target, the {method} to reach on validation (e.g. target=0.9).")
    elif isinstance(target, bool) or not isinstance(target, numbers.Real) or not 0 < target <= 1:
        raise InputError(f"target must be a {method} in (0, 1], such as 0.9; received {target!r}.")

    y = as_binary_labels(y_val, "y_val")
    p = as_probabilities(p_val, "p_val")
    check_same_length(y_val=y, p_val=p)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        only = 1 if n_pos else 0
        raise InputError(
            f"y_val holds only class {only} ({len(y)} cases); a threshold needs positive and negative validation "
            "cases. Use a validation split stratified by label, or a larger validation set."
        )

    # roc_curve gives, for each distinct probability s (high to low), the rates of calling 'p >= s' positive;
    # its first row (threshold above every probability) calls nothing positive.
    fpr, tpr, cut = roc_curve(y, p, drop_intermediate=False)
    sens, spec = tpr, 1.0 - fpr
    if method == "youden":
        j = tpr - fpr
        j[0] = -np.inf  # calling nothing positive is never the Youden point
        row = int(np.argmax(j))  # first maximum = highest threshold among ties
    elif method == "sensitivity":
        row = int(np.flatnonzero(sens >= target - 1e-12)[0])
    else:
        row = int(np.flatnonzero(spec >= target - 1e-12)[-1])

    threshold = _midpoint(cut, row, p)
    return ThresholdChoice(
        threshold=threshold,
        method=method,
        target=None if target is None else float(target),
        sensitivity=float(sens[row]),
        specificity=float(spec[row]),
        youden_j=float(sens[row] - fpr[row]),
        n_cases=int(len(y)),
        n_positive=n_pos,
    )


def _midpoint(cut: np.ndarray, row: int, p: np.ndarray) -> float:
    """Midpoint of the interval of thresholds that classify the validation cases as row ``row`` does."""
    if row == 0:  # nothing positive: any cut-off above the largest probability
        top = float(p.max())
        if top >= 1.0:
            raise InputError(
                "No threshold in [0, 1] reaches the target: it needs every validation case called negative, but "
                "some have probability 1.0. Lower the target."
            )
        return (top + 1.0) / 2.0
    upper = float(cut[row])
    if row + 1 >= len(cut):  # the lowest probability: everything at or above it is positive
        return upper
    lower = float(cut[row + 1])
    middle = (upper + lower) / 2.0
    # Two neighbouring floats can round the midpoint onto the lower one, which would change the classification.
    return middle if lower < middle <= upper else upper
