"""Validation finalisation (threshold on validation, val_predictions.csv, val_metrics.json, plots), and the tiny
real runs the evaluation tests share.

The run builders here are plain functions with a per-session cache, imported by the other evaluation test modules
(test_evaluate*.py, test_report*.py, test_predict*.py, test_gradcam_explain.py): a run is trained once per test
session and each test that changes a run works on its own copy.

A run: 24 synthetic patients x 2 triphasic liver-CT phantoms (32 x 32 px DICOM, PatientID "PHANTOM-00NN",
PatientName "PHANTOM"), labelled cyst vs solid lesion (binary, positive class "solid"), split by patient
(val 0.25, test 0.25), VGG16 with random weights fine-tuned for 1 + 3 epochs, saved as a TrainedModel and
finalised on validation.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tl_radiology import InputError
from tl_radiology.data import (
    CaseCache,
    CaseLoader,
    Manifest,
    RunDir,
    load_arrays,
    make_triphasic_phantoms,
)
from tl_radiology.evaluation import choose_threshold, finalize_on_validation
from tl_radiology.transforms import Window

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PHASES = ("native", "arterial", "delayed")
RAW_PATIENT_TEXT = "PHANTOM"  # the phantoms' PatientID prefix and PatientName: must never appear in outputs

_CACHE: dict = {}


def phantom_manifest(folder: Path, *, num_patients: int, seed: int, classes: str = "binary") -> Path:
    """Triphasic phantoms relabelled ``cyst`` / ``solid`` (binary) or kept in 4 classes; returns the CSV."""
    source = make_triphasic_phantoms(folder, num_patients=num_patients, cases_per_patient=2, size=32, seed=seed)
    frame = pd.read_csv(source)
    if classes == "binary":
        frame["label"] = np.where(frame["label"] == "cyst", "cyst", "solid")
    path = folder / f"{classes}.csv"
    frame.to_csv(path, index=False)
    return path


def _train_run(root: Path, manifest_path: Path, *, task: str, epochs: int = 3) -> Path:
    from tl_radiology.training import FineTuneConfig, fine_tune

    manifest = Manifest.from_csv(manifest_path, image_columns=PHASES)
    run = RunDir(root / "run")
    run.create_split(manifest, val=0.25, test=0.25, seed=0)
    loader = CaseLoader(PHASES, per_image=Window.preset("liver"))
    cache = CaseCache(run.path / "cache")
    x_train, y_train = load_arrays(run.cases("train"), loader, cache, task=task, classes=manifest.classes)
    x_val, y_val = load_arrays(run.cases("val"), loader, cache, task=task, classes=manifest.classes)
    config = FineTuneConfig(backbone="vgg16", weights=None, head_epochs=1, finetune_epochs=epochs, unfreeze="all",
                            finetune_learning_rate=1e-3, batch_size=8, early_stopping_patience=None, seed=0)
    result = fine_tune((x_train, y_train), (x_val, y_val), config=config, task=task, classes=manifest.classes,
                       out_dir=run.path, verbose=False)
    trained = result.to_trained_model(loader=loader)
    trained.save(run.path)
    finalize_on_validation(run.path, trained, loader=loader, cache=cache, n_bootstrap=200)
    return run.path


def pristine_run(tmp_path_factory, kind: str = "binary") -> Path:
    """A trained, finalised run (not evaluated), built once per session. Do not modify it: use :func:`copy_run`."""
    key = ("pristine", kind)
    if key not in _CACHE:
        root = tmp_path_factory.mktemp(f"{kind}_run")
        manifest = phantom_manifest(root / "phantoms", num_patients=24, seed=0, classes=kind)
        _CACHE[key] = _train_run(root, manifest, task=kind, epochs=3 if kind == "binary" else 2)
    return _CACHE[key]


def copy_run(source: Path, target: Path) -> Path:
    """A private copy of a run directory (image paths in splits.csv still point at the shared phantoms)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".lock"))
    return target


def evaluated_run(tmp_path_factory) -> Path:
    """A copy of the binary run after one final evaluation and Grad-CAM of 4 validation and 4 test cases."""
    key = ("evaluated", "binary")
    if key not in _CACHE:
        from tl_radiology.evaluation import evaluate_run, explain_run

        run = copy_run(pristine_run(tmp_path_factory), tmp_path_factory.mktemp("evaluated") / "run")
        evaluate_run(run, n_bootstrap=300)
        explain_run(run, split="val", num=4)
        explain_run(run, split="test", num=4)
        _CACHE[key] = run
    return _CACHE[key]


def external_manifest(tmp_path_factory) -> Path:
    """A second phantom site (another seed, 8 patients), labelled like the runs."""
    key = ("external", "binary")
    if key not in _CACHE:
        _CACHE[key] = phantom_manifest(tmp_path_factory.mktemp("site_b") / "phantoms", num_patients=8, seed=7)
    return _CACHE[key]


# ------------------------------------------------------------------------------------------------------ tests

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return pristine_run(tmp_path_factory)


def test_the_threshold_is_chosen_on_validation_and_stored_with_the_model(run):
    val = RunDir(run).cases("val")
    predictions = pd.read_csv(run / "val_predictions.csv")
    model = json.loads((run / "model.json").read_text())
    metrics = json.loads((run / "val_metrics.json").read_text())
    assert list(predictions["case_id"]) == list(val["case_id"])
    assert list(predictions["patient"]) == list(val["patient"]) and list(predictions["label"]) == list(val["label"])
    assert list(predictions.columns) == ["case_id", "patient", "label", "prob_cyst", "prob_solid", "predicted",
                                         "threshold"]
    y = (val["label"] == "solid").astype(int).to_numpy()
    expected = choose_threshold(y, predictions["prob_solid"].to_numpy())
    assert model["threshold"]["threshold"] == pytest.approx(expected.threshold)
    assert model["threshold"]["chosen_on"] == "validation" and model["threshold"]["method"] == "youden"
    assert metrics["threshold"]["threshold"] == model["threshold"]["threshold"]
    assert (predictions["threshold"] == model["threshold"]["threshold"]).all()
    called = np.where(predictions["prob_solid"] >= model["threshold"]["threshold"], "solid", "cyst")
    assert list(predictions["predicted"]) == list(called)
    np.testing.assert_allclose(predictions["prob_cyst"] + predictions["prob_solid"], 1.0)
    # The model file was re-saved with the threshold: loading it gives the same predictions as the CSV.
    from tl_radiology.training import TrainedModel

    trained = TrainedModel.load(run)
    assert trained.threshold["threshold"] == model["threshold"]["threshold"]
    np.testing.assert_allclose(trained.predict_cases(val), predictions["prob_solid"], atol=1e-5)


def test_validation_metrics_have_patient_bootstrap_intervals_and_plots(run):
    metrics = json.loads((run / "val_metrics.json").read_text())
    auc = metrics["metrics"]["metrics"]["roc_auc"]
    assert auc["ci_low"] <= auc["estimate"] <= auc["ci_high"]
    assert metrics["counts"]["cases"] == len(RunDir(run).cases("val"))
    assert metrics["metrics"]["n_patients"] == metrics["counts"]["patients"]
    assert any("optimistic" in note for note in metrics["notes"])
    assert set(metrics["plots"]) == {"roc", "pr", "reliability", "confusion_matrix"}
    for relative in metrics["plots"].values():
        assert (run / relative).read_bytes().startswith(PNG_SIGNATURE)
    for name in ("val_predictions.csv", "val_metrics.json"):
        assert RAW_PATIENT_TEXT not in (run / name).read_text()


def test_a_sensitivity_target_is_met_on_validation(run, tmp_path):
    from tl_radiology.training import TrainedModel

    copy = copy_run(run, tmp_path / "run")
    trained = TrainedModel.load(copy)
    out = finalize_on_validation(copy, trained, threshold_method="sensitivity", target=1.0, n_bootstrap=0)
    assert out["threshold"]["method"] == "sensitivity" and out["threshold"]["sensitivity"] == 1.0
    assert out["metrics"]["metrics"]["sensitivity"]["estimate"] == 1.0
    assert json.loads((copy / "model.json").read_text())["threshold"]["target"] == 1.0


def test_a_split_without_validation_cases_is_refused_before_anything_is_written(run, tmp_path):
    from tl_radiology.training import TrainedModel

    manifest = Manifest.from_csv(Path(RunDir(run).info["manifest"]), image_columns=PHASES)
    empty = RunDir(tmp_path / "noval")
    empty.create_split(manifest, val=0.0, test=0.25, seed=0)
    with pytest.raises(InputError, match=r"no validation cases .*--val 0.15"):
        finalize_on_validation(empty.path, TrainedModel.load(run))
    assert not (empty.path / "model.json").exists() and not (empty.path / "val_metrics.json").exists()
