"""TrainedModel: save / load round trips for the three kinds, the sha256 refusal, and no patient data in model.json."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from tl_radiology import InputError, OptionError, RunDirError
from tl_radiology.backbones import build_backbone
from tl_radiology.data import CaseLoader, Manifest, import_medmnist, load_arrays
from tl_radiology.training import BackboneFeatures, FineTuneConfig, TrainedModel, fine_tune, make_classifier
from tl_radiology.transforms import Compose, Resize, ScaleIntensity

keras = pytest.importorskip("keras")
pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
              pytest.mark.shared_data]


@pytest.fixture(scope="module")
def pneumonia(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pneumonia_trained")
    with np.load(shared_data / "medmnist_pneumoniamnist" / "pneumoniamnist.npz") as data:
        parts = {f"{s}_{k}": data[f"{s}_{k}"][:n] for s, n in (("train", 48), ("val", 24), ("test", 2))
                 for k in ("images", "labels")}
    np.savez(folder / "pneumoniamnist_small.npz", **parts)
    csv = import_medmnist(folder / "pneumoniamnist_small.npz", folder / "png")
    manifest = Manifest.from_csv(csv)
    cases = manifest.cases
    train = cases[cases["split"] == "train"].reset_index(drop=True)
    val = cases[cases["split"] == "val"].reset_index(drop=True)
    loader = CaseLoader("image", per_image=Compose([ScaleIntensity("range", value_range=(0, 255)), Resize(32)]))
    x_train, y_train = load_arrays(train, loader, task="binary", classes=manifest.classes)
    x_val, y_val = load_arrays(val, loader, task="binary", classes=manifest.classes)
    return {"manifest": manifest, "csv": csv, "train": train, "val": val, "loader": loader,
            "x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val}


@pytest.fixture(scope="module")
def keras_model(pneumonia):
    """A VGG16 (random start, 32 px) with its head trained for one epoch: the kind 'keras'."""
    keras.backend.clear_session()
    config = FineTuneConfig(backbone="vgg16", weights=None, head_epochs=1, finetune_epochs=0, batch_size=16)
    result = fine_tune((pneumonia["x_train"], pneumonia["y_train"]), (pneumonia["x_val"], pneumonia["y_val"]),
                       config=config, task="binary", classes=pneumonia["manifest"].classes, verbose=False)
    return result.to_trained_model(loader=pneumonia["loader"])


@pytest.fixture(scope="module")
def features_model(pneumonia):
    """BackboneFeatures (VGG16, random start) + logistic regression: the kind 'features'."""
    pipe = Pipeline([("features", BackboneFeatures("vgg16")), ("clf", make_classifier("logistic_regression"))])
    pipe.fit(pneumonia["x_train"], pneumonia["y_train"])
    return TrainedModel.from_features(pipe, task="binary", classes=pneumonia["manifest"].classes,
                                      loader=pneumonia["loader"])


@pytest.mark.slow
def test_keras_model_round_trip_gives_the_same_predictions(keras_model, pneumonia, tmp_path):
    from tl_radiology.evaluation import choose_threshold

    x_val = pneumonia["x_val"]
    before = keras_model.predict_proba(x_val)
    assert before.shape == (24,) and ((0 <= before) & (before <= 1)).all()
    keras_model.set_threshold(choose_threshold(pneumonia["y_val"], before))
    keras_model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.keras"]
    loaded = TrainedModel.load(tmp_path)
    assert loaded.kind == "keras"
    assert np.allclose(loaded.predict_proba(x_val), before, atol=1e-6)
    assert np.allclose(loaded.predict_cases(pneumonia["val"]), before, atol=1e-6)  # through the saved loader
    record = json.loads((tmp_path / "model.json").read_text())
    assert record["task"] == {"task": "binary", "num_classes": 2, "loss": None}
    assert record["classes"] == ["0", "1"] and record["positive_class"] == "1"
    assert record["loader"] == pneumonia["loader"].get_config()
    assert record["input_shape"] == [32, 32, 1]
    assert record["weights"]["source"] == "none"  # provenance of the starting weights
    assert record["training_config"]["mode"] == "fine_tune" and record["training_config"]["backbone"] == "vgg16"
    assert record["threshold"]["chosen_on"] == "validation"
    assert loaded.threshold == record["threshold"]
    assert datetime.datetime.fromisoformat(record["created"]).tzinfo is not None
    assert record["toolkit_version"] and len(record["artefacts"]["model.keras"]["sha256"]) == 64


@pytest.mark.slow
def test_features_model_round_trip_keeps_its_random_extractor(features_model, pneumonia, tmp_path):
    x_val = pneumonia["x_val"]
    before = features_model.predict_proba(x_val)
    assert before.shape == (24,)
    features_model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier.joblib", "feature_extractor.weights.h5",
                                                          "model.json"]
    loaded = TrainedModel.load(tmp_path)
    assert loaded.kind == "features"
    assert np.allclose(loaded.predict_proba(x_val), before, atol=1e-6)
    record = json.loads((tmp_path / "model.json").read_text())
    assert record["features"]["params"]["backbone"] == "vgg16"
    assert record["training_config"]["classifier"]["class"].endswith("Pipeline")


@pytest.mark.slow
def test_features_model_with_a_weights_file_refuses_a_changed_file(pneumonia, tmp_path):
    keras.utils.set_random_seed(1)
    weights = tmp_path / "vgg16.weights.h5"
    build_backbone("vgg16", input_shape=(32, 32, 3)).save_weights(weights)
    # Trained on the raw label column ('0' / '1' as text): the classifier's classes are names, not indices.
    x, raw = load_arrays(pneumonia["train"], pneumonia["loader"])
    pipe = Pipeline([("features", BackboneFeatures("vgg16", weights=weights)), ("clf", make_classifier("knn"))])
    pipe.fit(x, raw.astype(str))
    trained = TrainedModel.from_features(pipe, task="binary", classes=pneumonia["manifest"].classes)
    expected = pipe.predict_proba(pneumonia["x_val"])[:, list(pipe.classes_).index("1")]
    assert np.allclose(trained.predict_proba(pneumonia["x_val"]), expected)
    run = tmp_path / "run"
    trained.save(run)
    assert not (run / "feature_extractor.weights.h5").exists()  # the weights file is recorded, not copied
    assert TrainedModel.load(run).weights["sha256"] == trained.weights["sha256"]
    build_backbone("vgg16", input_shape=(32, 32, 3)).save_weights(weights)  # other random values, same path
    with pytest.raises(RunDirError, match=r"backbone weights file .*vgg16.weights.h5 changed since this model was "
                                          r"trained"):
        TrainedModel.load(run)


@pytest.mark.slow
def test_ensemble_averages_its_members_and_round_trips(keras_model, features_model, pneumonia, tmp_path):
    ensemble = TrainedModel.ensemble([keras_model, features_model])
    x_val = pneumonia["x_val"]
    expected = (keras_model.predict_proba(x_val) + features_model.predict_proba(x_val)) / 2
    assert np.allclose(ensemble.predict_proba(x_val), expected, atol=1e-6)
    ensemble.save(tmp_path)
    loaded = TrainedModel.load(tmp_path)
    assert loaded.kind == "ensemble" and [m.kind for m in loaded.members] == ["keras", "features"]
    assert np.allclose(loaded.predict_proba(x_val), expected, atol=1e-6)
    assert len(loaded.weights) == 2
    with pytest.raises(InputError, match=r"Ensemble member 1 has classes \['a', 'b'\] but member 0 has \['0', '1'\]"):
        TrainedModel.ensemble([keras_model, TrainedModel("features", task=features_model.task,
                                                         classes=["a", "b"], input_shape=[32, 32, 1])])
    with pytest.raises(InputError, match=r"at least two TrainedModel members"):
        TrainedModel.ensemble([keras_model])


@pytest.mark.slow
def test_test_time_flips_average_the_views_and_are_saved(keras_model, features_model, pneumonia, tmp_path):
    x = pneumonia["x_val"]
    net = keras_model.model

    def plain(images):
        return np.asarray(net.predict(images, verbose=0), dtype=np.float64)[:, 0]

    model = TrainedModel("keras", task=keras_model.task, classes=keras_model.classes, model=net,
                         loader_config=keras_model.loader_config, input_shape=keras_model.input_shape,
                         tta="horizontal_and_vertical")
    both = model.predict_proba(x)
    views = [x, x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]]  # the image, mirrored left-right, upside down, both
    assert np.allclose(both, np.mean([plain(v) for v in views], axis=0), atol=1e-6)
    assert np.abs(both - plain(x)).max() > 0  # the views differ, so the average is not the plain prediction
    horizontal = model.set_tta("horizontal").predict_proba(x)
    assert np.allclose(horizontal, (plain(x) + plain(x[:, :, ::-1])) / 2, atol=1e-6)
    model.save(tmp_path)
    assert json.loads((tmp_path / "model.json").read_text())["tta"] == "horizontal"
    loaded = TrainedModel.load(tmp_path)
    assert loaded.tta == "horizontal" and np.allclose(loaded.predict_proba(x), horizontal, atol=1e-6)
    ensemble = TrainedModel.ensemble([keras_model, features_model]).set_tta("vertical")
    try:
        assert [m.tta for m in ensemble.members] == ["vertical", "vertical"]
    finally:
        ensemble.set_tta("none")  # the members are the module's shared fixtures
    with pytest.raises(OptionError, match=r"Unknown tta \(test-time flips\) 'diagonal'"):
        model.set_tta("diagonal")


@pytest.mark.slow
def test_a_changed_joblib_file_is_refused_naming_it(features_model, tmp_path):
    features_model.save(tmp_path)
    joblib_file = tmp_path / "classifier.joblib"
    joblib_file.write_bytes(joblib_file.read_bytes() + b"\0")
    with pytest.raises(RunDirError, match=r"Refusing to load .*classifier\.joblib: its sha256 [0-9a-f]{12}\.\.\. "
                                          r"differs from [0-9a-f]{12}\.\.\. recorded in model\.json"):
        TrainedModel.load(tmp_path)
    joblib_file.unlink()
    with pytest.raises(RunDirError, match=r"classifier\.joblib is missing"):
        TrainedModel.load(tmp_path)


@pytest.mark.slow
def test_a_changed_ensemble_member_is_refused(keras_model, features_model, tmp_path):
    TrainedModel.ensemble([keras_model, features_model]).save(tmp_path)
    member = tmp_path / "members" / "1" / "model.json"
    record = json.loads(member.read_text())
    record["classes"] = ["0", "2"]
    member.write_text(json.dumps(record))
    with pytest.raises(RunDirError, match=r"Refusing to load ensemble member .*members/1: its model\.json is missing "
                                          r"or differs"):
        TrainedModel.load(tmp_path)


@pytest.mark.slow
def test_model_json_holds_no_patient_identifiers(keras_model, features_model, pneumonia, tmp_path):
    TrainedModel.ensemble([keras_model, features_model]).save(tmp_path)
    raw = pd.read_csv(pneumonia["csv"], dtype=str)
    identifiers = set(raw["patient_id"]) | set(pneumonia["manifest"].cases["patient"]) | set(
        pneumonia["manifest"].cases["case_id"].astype(str))
    assert len(identifiers) > 100
    for path in tmp_path.rglob("model.json"):
        text = path.read_text()
        leaked = [i for i in identifiers if i in text]
        assert not leaked, f"{path} contains {leaked[:3]}"
        assert "png/" not in text and str(pneumonia["csv"].parent) not in text  # no image paths either


def test_missing_or_foreign_run_directories_are_named(tmp_path):
    with pytest.raises(RunDirError, match=r"No model\.json in .*; expected a run directory with a saved model"):
        TrainedModel.load(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"format_version": 99, "kind": "keras"}))
    with pytest.raises(RunDirError, match=r"has format_version 99; this tl_radiology .* reads version 1"):
        TrainedModel.load(tmp_path)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(1)])
    with pytest.raises(InputError, match=r"Every trained model records which weights it started from"):
        TrainedModel.from_keras(model, task={"task": "binary", "num_classes": 2, "loss": None})
    with pytest.raises(InputError, match=r"A binary model needs 2 classes \(negative, positive\)"):
        TrainedModel("keras", task={"task": "binary", "num_classes": 2, "loss": None}, classes=["a", "b", "c"])
