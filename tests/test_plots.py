"""Evaluation plots: valid image files with the right content, written atomically, never showing patient ids."""

from __future__ import annotations

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from tl_radiology import InputError
from tl_radiology.evaluation import (
    choose_threshold,
    plot_bland_altman,
    plot_confusion_matrix,
    plot_pr,
    plot_reliability,
    plot_roc,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def binary():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 240)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.18), 0, 1)
    patients = [f"SECRET-PATIENT-{i // 2}" for i in range(240)]
    return y, p, patients


@pytest.fixture(scope="module")
def multiclass():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 240)
    logits = rng.normal(0, 1, (240, 3))
    logits[np.arange(240), y] += 1.5
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def assert_png(path, min_bytes=15_000):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > min_bytes, f"{path.name} is only {len(data)} bytes"
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 400
    assert pixels[..., :3].std() > 0.05  # not a blank canvas
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "temporary file left behind"


def svg_text(call, path, *args, **kwargs):
    """Draw to SVG with text kept as text, so the labels can be read back."""
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        call(*args, path, **kwargs)
    return path.read_text()


def test_binary_roc_and_pr_are_valid_pngs(tmp_path, binary):
    y, p, patients = binary
    choice = choose_threshold(y, p)
    roc = plot_roc(y, p, tmp_path / "roc.png", threshold=choice, patient_ids=patients, n_bootstrap=300)
    pr = plot_pr(y, p, tmp_path / "pr.png", threshold=choice, patient_ids=patients, n_bootstrap=300)
    assert roc == tmp_path / "roc.png" and pr == tmp_path / "pr.png"
    assert_png(roc)
    assert_png(pr)


def test_roc_legend_has_auc_with_interval_and_operating_point_and_no_patient_ids(tmp_path, binary):
    y, p, patients = binary
    text = svg_text(plot_roc, tmp_path / "roc.svg", y, p, threshold=0.5, patient_ids=patients, n_bootstrap=200)
    assert "95% CI" in text and "AUC 0." in text
    assert "threshold 0.5: sens" in text
    assert "120 patients" in text  # counts, not ids
    assert "SECRET" not in text
    assert "1 − specificity (false positive rate)" in text and "Sensitivity (true positive rate)" in text


def test_pr_plot_shows_prevalence_baseline_and_average_precision(tmp_path, binary):
    y, p, _ = binary
    text = svg_text(plot_pr, tmp_path / "pr.svg", y, p, n_bootstrap=100, confidence=0.9)
    assert f"prevalence {y.mean():.2f} (chance)" in text
    assert "AP 0." in text and "90% CI" in text


def test_multiclass_roc_has_one_curve_per_class(tmp_path, multiclass):
    y, p = multiclass
    names = ["normal", "benign", "malignant"]
    text = svg_text(plot_roc, tmp_path / "roc.svg", y, p, class_names=names, n_bootstrap=100)
    for name in names:
        assert f"{name}: AUC" in text
    assert "one class vs rest" in text
    assert_png(plot_roc(y, p, tmp_path / "roc.png", class_names=names, n_bootstrap=0))


def test_multilabel_roc_marks_each_label_threshold(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, (200, 2))
    p = np.clip(0.3 + 0.35 * y + rng.normal(0, 0.2, y.shape), 0, 1)
    text = svg_text(plot_roc, tmp_path / "roc.svg", y, p, class_names=["effusion", "nodule"],
                    threshold=[0.4, 0.6], n_bootstrap=50)
    assert "effusion threshold 0.4" in text and "nodule threshold 0.6" in text


def test_reliability_diagram_with_histogram(tmp_path, binary):
    y, p, _ = binary
    path = plot_reliability(y, p, tmp_path / "calibration.png", n_bins=8)
    assert_png(path)
    text = svg_text(plot_reliability, tmp_path / "calibration.svg", y, p, n_bins=8)
    assert "8 equal-width bins" in text and "ECE 0." in text
    assert "Observed fraction positive" in text and "Predicted probability" in text
    assert "positive cases" in text and "negative cases" in text


def test_confusion_matrix_shows_counts_and_row_percentages(tmp_path):
    y_true = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    y_pred = [0, 0, 0, 1, 1, 1, 1, 1, 1, 0]
    names = ["normal", "pneumonia"]
    assert_png(plot_confusion_matrix(y_true, y_pred, tmp_path / "cm.png", class_names=names), min_bytes=10_000)
    text = svg_text(plot_confusion_matrix, tmp_path / "cm.svg", y_true, y_pred, class_names=names)
    for cell in ("(75.0%)", "(25.0%)", "(83.3%)", "(16.7%)"):
        assert cell in text
    assert "True class" in text and "Predicted class" in text


def test_bland_altman_plot(tmp_path):
    rng = np.random.default_rng(3)
    y = rng.normal(60, 10, 150)
    pred = y + rng.normal(2, 3, 150)
    assert_png(plot_bland_altman(y, pred, tmp_path / "ba.png", units="years"))
    text = svg_text(plot_bland_altman, tmp_path / "ba.svg", y, pred, units="years")
    bias = float(np.mean(pred - y))
    assert f"bias {bias:.3g}" in text and "bias + 1.96 SD" in text
    assert "Prediction − reference (years)" in text


def test_a_plot_that_fails_while_drawing_leaves_no_file_and_keeps_the_old_one(tmp_path, binary):
    y, p, _ = binary
    fresh = tmp_path / "roc.png"
    with pytest.raises(ValueError):
        # An unknown TeX command fails only when the figure is rendered, inside the atomic write.
        plot_roc(y, p, fresh, title=r"$\notacommand$", n_bootstrap=0)
    assert list(tmp_path.iterdir()) == []

    old = tmp_path / "calibration.png"
    old.write_bytes(b"previous plot")
    with pytest.raises(ValueError):
        plot_reliability(y, p, old, title=r"$\notacommand$")
    assert old.read_bytes() == b"previous plot"
    assert [f.name for f in tmp_path.iterdir()] == ["calibration.png"]


def test_plot_input_errors(tmp_path, binary, multiclass):
    y, p, _ = binary
    with pytest.raises(InputError, match=r"must end in \.png \(or \.svg / \.pdf\); received suffix '\.jpg'"):
        plot_roc(y, p, tmp_path / "roc.jpg")
    with pytest.raises(InputError, match=r"y_true has 240 cases but y_prob has 239"):
        plot_roc(y, p[:-1], tmp_path / "roc.png")
    with pytest.raises(InputError, match=r"y_true holds only class 1 \(240 cases\)"):
        plot_pr(np.ones(240, int), p, tmp_path / "pr.png")
    with pytest.raises(InputError, match=r"y_prob holds 1 value outside \[0, 1\]"):
        plot_reliability(y, np.r_[1.5, p[1:]], tmp_path / "cal.png")
    yc, pc = multiclass
    with pytest.raises(InputError, match=r"threshold is not used for a multiclass task"):
        plot_roc(yc, pc, tmp_path / "roc.png", class_names=["a", "b", "c"], threshold=0.5)
    with pytest.raises(InputError, match=r"class_names must be a list of 3 names"):
        plot_roc(yc, pc, tmp_path / "roc.png")
    with pytest.raises(InputError, match=r"y_pred must hold class indices 0\.\.1"):
        plot_confusion_matrix([0, 1], [0, 2], tmp_path / "cm.png", class_names=["a", "b"])
    assert list(tmp_path.iterdir()) == []
