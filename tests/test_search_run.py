"""Real keras-tuner searches that really train (tiny): records, resumption, failures, CV, Hyperband, own models.

Every search here checks that its trials COMPLETED with a finite recorded objective: keras-tuner swallows trial
errors (without tensorboard installed every trial fails and the search still "finishes"), so "no exception" proves
nothing.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from tl_radiology import InputError, SearchFailedError
from tl_radiology.data import CaseLoader
from tl_radiology.search import SearchResult, run_search
from tl_radiology.training import FineTuneConfig
from tl_radiology.transforms import Window

from test_search_support import (phantom_setup, pneumonia_setup, register_tiny_backbone, tiny_config,
                                 unregister_tiny_backbone)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def tiny_backbone():
    yield register_tiny_backbone()
    unregister_tiny_backbone()


@pytest.fixture(scope="module")
def pneumonia(shared_data, tmp_path_factory):
    """48 train / 24 validation PneumoniaMNIST chest X-rays (half pneumonia), as PNGs with a manifest."""
    manifest, train, val, loader, cache = pneumonia_setup(shared_data, tmp_path_factory.mktemp("pneumonia"))
    return {"manifest": manifest, "train": train, "val": val, "loader": loader, "cache": cache}


SPACE = {"input_size": [24, 32], "dropout": [0.0, 0.5], "head_learning_rate": {"min": 1e-3, "max": 3e-2, "log": True}}


def _search(data, directory, **changes):
    arguments = dict(loader=data["loader"], cache=data["cache"], base_config=tiny_config(batch_size=16),
                     space=SPACE, task="binary", classes=data["manifest"].classes, max_trials=3, directory=directory,
                     seed=0, verbose=0)
    arguments.update(changes)
    return run_search(data["train"], data["val"], **arguments)


@pytest.fixture(scope="module")
def pneumonia_search(pneumonia, tmp_path_factory):
    directory = tmp_path_factory.mktemp("run")
    return directory, _search(pneumonia, directory)


@pytest.mark.shared_data
def test_search_on_real_chest_xrays_completes_every_trial_and_writes_the_summary(pneumonia_search):
    directory, result = pneumonia_search
    assert isinstance(result, SearchResult) and result.mode == "fine_tune"
    trials = result.trials
    assert list(trials["status"]) == ["COMPLETED"] * 3
    assert trials["objective"].between(0.0, 1.0).all() and trials["error"].isna().all()
    assert result.objective == "val_auc" and result.direction == "max"
    best = trials.loc[trials["objective"].idxmax()]
    assert (result.best_trial_id, result.best_objective) == (best["trial_id"], pytest.approx(best["objective"]))
    config = result.best_config
    assert isinstance(config, FineTuneConfig)
    assert (config.input_size, config.dropout) == (best["input_size"], best["dropout"])
    assert config.head_learning_rate == pytest.approx(best["head_learning_rate"])
    assert 1e-3 <= config.head_learning_rate <= 3e-2 and config.backbone == "tiny_cnn"
    assert 24 in set(trials["input_size"])  # the 32 px cached images were resized for it, and it completed

    summary = json.loads((directory / "search_summary.json").read_text())
    assert result.summary_path == directory / "search_summary.json"
    assert summary["counts"] == {"total": 3, "completed": 3, "failed": 0, "invalid": 0, "running": 0}
    assert summary["objective"] == {"name": "val_auc", "direction": "max"}
    assert summary["best"]["trial_id"] == result.best_trial_id
    assert summary["best"]["config"] == config.to_dict()
    assert [t["status"] for t in summary["trials"]] == ["COMPLETED"] * 3
    assert summary["this_run"]["trials_run"] == list(trials["trial_id"])
    for trial_id in trials["trial_id"]:
        history = pd.read_csv(directory / "search" / f"trial_{trial_id}" / "history.csv")
        assert list(history["phase"]) == ["head", "finetune"] and history["val_auc"].notna().all()


@pytest.mark.shared_data
def test_resuming_trains_no_finished_trial_again_and_more_trials_add_exactly_those(pneumonia, pneumonia_search,
                                                                                  tmp_path):
    source, first = pneumonia_search
    directory = tmp_path / "run"
    shutil.copytree(source, directory)
    project = directory / "search"

    def finished(trial_id):
        return json.loads((project / f"trial_{trial_id}" / "tl_radiology_trial.json").read_text())["finished"]

    before = {t: finished(t) for t in first.trials["trial_id"]}

    again = _search(pneumonia, directory)
    assert again.summary["this_run"]["trials_run"] == []
    assert {t: finished(t) for t in before} == before
    assert again.best_trial_id == first.best_trial_id and again.best_config == first.best_config

    more = _search(pneumonia, directory, max_trials=4)
    assert len(more.summary["this_run"]["trials_run"]) == 1
    new_id = more.summary["this_run"]["trials_run"][0]
    assert new_id not in before and more.summary["counts"]["completed"] == 4
    assert {t: finished(t) for t in before} == before

    with pytest.raises(InputError, match=r"was started with other settings \(objective: \"val_auc\" then, "
                                         r"\"val_loss\" now\)\. Resume it with the same settings"):
        _search(pneumonia, directory, objective="val_loss")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return phantom_setup(tmp_path_factory.mktemp("phantoms"))


def test_a_search_whose_trials_all_fail_raises_with_their_error(phantoms, tmp_path):
    manifest, train, val, _, cache = phantoms
    # Two phases stacked as two channels: the default adapter ('replicate') cannot take them, so every trial
    # fails when its network is built, for real.
    loader = CaseLoader(("native", "arterial"), per_image=Window.preset("liver"))
    with pytest.raises(SearchFailedError, match=r"All 2 trials of the search in .* failed\. trials 0, 1: "
                                                r"InputError: adapter='replicate' .*received 2 channels"):
        run_search(train, val, loader=loader, cache=cache, base_config=tiny_config(), space={"dropout": [0.0, 0.5]},
                   task=manifest.task, classes=manifest.classes, max_trials=2, directory=tmp_path, verbose=0)
    summary = json.loads((tmp_path / "search_summary.json").read_text())
    assert summary["counts"]["failed"] == 2 and summary["counts"]["completed"] == 0 and summary["best"] is None
    assert all("received 2 channels" in t["error"] for t in summary["trials"])


def test_cross_validation_averages_patient_grouped_folds(phantoms, tmp_path):
    manifest, train, val, loader, cache = phantoms
    result = run_search(train, val, loader=loader, cache=cache, base_config=tiny_config(),
                        space={"dropout": [0.0, 0.5]}, task=manifest.task, classes=manifest.classes, max_trials=1,
                        cv_folds=3, directory=tmp_path, verbose=0)
    record = result.summary["trials"][0]
    assert record["status"] == "COMPLETED" and len(record["fold_values"]) == 3
    assert all(math.isfinite(v) for v in record["fold_values"])
    assert record["objective"] == pytest.approx(np.mean(record["fold_values"]), rel=1e-6)
    assert list(result.trials.filter(like="val_auc_fold").iloc[0]) == pytest.approx(record["fold_values"])

    pooled = pd.concat([train, val], ignore_index=True)
    patient_of = dict(zip(pooled["case_id"], pooled["patient"]))
    folds = result.summary["folds"]
    validated = []
    for fold in folds:
        val_ids = set(fold["val_case_ids"])
        val_patients = {patient_of[c] for c in val_ids}
        train_patients = {patient_of[c] for c in pooled["case_id"] if c not in val_ids}
        assert not val_patients & train_patients  # no patient on both sides of a fold
        assert set(fold["val_labels"]) == set(manifest.classes)  # stratified: every class in every fold
        validated.extend(val_ids)
    assert sorted(validated) == sorted(pooled["case_id"])  # each train/val case validated exactly once


def test_hyperband_budgets_map_onto_the_two_phases(phantoms, tmp_path):
    manifest, train, val, loader, cache = phantoms
    result = run_search(train, val, loader=loader, cache=cache, base_config=tiny_config(finetune_epochs=2),
                        space={"dropout": [0.0, 0.25, 0.5]}, task=manifest.task, classes=manifest.classes,
                        tuner="hyperband", max_trials=4, directory=tmp_path, verbose=0)
    records = result.summary["trials"]
    assert [r["status"] for r in records] == ["COMPLETED"] * 4
    budgets = [r["hyperparameters"]["tuner/epochs"] for r in records]
    assert budgets == [1, 1, 1, 3]
    assert [r["epochs"]["head"] for r in records] == [1, 1, 1, 1]
    assert [r["epochs"]["finetune"] for r in records] == [0, 0, 0, 2]
    assert records[3]["hyperparameters"]["tuner/trial_id"] in {r["trial_id"] for r in records[:3]}
    assert result.best_config.head_epochs == 1 and result.best_config.finetune_epochs == 2  # the full schedule
    with pytest.raises(InputError, match=r"tuner='hyperband' sets each trial's epochs itself; remove head_epochs"):
        run_search(train, val, loader=loader, cache=cache, base_config=tiny_config(), space={"head_epochs": [1, 2]},
                   task=manifest.task, classes=manifest.classes, tuner="hyperband", directory=tmp_path / "x")


def test_a_users_build_function_or_hypermodel_is_accepted(phantoms, tmp_path):
    import keras
    import keras_tuner

    from tl_radiology.training import build_for_config

    manifest, train, val, loader, cache = phantoms

    def build(hp):
        config = tiny_config(dense_units=hp.Choice("dense_units", [4, 8]))
        return build_for_config(config, "multiclass", (32, 32, 3), num_classes=len(manifest.classes))

    result = run_search(train, val, loader=loader, cache=cache, base_config=tiny_config(), space={},
                        hypermodel=build, task=manifest.task, classes=manifest.classes, max_trials=1,
                        directory=tmp_path / "function", verbose=0)
    assert result.trials.loc[0, "status"] == "COMPLETED" and result.trials.loc[0, "dense_units"] in (4, 8)

    class OnePhase(keras_tuner.HyperModel):
        """Trains the whole network in one phase with its own loss, at a searched learning rate."""

        def build(self, hp):
            return build(hp)

        def fit(self, hp, model, train_data, validation_data=None, callbacks=None):
            learning_rate = hp.Float("learning_rate", 1e-3, 1e-2, sampling="log")
            model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                          metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
            return model.fit(train_data, validation_data=validation_data, epochs=1, callbacks=callbacks, verbose=0)

    result = run_search(train, val, loader=loader, cache=cache, base_config=tiny_config(), space={},
                        hypermodel=OnePhase(), task=manifest.task, classes=manifest.classes, max_trials=1,
                        objective="val_accuracy", directory=tmp_path / "hypermodel", verbose=0)
    row = result.trials.loc[0]
    assert row["status"] == "COMPLETED" and 0.0 <= row["objective"] <= 1.0 and 1e-3 <= row["learning_rate"] <= 1e-2


def test_transfer_hypermodel_works_with_keras_tuners_own_tuner(phantoms, tmp_path):
    import keras_tuner

    from tl_radiology.search import TransferHyperModel

    manifest, train, val, loader, cache = phantoms
    hypermodel = TransferHyperModel(train, val, loader=loader, cache=cache, base_config=tiny_config(),
                                    space={"dropout": [0.0, 0.5]}, task=manifest.task, classes=manifest.classes)
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_auc", max_trials=1, directory=tmp_path,
                                     project_name="plain", seed=1)
    tuner.search()
    (trial,) = tuner.oracle.trials.values()
    assert trial.status == "COMPLETED" and 0.0 <= trial.score <= 1.0
    assert hypermodel.trial_config(trial.hyperparameters).dropout == trial.hyperparameters["dropout"]
    with pytest.raises(TypeError, match="holds its own cases"):
        hypermodel.fit(trial.hyperparameters, None, "x_train")
