"""Evaluation plots: ROC, precision-recall, reliability diagram, confusion matrix, Bland–Altman.

Figures are drawn with matplotlib's object-oriented API (``matplotlib.figure.Figure``, rendered by Agg), never
through ``pyplot``: nothing needs a screen, no global figure state is touched, and plotting works from threads.
Each file is written atomically (``tl_radiology._atomic.atomic_path``): a plot that fails while drawing leaves no
file, and an older file of the same name stays as it was. Plots show counts of cases and patients, never ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from .._atomic import atomic_path
from .._errors import InputError
from ._bootstrap import run_bootstrap, summarize, weighted_rank_metrics
from ._calibration import bin_index, reliability_curve
from ._checks import (
    as_binary_labels,
    as_class_indices,
    as_label_matrix,
    as_probabilities,
    as_values,
    check_bootstrap_options,
    check_names,
    check_same_length,
    check_threshold,
    patient_codes,
)
from ._threshold import ThresholdChoice

__all__ = ["plot_roc", "plot_pr", "plot_reliability", "plot_confusion_matrix", "plot_bland_altman"]

_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def _format_of(path) -> tuple[Path, str]:
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"path {str(path)!r} must end in .png (or .svg / .pdf); received suffix "
                         f"{path.suffix or '(none)'!r}.")
    return path, fmt


def _save(fig: Figure, path: Path, fmt: str, dpi: int) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return path


def _counts_text(n_cases: int, n_groups: int, given: bool) -> str:
    return f"n = {n_cases} cases, {n_groups} patients" if given else f"n = {n_cases} cases"


def _ci_text(summary: dict, confidence: float, digits: int = 3) -> str:
    text = f"{summary['estimate']:.{digits}f}"
    if summary["ci_low"] is not None:
        text += f" ({confidence:.0%} CI {summary['ci_low']:.{digits}f}–{summary['ci_high']:.{digits}f})"
    return text


def _threshold_value(threshold) -> float:
    return check_threshold(threshold.threshold if isinstance(threshold, ThresholdChoice) else threshold)


def _curve_sets(y_true, y_prob, class_names, threshold):
    """Split the inputs into one binary problem per curve: ``[(name, y, p, threshold or None)]`` and the task."""
    p_raw = np.asarray(y_prob)
    y_raw = np.asarray(y_true)
    if p_raw.ndim == 1 or (p_raw.ndim == 2 and p_raw.shape[1] == 1):  # binary
        y = as_binary_labels(y_raw, "y_true")
        p = as_probabilities(p_raw, "y_prob")
        check_same_length(y_true=y, y_prob=p)
        t = None if threshold is None else _threshold_value(threshold)
        if 0 < y.sum() < len(y):
            return [(None, y, p, t)], "binary", len(y)
        raise InputError(f"y_true holds only class {int(y[0])} ({len(y)} cases); a ROC or PR curve needs "
                         "positive and negative cases.")
    p = as_probabilities(p_raw, "y_prob", ndim=2)
    names = check_names(class_names, p.shape[1], argument="class_names", axis="column of y_prob")
    if y_raw.ndim == 2:  # multilabel indicator matrix
        y = as_label_matrix(y_raw, "y_true")
        check_same_length(y_true=y, y_prob=p)
        if y.shape[1] != p.shape[1]:
            raise InputError(f"y_true has {y.shape[1]} label columns but y_prob has {p.shape[1]}; pass one "
                             "column per label in both.")
        if threshold is None:
            cutoffs = [None] * len(names)
        elif np.ndim(threshold) == 0 and not isinstance(threshold, (list, tuple)):
            cutoffs = [_threshold_value(threshold)] * len(names)
        else:
            cutoffs = [_threshold_value(t) for t in threshold]
            if len(cutoffs) != len(names):
                raise InputError(f"threshold has {len(cutoffs)} values but there are {len(names)} labels; pass "
                                 "one per label.")
        sets = [(names[j], y[:, j], p[:, j], cutoffs[j]) for j in range(len(names))]
        task = "multilabel"
    else:  # multiclass, one-vs-rest
        if threshold is not None:
            raise InputError("threshold is not used for a multiclass task (the prediction is the argmax); "
                             "drop it, or pass a 2-D y_true for a multilabel task.")
        y = as_class_indices(y_raw, names, "y_true")
        check_same_length(y_true=y, y_prob=p)
        sets = [(names[c], (y == c).astype(np.int64), p[:, c], None) for c in range(len(names))]
        task = "multiclass"
    usable = [s for s in sets if 0 < s[1].sum() < len(s[1])]
    if not usable:
        raise InputError("No class or label in y_true has both positive and negative cases; a curve needs both.")
    return usable, task, len(y)


def _auc_intervals(sets, patient_ids, n_cases, n_bootstrap, confidence, seed):
    check_bootstrap_options(n_bootstrap, confidence, seed)
    codes, n_groups, given = patient_codes(patient_ids, n_cases)
    summaries = []
    for _, y, p, _ in sets:
        kernel = weighted_rank_metrics(y, p)
        point = kernel(np.ones((1, n_cases)))
        values = run_bootstrap(kernel, codes, n_groups, n_bootstrap, seed) if n_bootstrap else {}
        summaries.append({key: summarize(point[key][0], values.get(key), confidence)
                          for key in ("roc_auc", "pr_auc")})
    return summaries, n_groups, given


def _operating_point(y, p, t):
    called = p >= t
    sens = float(np.mean(called[y == 1]))
    spec = float(np.mean(~called[y == 0]))
    ppv = float(np.mean(y[called] == 1)) if called.any() else float("nan")
    return sens, spec, ppv


def _prefix(name) -> str:
    """A curve's name before its legend text (a binary task's one curve has none)."""
    return f"{name} " if name else ""


def _mark(ax, x, y, line, label: str) -> None:
    """The operating point of a threshold, in the colour of its curve."""
    ax.plot(x, y, marker="o", markersize=8, color=line.get_color(), markeredgecolor="black", linestyle="none",
            label=label)


def _draw_roc(ax, sets, summaries, confidence) -> None:
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance (AUC 0.5)")
    for (name, y, p, t), summary in zip(sets, summaries):
        fpr, tpr, _ = roc_curve(y, p)
        label = f"AUC {_ci_text(summary['roc_auc'], confidence)}"
        line, = ax.plot(fpr, tpr, linewidth=1.8, label=f"{name}: {label}" if name else label)
        if t is not None:
            sens, spec, _ = _operating_point(y, p, t)
            _mark(ax, 1 - spec, sens, line, f"{_prefix(name)}threshold {t:.3g}: sens {sens:.2f}, spec {spec:.2f}")
    ax.set_aspect("equal")


def _draw_pr(ax, sets, summaries, confidence) -> None:
    for (name, y, p, t), summary in zip(sets, summaries):
        precision, recall, _ = precision_recall_curve(y, p)
        label = f"AP {_ci_text(summary['pr_auc'], confidence)}"
        line, = ax.plot(recall, precision, drawstyle="steps-post", linewidth=1.8,
                        label=f"{name}: {label}" if name else label)
        prevalence = float(y.mean())
        ax.axhline(prevalence, linestyle="--", linewidth=1, color=line.get_color(), alpha=0.7,
                   label=f"{_prefix(name)}prevalence {prevalence:.2f} (chance)")
        if t is not None:
            sens, _, ppv = _operating_point(y, p, t)
            if np.isfinite(ppv):
                _mark(ax, sens, ppv, line, f"{_prefix(name)}threshold {t:.3g}: sens {sens:.2f}, PPV {ppv:.2f}")


# Per curve kind: what draws the curves, the x and y axis labels, where the legend goes, the default title by task.
_CURVES = {
    "roc": (_draw_roc, ("1 − specificity (false positive rate)", "Sensitivity (true positive rate)"), "lower right",
            {"binary": "ROC curve", "multiclass": "ROC curves, one class vs rest",
             "multilabel": "ROC curves per label"}),
    "pr": (_draw_pr, ("Recall (sensitivity)", "Precision (PPV)"), "lower left",
           {"binary": "Precision-recall curve", "multiclass": "Precision-recall curves, one class vs rest",
            "multilabel": "Precision-recall curves per label"}),
}


def _curve_plot(kind: str, y_true, y_prob, path, *, threshold, class_names, patient_ids, n_bootstrap, confidence,
                seed, title, dpi) -> Path:
    """What :func:`plot_roc` (``kind="roc"``) and :func:`plot_pr` (``"pr"``) share: the checks, the AUC intervals,
    one axes on [0, 1] with the curves, the labels, the title with the counts, and the file."""
    draw, (xlabel, ylabel), legend, titles = _CURVES[kind]
    path, fmt = _format_of(path)
    sets, task, n_cases = _curve_sets(y_true, y_prob, class_names, threshold)
    summaries, n_groups, given = _auc_intervals(sets, patient_ids, n_cases, n_bootstrap, confidence, seed)

    fig = Figure(figsize=(6.4, 6.0), layout="constrained")
    ax = fig.add_subplot()
    draw(ax, sets, summaries, confidence)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title or titles[task]}\n{_counts_text(n_cases, n_groups, given)}")
    ax.grid(alpha=0.3)
    ax.legend(loc=legend, fontsize="small")
    return _save(fig, path, fmt, dpi)


def plot_roc(y_true, y_prob, path, *, threshold=None, class_names=None, patient_ids=None,
             n_bootstrap: int = 2000, confidence: float = 0.95, seed: int | None = 0, title: str | None = None,
             dpi: int = 150) -> Path:
    """Plot ROC curves with the AUC and its patient-bootstrap interval in the legend; write them to ``path``.

    The task follows from the shapes: ``y_prob`` of shape ``(n,)`` is binary (one curve; ``threshold`` marks the
    operating point chosen on validation); ``(n, K)`` with 1-D ``y_true`` is multiclass (one one-vs-rest curve
    per class); ``(n, L)`` with a 2-D ``y_true`` indicator matrix is multilabel (one curve per label;
    ``threshold`` may be one value per label). A class with no cases has no curve.

    Args:
        y_true: labels: 0/1 (binary), class indices or names (multiclass), or an ``(n, L)`` 0/1 matrix.
        y_prob: predicted probabilities, ``(n,)`` or ``(n, K)``.
        path: the image file to write (``.png``; ``.svg`` and ``.pdf`` also work).
        threshold: operating point(s) to mark: a number, a :class:`ThresholdChoice`, or one per label.
        class_names: names of the columns of a 2-D ``y_prob``.
        patient_ids: patient id of each case, for the AUC's interval (resampling patients).
        n_bootstrap: bootstrap resamples for the interval (0: the AUC only).
        confidence, seed: the interval's coverage and random seed.
        title: the plot title (default "ROC curve" with the task and the number of cases).
        dpi: resolution of a PNG.

    Returns:
        The path written.

    Raises:
        InputError: as the metric functions (one class only, lengths, probabilities outside [0, 1]), a path
            without an image suffix.

    Example:
        >>> plot_roc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], "roc.png", threshold=0.3)  # doctest: +SKIP
        PosixPath('roc.png')
    """
    return _curve_plot("roc", y_true, y_prob, path, threshold=threshold, class_names=class_names,
                       patient_ids=patient_ids, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed,
                       title=title, dpi=dpi)


def plot_pr(y_true, y_prob, path, *, threshold=None, class_names=None, patient_ids=None,
            n_bootstrap: int = 2000, confidence: float = 0.95, seed: int | None = 0, title: str | None = None,
            dpi: int = 150) -> Path:
    """Plot precision-recall curves with the average precision and its interval in the legend.

    The dashed line of each curve's colour is its prevalence, the precision of a random classifier: a PR curve
    is read against it, which makes it more telling than ROC for rare findings. Arguments and task detection
    as :func:`plot_roc`; ``threshold`` marks (sensitivity, PPV) at the operating point.

    Returns:
        The path written.

    Raises:
        InputError: as :func:`plot_roc`.

    Example:
        >>> plot_pr([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], "pr.png", patient_ids=["a", "a", "b", "c"])  # doctest: +SKIP
        PosixPath('pr.png')
    """
    return _curve_plot("pr", y_true, y_prob, path, threshold=threshold, class_names=class_names,
                      patient_ids=patient_ids, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed,
                      title=title, dpi=dpi)


def plot_reliability(y_true, y_prob, path, *, n_bins: int = 10, title: str | None = None, dpi: int = 150) -> Path:
    """Plot a reliability diagram (calibration curve) above the histogram of predicted probabilities.

    Top: for each of ``n_bins`` equal-width bins, the observed fraction of positives against the mean predicted
    probability; points on the diagonal are perfectly calibrated, points below it are over-confident
    predictions of disease. The legend gives the expected calibration error. Bottom: how many negative and
    positive cases fall in each bin (a bin with few cases has a noisy point above it).

    Args:
        y_true: 0/1 labels.
        y_prob: predicted probabilities of the positive class.
        path: the image file to write (``.png``; ``.svg`` and ``.pdf`` also work).
        n_bins: number of equal-width bins (as :func:`expected_calibration_error`).
        title: the plot title (default "Reliability diagram" with the number of cases).
        dpi: resolution of a PNG.

    Returns:
        The path written.

    Raises:
        InputError: labels other than 0/1, probabilities outside [0, 1], different lengths, a bad path.

    Example:
        >>> plot_reliability([0, 1, 0, 1], [0.2, 0.3, 0.6, 0.9], "calibration.png")  # doctest: +SKIP
        PosixPath('calibration.png')
    """
    path, fmt = _format_of(path)
    curve = reliability_curve(y_true, y_prob, n_bins)  # checks the inputs
    y = as_binary_labels(y_true)
    p = as_probabilities(y_prob)
    n_bins = curve["n_bins"]
    filled = [k for k in range(n_bins) if curve["count"][k]]

    fig = Figure(figsize=(6.0, 7.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="perfect calibration")
    top.plot([curve["mean_predicted"][k] for k in filled], [curve["observed_fraction"][k] for k in filled],
             marker="o", linewidth=1.8, label=f"model (ECE {curve['ece']:.3f}, {n_bins} equal-width bins)")
    top.set_xlim(0, 1)
    top.set_ylim(-0.01, 1.01)
    top.set_ylabel("Observed fraction positive")
    top.set_title(f"{title or 'Reliability diagram'}\nn = {len(y)} cases, {int(y.sum())} positive")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize="small")

    bins = bin_index(p, n_bins)
    negatives = np.bincount(bins[y == 0], minlength=n_bins)
    positives = np.bincount(bins[y == 1], minlength=n_bins)
    left = np.array(curve["bin_lower"])
    width = 1.0 / n_bins
    bottom.bar(left, negatives, width=width, align="edge", color="tab:blue", alpha=0.6, edgecolor="white",
               label="negative cases")
    bottom.bar(left, positives, width=width, align="edge", bottom=negatives, color="tab:red", alpha=0.6,
               edgecolor="white", label="positive cases")
    bottom.set_xlabel("Predicted probability")
    bottom.set_ylabel("Cases")
    bottom.set_ylim(0, max(1, int((negatives + positives).max())) * 1.45)  # headroom for the legend
    bottom.legend(loc="upper center", ncols=2, fontsize="small")
    return _save(fig, path, fmt, dpi)


def plot_confusion_matrix(y_true, y_pred, path, *, class_names, title: str | None = None, dpi: int = 150) -> Path:
    """Plot a confusion matrix with counts and row percentages (the share of each true class).

    Rows are the true class, columns the predicted class; the diagonal of the row percentages is each class's
    sensitivity. Colour follows the row percentage, so rare classes are as visible as common ones.

    Args:
        y_true: true class of each case (index into ``class_names`` or a name).
        y_pred: predicted class of each case, e.g. ``(p >= threshold)`` for a binary task or the argmax.
        path: the image file to write (``.png``; ``.svg`` and ``.pdf`` also work).
        class_names: names of the classes in order (``["negative", "positive"]`` for a binary task).
        title: the plot title (default "Confusion matrix" with the number of cases).
        dpi: resolution of a PNG.

    Returns:
        The path written.

    Raises:
        InputError: classes outside ``class_names``, different lengths, a bad path.

    Example:
        >>> plot_confusion_matrix([0, 1, 1], [0, 1, 0], "cm.png", class_names=["normal", "pneumonia"])  # doctest: +SKIP
        PosixPath('cm.png')
    """
    path, fmt = _format_of(path)
    if class_names is None or isinstance(class_names, str):
        raise InputError(f"class_names must list the class names in order; received {class_names!r}.")
    names = check_names(class_names, len(list(class_names)), argument="class_names", axis="class")
    if len(names) < 2:
        raise InputError(f"class_names must list at least 2 classes; received {names}.")
    t = as_class_indices(y_true, names, "y_true")
    q = as_class_indices(y_pred, names, "y_pred")
    check_same_length(y_true=t, y_pred=q)
    k = len(names)
    matrix = np.bincount(t * k + q, minlength=k * k).reshape(k, k)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)

    size = max(4.5, 1.0 + 0.8 * k)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(share * 100, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(image, ax=ax, label="% of the true class (row)")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{matrix[i, j]}\n({share[i, j]:.1%})", ha="center", va="center",
                    fontsize="small" if k > 6 else "medium", color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), labels=names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), labels=names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(f"{title or 'Confusion matrix'}\nn = {len(t)} cases; counts (row %)")
    return _save(fig, path, fmt, dpi)


def plot_bland_altman(y_true, y_pred, path, *, units: str = "", title: str | None = None, dpi: int = 150) -> Path:
    """Bland–Altman plot of predictions against reference values.

    Each case is a point at (mean of prediction and reference, prediction − reference). Lines mark the bias
    (mean difference) and the 95% limits of agreement, bias ± 1.96 SD of the differences, as
    :func:`regression_metrics` reports them. A trend in the points means the error depends on the size of the
    value.

    Args:
        y_true: reference values.
        y_pred: predicted values.
        path: the image file to write (``.png``; ``.svg`` and ``.pdf`` also work).
        units: units shown on the axes, e.g. ``"years"`` or ``"mL"``.
        title: the plot title (default "Bland–Altman plot" with the number of cases).
        dpi: resolution of a PNG.

    Returns:
        The path written.

    Raises:
        InputError: fewer than 2 cases, NaN/inf values, different lengths, a bad path.

    Example:
        >>> plot_bland_altman([50, 60, 70], [52, 59, 73], "ba.png", units="years")  # doctest: +SKIP
        PosixPath('ba.png')
    """
    path, fmt = _format_of(path)
    y = as_values(y_true, "y_true")
    yhat = as_values(y_pred, "y_pred")
    n = check_same_length(y_true=y, y_pred=yhat)
    if n < 2:
        raise InputError(f"a Bland–Altman plot needs at least 2 cases; received {n}.")
    mean = (y + yhat) / 2
    diff = yhat - y
    bias = float(diff.mean())
    sd = float(diff.std(ddof=1))
    unit = f" ({units})" if units else ""

    fig = Figure(figsize=(7.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(mean, diff, s=14, alpha=0.6, color="tab:blue", edgecolors="none", label="cases")
    def number(value: float) -> str:
        return f"{value:.3g}".replace("-", "−")

    for value, style, text in ((bias, "-", f"bias {number(bias)}"),
                               (bias + 1.96 * sd, "--", f"bias + 1.96 SD {number(bias + 1.96 * sd)}"),
                               (bias - 1.96 * sd, "--", f"bias − 1.96 SD {number(bias - 1.96 * sd)}")):
        ax.axhline(value, linestyle=style, color="tab:red" if style == "-" else "0.3", linewidth=1.2, label=text)
    ax.axhline(0, color="0.7", linewidth=0.8)
    ax.set_xlabel(f"Mean of prediction and reference{unit}")
    ax.set_ylabel(f"Prediction − reference{unit}")
    ax.set_title(f"{title or 'Bland–Altman plot'}\nn = {n} cases; limits of agreement = bias ± 1.96 SD")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path, fmt, dpi)
