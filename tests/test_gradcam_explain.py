"""`tl-radiology explain`: Grad-CAM overlays of validation cases, and of test cases only after the final test."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from test_evaluate_validation import PNG_SIGNATURE, RAW_PATIENT_TEXT, copy_run, evaluated_run, pristine_run
from tl_radiology.cli import main
from tl_radiology.data import RunDir


@pytest.fixture
def run(tmp_path_factory, tmp_path):
    return copy_run(pristine_run(tmp_path_factory), tmp_path / "run")


def test_validation_overlays_cover_every_class_and_name_cases_by_pseudonym(run, capsys):
    assert main(["explain", str(run), "--num", "4"]) == 0
    folder = run / "explain" / "val"
    assert str(folder) in capsys.readouterr().out
    index = json.loads((folder / "index.json").read_text())
    val = RunDir(run).cases("val").set_index("case_id")
    assert index["split"] == "val" and index["num_cases"] == 4 and index["backbone"] == "vgg16"
    assert {e["label"] for e in index["cases"]} == {"cyst", "solid"}  # taken in turn from each class
    threshold = json.loads((run / "model.json").read_text())["threshold"]["threshold"]
    for entry in index["cases"]:
        assert entry["case_id"] in val.index and entry["patient"] == val.loc[entry["case_id"], "patient"]
        assert entry["explained_class"] == "solid"  # binary: evidence for the positive class
        assert entry["predicted"] == ("solid" if entry["probability"] >= threshold else "cyst")
        data = (folder / entry["file"]).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and entry["file"] == f"{entry['case_id']}.png"
        image = np.asarray(Image.open(folder / entry["file"]))
        # 32 px input enlarged 8x (bilinear) for display: the input (256 px) and the overlay side by side, 8 px apart.
        assert image.shape == (256, 256 + 8 + 256, 3)
        assert 0 <= min(entry["heatmap_max_at"]) and max(entry["heatmap_max_at"]) < 32
    assert RAW_PATIENT_TEXT not in (folder / "index.json").read_text()
    assert [e["event"] for e in RunDir(run).audit_events()] == ["sealed"]


def test_test_cases_are_refused_before_the_final_evaluation_without_opening_the_seal(run, capsys):
    assert main(["explain", str(run), "--split", "test"]) == 3
    err = capsys.readouterr().err
    assert "still sealed" in err and "tl-radiology evaluate" in err and "--split val" in err
    assert not (run / "explain" / "test").exists()
    assert [e["event"] for e in RunDir(run).audit_events()] == ["sealed"]


def test_test_cases_are_explained_after_the_final_evaluation(tmp_path_factory):
    run = evaluated_run(tmp_path_factory)
    index = json.loads((run / "explain" / "test" / "index.json").read_text())
    lock = json.loads((run / "test.lock").read_text())
    assert index["num_cases"] == 4 and {e["case_id"] for e in index["cases"]} <= set(lock["cases"])
    assert all((run / "explain" / "test" / e["file"]).read_bytes().startswith(PNG_SIGNATURE) for e in index["cases"])


@pytest.mark.parametrize("arguments, message", [
    (["--num", "0"], "--num must be a positive integer"),
    (["--split", "tset"], "Unknown split 'tset'. Did you mean 'test'"),
    (["--layer", "block9_conv1"], "Layer 'block9_conv1' not found"),
])
def test_bad_explain_options_exit_2(run, capsys, arguments, message):
    assert main(["explain", str(run), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (run / "explain").exists()


def test_a_fixed_feature_model_is_refused_with_the_reason(run, capsys):
    from sklearn.linear_model import LogisticRegression

    from tl_radiology.data import load_arrays, loader_from_config
    from tl_radiology.training import BackboneFeatures, TrainedModel

    fine_tuned = TrainedModel.load(run)
    loader = loader_from_config(fine_tuned.loader_config)
    x, y = load_arrays(RunDir(run).cases("train"), loader, None, task="binary", classes=fine_tuned.classes)
    features = BackboneFeatures(backbone="vgg16", weights=None).fit(x)
    classifier = LogisticRegression().fit(features.transform(x), y)
    TrainedModel.from_features(features, classifier, task="binary", classes=fine_tuned.classes,
                               loader=loader).save(run)
    assert main(["explain", str(run)]) == 2
    assert "Grad-CAM needs a fine-tuned network" in capsys.readouterr().err
