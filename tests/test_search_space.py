"""Search pieces that need no training: the declared space, argument checks, folds, oracle failure handling."""

from __future__ import annotations

import inspect
import json
import os

import keras_tuner
import numpy as np
import pandas as pd
import pytest

from tl_radiology import InputError, OptionError
from tl_radiology.data import CaseLoader
from tl_radiology.search import DistributedConfig, SearchSpace, run_search
from tl_radiology.search._distributed import distributed_environment
from tl_radiology.search._folds import patient_folds
from tl_radiology.search._hypermodel import hyperband_schedule
from tl_radiology.search._tuner import make_oracle, short_error
from tl_radiology.training import FineTuneConfig
from tl_radiology.transforms import ScaleIntensity

SPACE = {
    "dropout": [0.0, 0.3, 0.5],
    "head_learning_rate": {"min": 1e-4, "max": 1e-2, "log": True},
    "backbone": ["resnet50", "densenet121"],
    "batch_size": 16,
    "dense_units": {"min": 0, "max": 256, "step": 64},
}


def test_space_from_a_plain_dict_declares_choice_range_and_fixed():
    space = SearchSpace(SPACE)
    assert space.names == tuple(SPACE)
    assert json.loads(json.dumps(space.to_dict())) == {
        "dropout": [0.0, 0.3, 0.5],
        "head_learning_rate": {"min": 1e-4, "max": 1e-2, "log": True},
        "backbone": ["resnet50", "densenet121"],
        "batch_size": 16,
        "dense_units": {"min": 0, "max": 256, "step": 64},
    }
    assert SearchSpace(space.to_dict()) == space

    hp = keras_tuner.HyperParameters()
    values = space.declare(hp)
    kinds = {p.name: type(p).__name__ for p in hp.space}
    assert kinds == {"dropout": "Choice", "head_learning_rate": "Float", "backbone": "Choice", "batch_size": "Fixed",
                     "dense_units": "Int"}
    assert hp.space[1].sampling == "log"
    assert values == {"dropout": 0.0, "head_learning_rate": 1e-4, "backbone": "resnet50", "batch_size": 16,
                      "dense_units": 0}
    config = space.apply(FineTuneConfig(weights=None), hp)
    assert (config.backbone, config.batch_size, config.head_learning_rate) == ("resnet50", 16, 1e-4)


def test_range_kind_follows_the_field_not_the_numbers_written():
    hp = keras_tuner.HyperParameters()
    SearchSpace({"dropout": {"min": 0, "max": 1}, "head_epochs": {"min": 1, "max": 5}}).declare(hp)
    assert [type(p).__name__ for p in hp.space] == ["Float", "Int"]


def test_choices_keras_tuner_cannot_hold_are_labels_decoded_back():
    space = SearchSpace({"weights": ["imagenet", None], "unfreeze": [1, 2, "all"], "monitor": None})
    hp = keras_tuner.HyperParameters()
    space.declare(hp)
    assert hp.space[0].values == ["imagenet", "None"] and hp.space[1].values == ["1", "2", "all"]
    hp.values.update({"weights": "None", "unfreeze": "2"})
    assert space.values_from(hp) == {"weights": None, "unfreeze": 2, "monitor": None}
    config = space.apply(FineTuneConfig(), hp)
    assert config.weights is None and config.unfreeze == 2
    assert space.to_dict() == {"weights": ["imagenet", None], "unfreeze": [1, 2, "all"], "monitor": None}


@pytest.mark.parametrize("spec, error, message", [
    ({"dropot": [0.1]}, OptionError, r"Unknown search space key \(FineTuneConfig field\) 'dropot'\. Did you mean "
                                     r"'dropout'\?"),
    ({"dropout": ["high"]}, InputError, r"Search space key 'dropout': expected choices that are a number; "
                                        r"received 'high'"),
    ({"optimizer": {"min": 1, "max": 2}}, InputError, r"Search space key 'optimizer' takes text, so it cannot be a "
                                                      r"range; list the choices instead"),
    ({"dropout": {"min": 0.5, "max": 0.1}}, InputError, r"Search space key 'dropout': expected min < max"),
    ({"head_learning_rate": {"min": 0, "max": 1, "log": True}}, InputError,
     r"Search space key 'head_learning_rate': a log range must start above 0"),
    ({"dropout": {"mn": 0, "max": 1}}, OptionError, r"Unknown range key 'mn'\. Did you mean 'min'\?.*In search "
                                                    r"space key 'dropout'"),
    ({"batch_size": []}, InputError, r"Search space key 'batch_size': the list of choices is empty"),
    ({"batch_size": 16.5}, InputError, r"Search space key 'batch_size': expected .* an integer; received 16\.5"),
    ([("dropout", 0.1)], InputError, r"Expected the search space to be a dict of FineTuneConfig fields"),
])
def test_space_errors_name_the_key_and_the_fix(spec, error, message):
    with pytest.raises(error, match=message):
        SearchSpace(spec)


def test_validate_checks_each_value_against_the_base_configuration():
    base = FineTuneConfig(backbone="resnet50", weights=None)
    with pytest.raises(InputError, match=r"Search space key 'unfreeze', value 9: FineTuneConfig\.unfreeze: expected "
                                         r"'all', 'none' or a number of layer groups from 0 to 5 for resnet50"):
        SearchSpace({"unfreeze": [1, 9]}).validate(base)
    with pytest.raises(InputError, match=r"Search space key 'optimizer', value 'adagrad'"):
        SearchSpace({"optimizer": ["adam", "adagrad"]}).validate(base)
    # A value valid for one of the searched backbones passes (vgg16 needs 32 px, inception_v3 75 px).
    SearchSpace({"backbone": ["vgg16", "inception_v3"], "input_size": [32, 96]}).validate(base)


def _cases(n=6):
    return pd.DataFrame({"case_id": [f"C{i}" for i in range(n)], "patient": [f"P{i}" for i in range(n)],
                         "label": ["0", "1"] * (n // 2), "image": [f"/nowhere/{i}.png" for i in range(n)]})


def test_run_search_takes_no_test_data():
    parameters = inspect.signature(run_search).parameters
    assert not [name for name in parameters if "test" in name.lower()]
    with pytest.raises(TypeError, match="unexpected keyword argument 'test_cases'"):
        run_search(_cases(), _cases(), test_cases=_cases(), loader=None, cache=None, base_config=None, space={},
                   task="binary", directory="unused")


@pytest.mark.parametrize("task, objective, available", [
    ("binary", "val_f1", r"Available: val_accuracy, val_auc, val_loss\."),
    ("binary", "auc", r"Did you mean 'val_auc'\?"),
    ("regression", "val_auc", r"Available: val_loss, val_mae, val_rmse\."),
])
def test_objective_must_be_a_validation_metric_the_model_reports(tmp_path, task, objective, available):
    loader = CaseLoader("image", per_image=ScaleIntensity("range", value_range=(0, 255)))
    cases = _cases() if task != "regression" else _cases().assign(label=["1.5", "2.0"] * 3)
    with pytest.raises(OptionError, match=rf"Unknown objective '{objective}'\..*{available}"):
        run_search(cases, cases, loader=loader, cache=None, base_config=FineTuneConfig(weights=None),
                   space={"dropout": [0.0, 0.5]}, task=task, objective=objective, directory=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before any file or trial


def test_distributed_config_sets_keras_tuner_variables_and_restores_them(monkeypatch):
    monkeypatch.delenv("KERASTUNER_TUNER_ID", raising=False)
    monkeypatch.delenv("KERASTUNER_ORACLE_IP", raising=False)
    monkeypatch.delenv("KERASTUNER_ORACLE_PORT", raising=False)
    chief = DistributedConfig("chief", "127.0.0.1:8123")
    assert chief.tuner_id == "chief" and chief.port == 8123
    worker = DistributedConfig("Worker", "10.0.0.5:9000", tuner_id="worker0")
    assert worker.role == "worker"
    with distributed_environment(worker):
        assert (os.environ["KERASTUNER_TUNER_ID"], os.environ["KERASTUNER_ORACLE_IP"],
                os.environ["KERASTUNER_ORACLE_PORT"]) == ("worker0", "10.0.0.5", "9000")
        assert DistributedConfig.from_environment() == worker
    assert "KERASTUNER_ORACLE_IP" not in os.environ and DistributedConfig.from_environment() is None
    assert DistributedConfig("worker").tuner_id.startswith("worker-")

    with pytest.raises(InputError, match=r"A worker's tuner_id must not contain 'chief'"):
        DistributedConfig("worker", tuner_id="chief2")
    with pytest.raises(InputError, match=r"Expected oracle_address to be 'host:port' with a port from 1 to 65535"):
        DistributedConfig("chief", "127.0.0.1:99999")
    with pytest.raises(OptionError, match=r"Unknown distributed role 'boss'\. .*Available: chief, worker"):
        DistributedConfig("boss")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    with pytest.raises(InputError, match=r"KERASTUNER_ORACLE_IP is set but KERASTUNER_ORACLE_PORT and "
                                         r"KERASTUNER_TUNER_ID are not"):
        DistributedConfig.from_environment()


@pytest.mark.parametrize("budget, head, finetune", [(1, 1, 0), (2, 1, 1), (3, 1, 2), (4, 2, 2), (6, 2, 4), (9, 2, 4)])
def test_hyperband_budget_is_spread_over_both_phases_head_first(budget, head, finetune):
    config = hyperband_schedule(FineTuneConfig(weights=None, head_epochs=2, finetune_epochs=4), budget)
    assert (config.head_epochs, config.finetune_epochs) == (head, finetune)


def test_short_error_keeps_the_exception_line():
    traceback_text = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    g()\n"
                      "tl_radiology._errors.InputError: adapter='replicate' needs 1 or 3 channels.\n")
    assert short_error(traceback_text) == "InputError: adapter='replicate' needs 1 or 3 channels."
    assert short_error(None) is None


def test_consecutive_failures_stop_the_search_after_saving_the_trials(tmp_path):
    # keras-tuner 1.4.8 raises RuntimeError inside end_trial before saving the last failed trial, and, on resume,
    # stops again after the next trial. The search's oracle stops cleanly instead, counting this session only.
    def oracle():
        made = make_oracle("random", objective="val_auc", direction="max", max_trials=10, seed=0,
                           max_consecutive_failed_trials=2)
        made._set_project_dir(str(tmp_path), "project")
        hp = made.get_space()
        hp.Choice("dropout", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
        made.update_space(hp)
        return made

    first = oracle()
    ids = []
    for _ in range(2):
        trial = first.create_trial("tuner0")
        trial.status, trial.message = "FAILED", "Traceback...\nValueError: broken"
        first.end_trial(trial)
        first.save()  # as the tuner does after each trial
        ids.append(trial.trial_id)
    assert first.create_trial("tuner0").status == "STOPPED"
    assert "2 consecutive failed trials" in first.stop_reason
    saved = [json.loads((tmp_path / "project" / f"trial_{i}" / "trial.json").read_text()) for i in ids]
    assert [t["status"] for t in saved] == ["FAILED", "FAILED"] and saved[1]["message"].endswith("broken")

    resumed = oracle()
    resumed.reload()
    trial = resumed.create_trial("tuner0")
    assert trial.status == "RUNNING" and trial.trial_id == "02"
    trial.status = "COMPLETED"
    resumed.update_trial(trial.trial_id, {"val_auc": 0.7})
    resumed.end_trial(trial)
    assert resumed.create_trial("tuner0").status == "RUNNING"  # keras-tuner's own check would raise here
    assert resumed.trial_tuner_ids["02"] == "tuner0"


def test_patient_folds_keep_each_patient_on_one_side_and_every_class_in_each_fold():
    patients = [f"P{i // 3}" for i in range(36)]  # 12 patients, 3 cases each
    labels = [["a", "b", "c"][(i // 3) % 3] for i in range(36)]
    cases = pd.DataFrame({"patient": patients, "label": labels})
    folds = patient_folds(cases, 4, task="multiclass", seed=0)
    assert len(folds) == 4
    seen = []
    for train, val in folds:
        assert not set(cases["patient"].iloc[train]) & set(cases["patient"].iloc[val])
        assert set(cases["label"].iloc[val]) == {"a", "b", "c"}
        seen.extend(val.tolist())
    assert sorted(seen) == list(range(36))
    with pytest.raises(InputError, match=r"cv_folds=5: class 'a' has only 4 patient\(s\) .* Use cv_folds <= 4\."):
        patient_folds(cases, 5, task="multiclass")
    with pytest.raises(InputError, match=r"Expected cv_folds to be an integer >= 2"):
        patient_folds(cases, 1, task="multiclass")
    regression = cases.assign(label=np.linspace(0, 1, 36))
    assert len(patient_folds(regression, 3, task="regression")) == 3


def test_a_chief_whose_port_is_taken_says_so(tmp_path):
    import socket

    from tl_radiology.search._distributed import serve_oracle

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=rf"The search chief cannot listen on oracle_address 127\.0\.0\.1:{port}: "
                                             r"the port is in use"):
            serve_oracle(object(), DistributedConfig("chief", f"127.0.0.1:{port}"))
