"""`tl-radiology predict`: the run's exact preprocessing and model on new images (files, series folders or a
manifest), pseudonymous ids, the validation threshold, clear refusals, and the sealed test set left alone."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from test_evaluate_validation import (
    PHASES,
    RAW_PATIENT_TEXT,
    copy_run,
    evaluated_run,
    phantom_manifest,
    pristine_run,
)
from tl_radiology._pseudonym import pseudonymize
from tl_radiology.cli import main
from tl_radiology.data import CaseLoader, Manifest, RunDir, load_arrays, make_triphasic_phantoms
from tl_radiology.evaluation import finalize_on_validation, predict
from tl_radiology.transforms import Window


def _manifest_of(run, split_cases, path):
    """A manifest CSV of some of the run's cases (absolute paths, raw patient ids), in manifest-line order."""
    source = pd.read_csv(RunDir(run).info["manifest"])
    root = RunDir(run).info["manifest_root"]
    frame = source.iloc[sorted(int(r) - 2 for r in split_cases["row"])][["patient_id", *PHASES]]
    for column in PHASES:
        frame[column] = [f"{root}/{v}" for v in frame[column]]
    frame.to_csv(path, index=False)
    return path, frame


@pytest.fixture
def run(tmp_path_factory, tmp_path):
    return copy_run(pristine_run(tmp_path_factory), tmp_path / "run")


def test_a_manifest_is_predicted_exactly_as_the_validation_cases_were(run, tmp_path, capsys):
    val = RunDir(run).cases("val").sort_values("row").reset_index(drop=True)
    manifest, frame = _manifest_of(run, val, tmp_path / "new_cases.csv")
    (tmp_path / "images").symlink_to(RunDir(run).info["manifest_root"])
    root = RunDir(run).info["manifest_root"]
    for column in PHASES:  # relative to the new manifest's folder, as a user's manifest would be
        frame[column] = [v.replace(root, "images") for v in frame[column]]
    frame.to_csv(manifest, index=False)
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(run), str(manifest), "--out", str(out)]) == 0
    assert f"{len(frame)} prediction(s) written to {out}" in capsys.readouterr().out
    table = pd.read_csv(out)
    assert list(table.columns) == ["case_id", "patient", "input_native", "input_arterial", "input_delayed", "row",
                                   "prob_cyst", "prob_solid", "predicted", "threshold"]
    validation = pd.read_csv(run / "val_predictions.csv").set_index("case_id")
    threshold = json.loads((run / "model.json").read_text())["threshold"]["threshold"]
    # The saved loader re-applies the training preprocessing: the same probabilities as on validation.
    np.testing.assert_allclose(table["prob_solid"], validation.loc[val["case_id"], "prob_solid"], atol=1e-5)
    # Same pseudonym key: the manifest's raw patient ids become the run's patient pseudonyms.
    assert list(table["patient"]) == list(val["patient"])
    assert (table["threshold"] == threshold).all()
    assert list(table["predicted"]) == list(np.where(table["prob_solid"] >= threshold, "solid", "cyst"))
    assert list(table["input_arterial"]) == list(frame["arterial"])  # the user's input, as given
    assert list(table["row"]) == list(range(2, len(frame) + 2))
    for column in ("case_id", "patient"):
        assert not table[column].str.contains(RAW_PATIENT_TEXT).any()
    assert table["case_id"].str.match(r"^C-[0-9A-F]{12}$").all() and table["case_id"].is_unique


def test_predict_probabilities_equal_the_models_on_the_same_arrays(run, tmp_path):
    val = RunDir(run).cases("val").head(3)
    manifest, _ = _manifest_of(run, val, tmp_path / "three.csv")  # absolute paths work too
    table = predict(run, manifest, out_csv=tmp_path / "out.csv")
    from tl_radiology.training import TrainedModel

    trained = TrainedModel.load(run)
    loader = CaseLoader(PHASES, per_image=Window.preset("liver"))
    ordered = val.sort_values("row")
    x, _ = load_arrays(ordered, loader, None)
    np.testing.assert_allclose(table["prob_solid"], trained.predict_proba(x), atol=1e-6)
    assert not (run / "cache").exists() or all("predict" not in p.name for p in (run / "cache").rglob("*"))


def test_single_files_for_a_multi_column_model_are_refused_with_the_fix(run, tmp_path, capsys):
    val = RunDir(run).cases("val")
    assert main(["predict", str(run), val["native"].iloc[0], "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "takes 3 image column(s) per case (native, arterial, delayed)" in err and "manifest CSV" in err
    assert not (tmp_path / "p.csv").exists()


def test_a_manifest_without_the_runs_columns_is_refused(run, tmp_path, capsys):
    manifest, frame = _manifest_of(run, RunDir(run).cases("val"), tmp_path / "m.csv")
    frame.drop(columns=["delayed"]).to_csv(manifest, index=False)
    assert main(["predict", str(run), str(manifest), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "has no column 'delayed'" in err and "native, arterial, delayed" in err


def test_sealed_test_files_are_refused_until_the_final_evaluation(run, tmp_path_factory, tmp_path, capsys):
    lock = json.loads((run / "test.lock").read_text())
    test_rows = pd.read_csv(run / "splits.csv")
    test_rows = test_rows[test_rows["split"] == "test"]
    manifest, _ = _manifest_of(run, test_rows, tmp_path / "test_cases.csv")
    assert main(["predict", str(run), str(manifest), "--out", str(tmp_path / "p.csv")]) == 3
    err = capsys.readouterr().err
    assert "is a sealed test file" in err and "tl-radiology evaluate" in err
    assert [e["event"] for e in RunDir(run).audit_events()] == ["sealed"] and not (tmp_path / "p.csv").exists()
    # After the one evaluation the test set is used up: predicting its cases is allowed and matches final/.
    done = evaluated_run(tmp_path_factory)
    table = predict(done, manifest, out_csv=tmp_path / "after.csv")
    final = pd.read_csv(done / "final" / "test_predictions.csv")
    assert len(table) == len(final) == lock["num_test_cases"]
    assert sorted(np.round(table["prob_solid"], 5)) == sorted(np.round(final["prob_solid"], 5))


@pytest.fixture(scope="module")
def single_column_run(tmp_path_factory):
    """A run whose cases are one image each (the arterial phase), for file and folder inputs."""
    from tl_radiology.training import FineTuneConfig, fine_tune

    root = tmp_path_factory.mktemp("single")
    source = pd.read_csv(phantom_manifest(root / "phantoms", num_patients=12, seed=3))
    source.rename(columns={"arterial": "image"})[["patient_id", "label", "image"]].to_csv(
        root / "phantoms" / "arterial.csv", index=False)
    manifest = Manifest.from_csv(root / "phantoms" / "arterial.csv")
    run = RunDir(root / "run")
    run.create_split(manifest, val=0.25, test=0.25, seed=0)
    loader = CaseLoader("image", per_image=Window.preset("liver"))
    x_train, y_train = load_arrays(run.cases("train"), loader, None, task="binary", classes=manifest.classes)
    x_val, y_val = load_arrays(run.cases("val"), loader, None, task="binary", classes=manifest.classes)
    config = FineTuneConfig(backbone="vgg16", weights=None, head_epochs=1, finetune_epochs=0, batch_size=8,
                            early_stopping_patience=None)
    result = fine_tune((x_train, y_train), (x_val, y_val), config=config, task="binary", classes=manifest.classes,
                       verbose=False)
    trained = result.to_trained_model(loader=loader)
    trained.save(run.path)
    finalize_on_validation(run.path, trained, n_bootstrap=0)
    return run.path


def test_image_files_are_predicted_one_row_each_with_the_input_as_given(single_column_run, tmp_path, capsys):
    val = RunDir(single_column_run).cases("val")
    files = list(val["image"].iloc[:2])
    out = tmp_path / "files.csv"
    assert main(["predict", str(single_column_run), *files, "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["case_id", "input", "prob_cyst", "prob_solid", "predicted", "threshold"]
    assert list(table["input"]) == files
    assert list(table["case_id"]) == [pseudonymize(f, prefix="C") for f in files]
    validation = pd.read_csv(single_column_run / "val_predictions.csv").set_index("case_id")
    np.testing.assert_allclose(table["prob_solid"], validation.loc[val["case_id"].iloc[:2], "prob_solid"], atol=1e-5)


def test_images_of_another_shape_or_missing_files_are_refused(single_column_run, tmp_path, capsys):
    bigger = make_triphasic_phantoms(tmp_path / "big", num_patients=1, cases_per_patient=1, size=48, seed=1)
    image = str(bigger.parent / pd.read_csv(bigger)["arterial"].iloc[0])
    assert main(["predict", str(single_column_run), image, "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "load as 48x48x1 images" in err and "model takes 32x32x1" in err
    assert main(["predict", str(single_column_run), str(tmp_path / "nope.dcm"), "--out", str(tmp_path / "p.csv")]) == 2
    assert "nope.dcm' not found" in capsys.readouterr().err
    assert main(["predict", str(single_column_run), image, "--out", str(tmp_path / "p.txt")]) == 2
    assert "--out" in capsys.readouterr().err and not (tmp_path / "p.csv").exists()
