"""Feature-mode search: backbones x scikit-learn classifiers on cached features, one extraction per backbone."""

from __future__ import annotations

import json
import math

import pytest

from tl_radiology import InputError, OptionError
from tl_radiology.search import feature_search

from test_search_support import phantom_setup, pneumonia_setup, register_tiny_backbone, unregister_tiny_backbone

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def tiny_backbone():
    yield register_tiny_backbone()
    unregister_tiny_backbone()


@pytest.mark.shared_data
def test_features_are_extracted_once_per_backbone_across_trials_and_resumed_searches(shared_data, tmp_path):
    manifest, train, val, loader, cache = pneumonia_setup(shared_data, tmp_path / "data")
    arguments = dict(loader=loader, cache=cache, backbones=["tiny_cnn", "vgg16"], weights=None,
                     classifiers=["logistic_regression", "knn"], task="binary", classes=manifest.classes,
                     directory=tmp_path / "run", verbose=0)
    result = feature_search(train, val, max_trials=6, **arguments)
    images = len(train) + len(val)

    assert list(result.trials["status"]) == ["COMPLETED"] * 6
    assert result.trials["objective"].between(0.0, 1.0).all()
    used = set(result.trials["backbone"])
    stats = result.summary["features"]
    assert set(stats) == used
    for backbone in used:  # six trials, yet each backbone's features were computed once, in one pass
        assert stats[backbone] == {"computed": images, "from_cache": 0, "backbone_calls": math.ceil(images / 32)}
    best = result.trials.loc[result.trials["objective"].idxmax()]
    assert result.best_config["backbone"] == best["backbone"]
    assert result.best_config["classifier"] == best["classifier"]
    param = {"logistic_regression": "C", "knn": "n_neighbors"}[best["classifier"]]
    assert result.best_config["classifier_params"][param] == pytest.approx(best[f"{best['classifier']}/{param}"])
    summary = json.loads((tmp_path / "run" / "search_summary.json").read_text())
    assert summary["mode"] == "features" and summary["counts"]["completed"] == 6

    more = feature_search(train, val, max_trials=7, **arguments)
    assert len(more.summary["this_run"]["trials_run"]) == 1 and more.summary["counts"]["completed"] == 7
    (backbone, counts), = more.summary["features"].items()  # only the new trial's backbone, read from disk
    assert counts == {"computed": 0, "from_cache": images, "backbone_calls": 0}


def test_multiclass_feature_search_with_patient_folds(tmp_path):
    manifest, train, val, loader, cache = phantom_setup(tmp_path)
    result = feature_search(train, val, loader=loader, cache=cache, backbones="tiny_cnn", weights=None,
                            classifiers={"logistic_regression": {"C": [0.01, 1.0, 100.0]}}, task="multiclass",
                            classes=manifest.classes, cv_folds=3, max_trials=2, directory=tmp_path / "run",
                            verbose=0)
    for record in result.summary["trials"]:
        assert record["status"] == "COMPLETED" and len(record["fold_values"]) == 3
        assert record["objective"] == pytest.approx(sum(record["fold_values"]) / 3)  # macro one-vs-rest AUC, mean
    assert set(result.trials["logistic_regression/C"]) <= {0.01, 1.0, 100.0}


def test_feature_search_arguments_are_checked_before_any_work(tmp_path):
    manifest, train, val, loader, cache = phantom_setup(tmp_path)
    common = dict(loader=loader, cache=cache, backbones=["tiny_cnn"], task="multiclass", classes=manifest.classes,
                  directory=tmp_path / "run")
    with pytest.raises(OptionError, match=r"Unknown classifier 'svn'\. Did you mean 'svm'\?"):
        feature_search(train, val, classifiers=["svn"], **common)
    with pytest.raises(InputError, match=r"classifiers\['knn'\]\['k'\]: Unknown parameter of classifier 'knn' "
                                         r"'k'\. Available: .*n_neighbors"):
        feature_search(train, val, classifiers={"knn": {"k": [3, 5]}}, **common)
    with pytest.raises(InputError, match=r"tuner='hyperband' schedules epochs, and a feature search has none"):
        feature_search(train, val, tuner="hyperband", **common)
    with pytest.raises(OptionError, match=r"Unknown objective 'val_mae'"):
        feature_search(train, val, objective="val_mae", **common)
    assert not (tmp_path / "run").exists()
