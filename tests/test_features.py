"""Mode 1: BackboneFeatures as a scikit-learn transformer on real PneumoniaMNIST PNGs, its cache, the classifiers."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from tl_radiology import InputError, OptionError
from tl_radiology.data import CaseLoader, Manifest, import_medmnist, load_arrays
from tl_radiology.training import BackboneFeatures, make_classifier
from tl_radiology.transforms import Compose, Resize, ScaleIntensity

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# ------------------------------------------------------------------------------------------------ sklearn checks

_TABULAR = "feeds tabular 2-D X; BackboneFeatures takes images N x H x W x C and refuses a table, saying so"
# Each check scikit-learn runs that feeds tabular X, with why it cannot pass for an image transformer.
EXPECTED_FAILED_CHECKS = {
    "check_dict_unchanged": _TABULAR,
    "check_dont_overwrite_parameters": _TABULAR,
    "check_dtype_object": _TABULAR + " (and object arrays are refused)",
    "check_estimators_dtypes": _TABULAR,
    "check_estimators_empty_data_messages": _TABULAR + "; an empty image array is refused in our own words",
    "check_estimators_fit_returns_self": _TABULAR,
    "check_estimators_nan_inf": _TABULAR + " (NaN/inf images are refused, tested in this file)",
    "check_estimators_overwrite_params": _TABULAR,
    "check_estimators_pickle": _TABULAR,
    "check_f_contiguous_array_estimator": _TABULAR,
    "check_fit2d_1feature": _TABULAR,
    "check_fit2d_1sample": _TABULAR,
    "check_fit2d_predict1d": _TABULAR,
    "check_fit_check_is_fitted": _TABULAR,
    "check_fit_idempotent": _TABULAR,
    "check_fit_score_takes_y": _TABULAR,
    "check_n_features_in": _TABULAR + "; n_features_in_ has no meaning for images (n_features_out_ is set)",
    "check_n_features_in_after_fitting": _TABULAR,
    "check_positive_only_tag_during_fit": _TABULAR + " (negative values are outside [0, 1] and refused)",
    "check_readonly_memmap_input": _TABULAR,
    "check_transformer_data_not_an_array": _TABULAR,
    "check_transformer_general": _TABULAR,
}


@parametrize_with_checks([BackboneFeatures("vgg16")], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
                         xfail_strict=True)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


# ------------------------------------------------------------------------------------------------ real data

@pytest.fixture(scope="module")
def pneumonia(shared_data, tmp_path_factory):
    """PneumoniaMNIST: 64 training and 32 validation images as PNGs, loaded at 32 px and at their native 28 px."""
    folder = tmp_path_factory.mktemp("pneumonia_features")
    with np.load(shared_data / "medmnist_pneumoniamnist" / "pneumoniamnist.npz") as data:
        parts = {f"{s}_{k}": data[f"{s}_{k}"][:n] for s, n in (("train", 64), ("val", 32), ("test", 2))
                 for k in ("images", "labels")}
    np.savez(folder / "pneumoniamnist_small.npz", **parts)
    manifest = Manifest.from_csv(import_medmnist(folder / "pneumoniamnist_small.npz", folder / "png"))
    cases = manifest.cases
    train, val = cases[cases["split"] == "train"], cases[cases["split"] == "val"]
    scale = ScaleIntensity("range", value_range=(0, 255))
    loader32 = CaseLoader("image", per_image=Compose([scale, Resize(32)]))
    loader28 = CaseLoader("image", per_image=scale)
    x_train, y_train = load_arrays(train, loader32, task="binary", classes=manifest.classes)
    x_val, y_val = load_arrays(val, loader32, task="binary", classes=manifest.classes)
    x28, _ = load_arrays(val, loader28)
    return {"manifest": manifest, "x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val,
            "x28": x28, "loader": loader32}


@pytest.mark.slow
@pytest.mark.shared_data
def test_pipeline_with_logistic_regression_gives_probabilities_and_a_finite_auc(pneumonia):
    keras.backend.clear_session()
    pipe = Pipeline([("features", BackboneFeatures("resnet50", weights=None)),
                     ("clf", make_classifier("logistic_regression"))])
    pipe.fit(pneumonia["x_train"], pneumonia["y_train"])
    features = pipe.named_steps["features"]
    assert features.n_features_out_ == 2048 and features.input_shape_ == (32, 32, 1)
    assert features.weights_identity_["source"] == "none"
    proba = pipe.predict_proba(pneumonia["x_val"])
    assert proba.shape == (32, 2) and np.allclose(proba.sum(axis=1), 1.0)
    auc = roc_auc_score(pneumonia["y_val"], proba[:, 1])
    assert math.isfinite(auc) and 0.0 <= auc <= 1.0  # above chance is not required with random weights
    assert features.transform(pneumonia["x_val"][:3]).dtype == np.float32


@pytest.fixture(scope="module")
def vgg_features(pneumonia, vgg_weights):
    """Training and validation features of the test-written VGG16 weights (extracted once for the module)."""
    keras.backend.clear_session()
    extractor = BackboneFeatures("vgg16", weights=vgg_weights).fit(pneumonia["x_train"])
    return extractor.transform(pneumonia["x_train"]), extractor.transform(pneumonia["x_val"])


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["logistic_regression", "svm", "random_forest", "gradient_boosting", "knn"])
def test_every_classifier_gives_probabilities_on_backbone_features(pneumonia, vgg_features, name):
    f_train, f_val = vgg_features
    assert f_train.shape == (64, 512) and f_val.shape == (32, 512)
    clf = make_classifier(name).fit(f_train, pneumonia["y_train"])
    proba = clf.predict_proba(f_val)
    assert proba.shape == (32, 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert math.isfinite(roc_auc_score(pneumonia["y_val"], proba[:, 1]))


@pytest.mark.slow
@pytest.mark.shared_data
def test_the_cache_makes_the_second_extraction_free(pneumonia, vgg_weights, tmp_path):
    cache = tmp_path / "features_cache"
    x = pneumonia["x_val"]
    first = BackboneFeatures("vgg16", weights=vgg_weights, batch_size=16, cache_dir=cache).fit(x)
    a = first.transform(x)
    assert (first.cache_stats_.hits, first.cache_stats_.misses, first.cache_stats_.model_calls) == (0, 32, 2)
    b = first.transform(x)
    assert (first.cache_stats_.hits, first.cache_stats_.model_calls) == (32, 2)  # no backbone call the 2nd time
    assert np.array_equal(a, b)
    # Another instance (as GridSearchCV's clones are) with the same settings and weights file reads the cache.
    second = clone(first).fit(x[:1])
    assert np.array_equal(second.transform(x), a)
    assert (second.cache_stats_.hits, second.cache_stats_.model_calls) == (32, 0)
    # Mixed: 8 new images cost one call, the others are hits.
    mixed = np.concatenate([x[:8], np.clip(x[:8] * 0.5, 0, 1)])
    second.transform(mixed)
    assert (second.cache_stats_.hits, second.cache_stats_.misses, second.cache_stats_.model_calls) == (40, 8, 1)
    # Another pooling is another extractor: nothing is reused.
    other = BackboneFeatures("vgg16", weights=vgg_weights, pooling="max", cache_dir=cache).fit(x)
    other.transform(x[:4])
    assert (other.cache_stats_.hits, other.cache_stats_.misses) == (0, 4)
    assert other.extractor_key_ != first.extractor_key_
    # File names are hashes (no patient data); each folder describes its extractor.
    names = [p.name for p in cache.rglob("*") if p.is_file()]
    assert all(re.fullmatch(r"[0-9a-f]{64}\.npy|extractor\.json", n) for n in names), names
    assert len([n for n in names if n.endswith(".npy")]) == 32 + 8 + 4
    description = json.loads(next(cache.rglob("extractor.json")).read_text())
    assert description["backbone"] == "vgg16" and description["weights"]["source"] == "file"
    assert "file" not in description["weights"]  # no local paths


@pytest.mark.slow
@pytest.mark.shared_data
def test_random_weights_never_reuse_features_of_another_initialisation(pneumonia, tmp_path):
    x = pneumonia["x_val"][:4]
    keras.backend.clear_session()
    a = BackboneFeatures("vgg16", cache_dir=tmp_path).fit(x)
    b = BackboneFeatures("vgg16", cache_dir=tmp_path).fit(x)
    assert a.extractor_key_ != b.extractor_key_
    assert not np.allclose(a.transform(x), b.transform(x))
    assert b.cache_stats_.hits == 0


@pytest.mark.slow
@pytest.mark.shared_data
def test_grid_search_over_c_reuses_cached_features(pneumonia, vgg_weights, tmp_path):
    cache = tmp_path / "cache"
    pipe = Pipeline([("features", BackboneFeatures("vgg16", weights=vgg_weights, cache_dir=cache)),
                     ("clf", make_classifier("logistic_regression"))])
    search = GridSearchCV(pipe, {"clf__model__C": [0.01, 1.0]}, cv=StratifiedKFold(2, shuffle=True, random_state=0),
                          scoring="roc_auc")
    search.fit(pneumonia["x_train"], pneumonia["y_train"])
    assert search.best_params_["clf__model__C"] in (0.01, 1.0)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.predict_proba(pneumonia["x_val"]).shape == (32, 2)
    # 5 fits and 12 transforms of training images, yet each of the 64 was computed once; then the 32 new
    # validation images once.
    assert len(list(cache.rglob("*.npy"))) == 64 + 32
    stats = search.best_estimator_.named_steps["features"].cache_stats_
    assert (stats.hits, stats.misses, stats.model_calls) == (64, 32, 1)


@pytest.mark.slow
@pytest.mark.shared_data
def test_input_size_resizes_native_28_pixel_images(pneumonia):
    x28 = pneumonia["x28"]
    assert x28.shape[1:] == (28, 28, 1)
    with pytest.raises(InputError, match=r"vgg16 needs inputs of at least 32×32 pixels; received 28×28"):
        BackboneFeatures("vgg16").fit(x28)
    features = BackboneFeatures("vgg16", input_size=32).fit(x28)
    assert features.input_shape_ == (32, 32, 1)
    assert features.transform(x28).shape == (32, 512)


def test_images_that_do_not_fit_are_refused_with_the_reason():
    gray = np.zeros((2, 32, 32), "float32")
    features = BackboneFeatures("vgg16")
    with pytest.raises(NotFittedError):
        features.transform(gray)
    with pytest.raises(InputError, match=r"received a 2-D array of shape \(5, 3\) \(a table of features, not images\)"):
        features.fit(np.zeros((5, 3)))
    with pytest.raises(InputError, match=r"values in \[0, 255\] \(0-255 pixels\? divide by 255\)"):
        features.fit(np.linspace(0, 255, 2 * 32 * 32).reshape(2, 32, 32, 1))
    with pytest.raises(InputError, match=r"NaN or infinite"):
        features.fit(np.full((2, 32, 32, 1), np.nan))
    with pytest.raises(InputError, match=r"does not accept sparse input"):
        import scipy.sparse

        features.fit(scipy.sparse.csr_matrix(np.zeros((2, 3))))
    keras.backend.clear_session()
    features.fit(gray)  # N x H x W is gray
    assert features.input_shape_ == (32, 32, 1)
    with pytest.raises(InputError, match=r"fitted on 1-channel images; received 3 channels"):
        features.transform(np.zeros((1, 32, 32, 3), "float32"))
    with pytest.raises(InputError, match=r"fitted on 32x32 images; received 40x40"):
        features.transform(np.zeros((1, 40, 40, 1), "float32"))
    with pytest.raises(OptionError, match=r"Unknown pooling \(BackboneFeatures.pooling\) 'mean'"):
        BackboneFeatures("vgg16", pooling="mean").fit(gray)
    with pytest.raises(OptionError, match=r"Unknown backbone 'vgg61'\. Did you mean .*'vgg16'"):
        BackboneFeatures("vgg61").fit(gray)
    with pytest.raises(InputError, match=r"BackboneFeatures.input_size: expected None or an integer >= 32"):
        BackboneFeatures("vgg16", input_size=8).fit(gray)


def test_make_classifier_registry_and_its_parameters():
    svm = make_classifier("SVM", C=3.0)
    assert svm.get_params()["model__estimator__C"] == 3.0
    assert hasattr(svm, "predict_proba")
    assert make_classifier("random_forest", n_estimators=50).n_estimators == 50
    assert make_classifier("logistic_regression") is not make_classifier("logistic_regression")
    with pytest.raises(OptionError, match=r"Unknown classifier 'random_forrest'\. Did you mean 'random_forest'"):
        make_classifier("random_forrest")
    with pytest.raises(OptionError, match=r"Unknown parameter of classifier 'knn' 'n_neighbours'\. Did you mean "
                                          r"'n_neighbors'"):
        make_classifier("knn", n_neighbours=5)
    with pytest.raises(InputError, match=r"has no parameter 'c' \(names are case-sensitive\)"):
        make_classifier("logistic_regression", c=1.0)


def test_a_fitted_transformer_is_cloned_without_its_model():
    features = BackboneFeatures("vgg16", weights=None, batch_size=8)
    keras.backend.clear_session()
    features.fit(np.zeros((1, 32, 32, 1), "float32"))
    copy = clone(features)
    assert copy.get_params() == features.get_params()
    assert not hasattr(copy, "model_")
    assert LogisticRegression  # imported for the Pipeline examples above
