"""Class names and the positive class (issue 13 item 7): MedMNIST imports write their names, any manifest may name
its classes, ``positive_class`` chooses what sensitivity refers to, and an unknown one is refused at run start."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tl_radiology import InputError, Recipe, RunDirError
from tl_radiology.cli import main
from tl_radiology.data import Manifest, RunDir, import_medmnist
from tl_radiology.evaluation._scoring import score


def _npz(path, labels_per_split):
    """A tiny MedMNIST-like file: 8 x 8 gray images, the given integer labels per split."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, labels in labels_per_split.items():
        arrays[f"{split}_images"] = rng.integers(0, 255, (len(labels), 8, 8), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.asarray(labels, np.uint8).reshape(-1, 1)
    np.savez(path, **arrays)
    return path


BINARY = {"train": [0, 1, 0, 1, 1, 0], "val": [0, 1, 1, 0], "test": [1, 0, 0, 1]}


def _labels(manifest_path) -> list[str]:
    return pd.read_csv(manifest_path, dtype=str, keep_default_na=False)["label"].tolist()


# ------------------------------------------------------------------------------------------ MedMNIST imports

def test_a_pneumoniamnist_import_writes_normal_and_pneumonia(tmp_path):
    path = import_medmnist(_npz(tmp_path / "pneumoniamnist.npz", BINARY), tmp_path / "out")
    assert _labels(path)[:6] == ["normal", "pneumonia", "normal", "pneumonia", "pneumonia", "normal"]
    manifest = Manifest.from_csv(path)
    assert manifest.classes == ("normal", "pneumonia") and manifest.positive_class == "pneumonia"


def test_medmnist_plus_file_names_and_other_data_sets_are_named_too(tmp_path):
    path = import_medmnist(_npz(tmp_path / "breastmnist_64.npz", BINARY), tmp_path / "breast")
    assert set(_labels(path)) == {"malignant", "normal, benign"}  # the comma survives the CSV
    assert Manifest.from_csv(path).classes == ("malignant", "normal, benign")


def test_retinamnist_grades_stay_numbers(tmp_path):
    grades = {"train": [0, 1, 2, 3, 4, 0], "val": [0, 1, 2, 3, 4], "test": [4, 3, 2, 1, 0]}
    path = import_medmnist(_npz(tmp_path / "retinamnist.npz", grades), tmp_path / "retina")
    assert sorted(set(_labels(path))) == ["0", "1", "2", "3", "4"]  # MedMNIST's names are the grades themselves
    assert Manifest.from_csv(path, task="regression").task == "regression"


def test_an_unknown_file_name_keeps_integers_unless_the_data_set_is_named(tmp_path):
    npz = _npz(tmp_path / "my_copy.npz", BINARY)
    assert set(_labels(import_medmnist(npz, tmp_path / "a"))) == {"0", "1"}
    assert set(_labels(import_medmnist(npz, tmp_path / "b", dataset="pneumoniamnist"))) == {"normal", "pneumonia"}
    assert set(_labels(import_medmnist(_npz(tmp_path / "pneumoniamnist.npz", BINARY), tmp_path / "c",
                                       dataset=None))) == {"0", "1"}
    with pytest.raises(InputError, match=r"Did you mean 'pneumoniamnist'"):
        import_medmnist(npz, tmp_path / "d", dataset="pneumonimnist")


def test_labels_that_do_not_fit_the_data_set_are_refused(tmp_path):
    npz = _npz(tmp_path / "pneumoniamnist.npz", {"train": [0, 1, 2], "val": [0, 1], "test": [1, 0]})
    with pytest.raises(InputError, match=r"do not fit MedMNIST's pneumoniamnist \(2 classes\).*dataset=None"):
        import_medmnist(npz, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------- named manifests

def _coded_manifest(folder, labels=("0", "1", "0", "1", "0", "1", "0", "1", "0", "1", "0", "1")):
    rows = []
    rng = np.random.default_rng(1)
    for i, label in enumerate(labels):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
        rows.append({"patient_id": f"p{i}", "label": label, "image": f"{i}.png"})
    path = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_manifest_names_its_classes_and_split_json_records_them(tmp_path):
    path = _coded_manifest(tmp_path)
    manifest = Manifest.from_csv(path, class_names={"0": "normal", "1.0": "pneumonia"})
    assert manifest.classes == ("0", "1") and manifest.positive_class == "1"
    assert manifest.class_names == {"0": "normal", "1": "pneumonia"}
    assert manifest.cases["label"].tolist()[:2] == ["0", "1"]  # the labels (and so the seal) are unchanged
    run = RunDir(tmp_path / "run")
    run.create_split(manifest, val=0.25, test=0.25, seed=0, pixels=False)
    info = json.loads(run.split_json.read_text())
    assert info["positive_class"] == "1" and info["class_names"] == {"0": "normal", "1": "pneumonia"}


def test_positive_class_by_label_or_name_orders_the_classes_negative_first(tmp_path):
    path = _coded_manifest(tmp_path)
    names = {"0": "normal", "1": "pneumonia"}
    for given in ("0", "normal"):
        manifest = Manifest.from_csv(path, class_names=names, positive_class=given)
        assert manifest.classes == ("1", "0") and manifest.positive_class == "0"
        assert manifest.label_targets().tolist()[:2] == [1.0, 0.0]  # the model scores "0" (normal)
    assert Manifest.from_csv(path, positive_class="1").classes == ("0", "1")  # the default, named


def test_the_seal_does_not_depend_on_names_or_the_positive_class(tmp_path):
    path = _coded_manifest(tmp_path)
    locks = []
    for i, options in enumerate(({}, {"class_names": {"0": "a", "1": "b"}, "positive_class": "a"})):
        run = RunDir(tmp_path / f"run{i}")
        run.create_split(Manifest.from_csv(path, **options), val=0.25, test=0.25, seed=0, pixels=False)
        lock = json.loads(run.test_lock.read_text())
        locks.append((lock["cases"], run.splits_csv.read_text()))
    assert locks[0] == locks[1]


def test_unknown_class_names_and_positive_classes_name_close_matches(tmp_path):
    path = _coded_manifest(tmp_path)
    with pytest.raises(InputError, match=r"unknown positive_class 'pneumonai' \(did you mean 'pneumonia'\?\); "
                                         r"the classes are 0 \(normal\), 1 \(pneumonia\)"):
        Manifest.from_csv(path, class_names={"0": "normal", "1": "pneumonia"}, positive_class="pneumonai")
    with pytest.raises(InputError, match=r"class_names names '2', which is not one of the classes \(0, 1\)"):
        Manifest.from_csv(path, class_names={"2": "other"})
    three = _coded_manifest(tmp_path, labels=("a", "b", "c") * 4)
    with pytest.raises(InputError, match=r"positive_class='a' is for a binary task.*multiclass"):
        Manifest.from_csv(three, positive_class="a")


# -------------------------------------------------------------------------------------------- recipe fields

def test_recipe_fields_are_checked_when_the_recipe_is_made():
    recipe = Recipe(name="cxr", intensity="range", weights=None, class_names={0: "normal", "1": "pneumonia"},
                    positive_class=" pneumonia ")
    assert recipe.class_names == {"0": "normal", "1": "pneumonia"} and recipe.positive_class == "pneumonia"
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    changed = recipe.replace_from_strings({"class_names": '{"0": "healthy", "1": "sick"}'})
    assert changed.class_names == {"0": "healthy", "1": "sick"}
    with pytest.raises(InputError, match=r"field class_names expects a different name for each label"):
        recipe.replace(class_names={"0": "x", "1": "x"})
    with pytest.raises(InputError, match=r"field positive_class expects None with task='multiclass'"):
        recipe.replace(task="multiclass")


# ---------------------------------------------------------------------------- metrics and the positive class

def test_positive_class_changes_which_class_sensitivity_refers_to(tmp_path):
    path = _coded_manifest(tmp_path)
    names = {"0": "normal", "1": "pneumonia"}
    labels = Manifest.from_csv(path).cases["label"].tolist()
    # A model that gives pneumonia (label "1") a high probability, with one miss on each side.
    p_pneumonia = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.6, 0.85, 0.15, 0.4, 0.05, 0.95])
    results = {}
    for positive in ("pneumonia", "normal"):
        classes = Manifest.from_csv(path, class_names=names, positive_class=positive).classes
        p = p_pneumonia if classes[1] == "1" else 1.0 - p_pneumonia  # the model outputs P(classes[1])
        results[positive] = score("binary", classes, labels, p, threshold_record={"threshold": 0.5},
                                  n_bootstrap=0, class_names=names)
    sick, well = results["pneumonia"], results["normal"]
    assert sick["positive_class"] == "pneumonia" and well["positive_class"] == "normal"
    # 5 of 6 pneumonia cases called pneumonia; 5 of 6 normal cases called normal, at 0.5 on either side.
    assert sick["metrics"]["sensitivity"]["estimate"] == pytest.approx(5 / 6)
    assert sick["n_positive"] == 6 and well["n_positive"] == 6
    assert well["metrics"]["sensitivity"]["estimate"] == pytest.approx(sick["metrics"]["specificity"]["estimate"])
    assert well["metrics"]["ppv"]["estimate"] == pytest.approx(sick["metrics"]["npv"]["estimate"])
    assert sick["confusion_matrix"]["class_order"] == ["normal (negative)", "pneumonia (positive)"]
    assert well["confusion_matrix"]["class_order"] == ["pneumonia (negative)", "normal (positive)"]
    assert "pneumonia (positive) if y_prob >= threshold" in sick["threshold"]["rule"]


# ------------------------------------------------------------------------------------------ at run start

def test_an_unknown_positive_class_is_refused_at_run_start_with_exit_2(tmp_path, capsys):
    path = import_medmnist(_npz(tmp_path / "pneumoniamnist.npz", BINARY), tmp_path / "data")
    out = tmp_path / "run"
    status = main(["run", "chest_xray", "--manifest", str(path), "--out", str(out), "--set",
                   "positive_class=pneumonai", "--set", "weights=none", "--quiet"])
    err = capsys.readouterr().err
    assert status == 2
    assert "unknown positive_class 'pneumonai' (did you mean 'pneumonia'?)" in err
    assert "the classes are normal, pneumonia" in err
    assert not out.exists()  # refused before anything was written


def test_a_run_directory_keeps_the_positive_class_of_its_split(tmp_path):
    from tl_radiology.run._split import check_classes

    path = _coded_manifest(tmp_path)
    run = RunDir(tmp_path / "run")
    run.create_split(Manifest.from_csv(path, positive_class="0"), val=0.25, test=0.25, seed=0, pixels=False)
    assert run.info["classes"] == ["1", "0"] and run.info["positive_class"] == "0"
    recipe = Recipe(name="r", intensity="range", weights=None)
    check_classes(run, recipe)  # none given: the recorded one
    check_classes(run, recipe.replace(positive_class="0", class_names={"0": "normal"}))
    with pytest.raises(RunDirError, match=r"split with positive class '0'.*positive_class='1'.*new --out"):
        check_classes(run, recipe.replace(positive_class="1"))
    with pytest.raises(InputError, match=r"unknown positive_class 'nromal' \(did you mean 'normal'\?\)"):
        check_classes(run, recipe.replace(positive_class="nromal", class_names={"0": "normal"}))


# --------------------------------------------------------------------- a tiny real run: JSON and Grad-CAM

def test_a_real_run_names_its_classes_in_the_results_and_grad_cam_captions(tmp_path_factory, tmp_path):
    from test_evaluate_validation import copy_run, pristine_run

    from tl_radiology.data import CaseCache
    from tl_radiology.evaluation import evaluate_run, explain_run, finalize_on_validation
    from tl_radiology.training import TrainedModel

    run = copy_run(pristine_run(tmp_path_factory), tmp_path / "run")  # cyst vs solid, positive "solid"
    trained = TrainedModel.load(run)
    trained.training_config["class_names"] = {"cyst": "simple cyst", "solid": "solid lesion"}
    validation = finalize_on_validation(run, trained, cache=CaseCache(run / "cache"), n_bootstrap=50)
    assert validation["positive_class"] == "solid" and validation["positive_class_name"] == "solid lesion"
    assert validation["class_names"] == {"cyst": "simple cyst", "solid": "solid lesion"}
    assert validation["threshold"]["positive_class"] == "solid"
    assert validation["metrics"]["positive_class"] == "solid lesion"
    model = json.loads((run / "model.json").read_text())
    assert model["training_config"]["positive_class"] == "solid"
    assert model["training_config"]["class_names"]["solid"] == "solid lesion"

    final = evaluate_run(run, n_bootstrap=50)
    assert final["positive_class"] == "solid" and final["negative_class_name"] == "simple cyst"
    assert final["threshold"]["rule"].startswith("solid lesion (the positive class) if its probability >= threshold")
    assert final["metrics"]["confusion_matrix"]["class_order"] == ["simple cyst (negative)",
                                                                   "solid lesion (positive)"]
    on_disk = json.loads((run / "final_test.json").read_text())
    assert on_disk["class_names"] == final["class_names"]

    index = json.loads((explain_run(run, split="val", num=2) / "index.json").read_text())
    assert {case["explained_class"] for case in index["cases"]} == {"solid lesion"}  # "evidence for solid lesion"
