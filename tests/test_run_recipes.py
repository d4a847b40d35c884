"""Every prebuilt recipe end to end at a tiny size through the command line: split and seal, a real search, the
final training, the threshold on validation -- never opening the sealed test set -- then evaluate and report.

The sealed test files are moved away while a run searches and trains (it must not need them), then put back for
the one-shot evaluation. Recipes are shrunk with --set (1 trial, 1 epoch per phase, 32 px, a tiny registered
backbone); everything else is the recipe's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from test_reliability_support import FilesAway
from test_run_support import (TINY, medmnist_subset, nodule_phantoms, recipe_file, register_tiny_backbones,
                              run_console, tiny_overrides, triphasic_phantoms)

from tl_radiology.cli import main
from tl_radiology.data import RunDir
from tl_radiology.training import TrainedModel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def tiny_backbones():
    register_tiny_backbones()
    yield
    from tl_radiology.backbones import _registry

    for name in TINY:
        _registry._REGISTRY.pop(name, None)


@pytest.fixture(scope="module")
def data(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("run_data")
    return {
        "liver": triphasic_phantoms(root / "liver"),
        "nodule": nodule_phantoms(root / "nodule"),
        "pneumonia": medmnist_subset(shared_data, root / "pneumonia", "pneumoniamnist"),
        "retina": medmnist_subset(shared_data, root / "retina", "retinamnist",
                                  per_class={"train": 4, "val": 2, "test": 2}),
    }


def _events(run: Path) -> list[str]:
    return [json.loads(line)["event"] for line in (run / "audit.log").read_text().splitlines() if line.strip()]


def _test_files(run: Path) -> list[Path]:
    lock = json.loads((run / "test.lock").read_text())
    splits = pd.read_csv(run / "splits.csv", dtype=str)
    columns = lock["image_columns"]
    test = splits[splits["split"] == "test"]
    return sorted({Path(p) for column in columns for p in test[column]})


def _run(recipe, manifest, out, *more, **sets) -> int:
    args = ["run", str(recipe), "--out", str(out), *tiny_overrides(**sets), *more]
    if manifest is not None:
        args += ["--manifest", str(manifest)]
    return main(args)


def _split_only(manifest, out, columns="image"):
    """Make the run's split first with `tl-radiology split` (so the test files can be moved away before the run)."""
    assert main(["split", str(manifest), "--out", str(out), "--image-columns", columns]) == 0


def _check_run_files(run: Path, *, kind="keras", curves=True):
    for name in ("recipe.json", "splits.csv", "split.json", "test.lock", "audit.log", "model.json",
                 "val_predictions.csv", "val_metrics.json"):
        assert (run / name).is_file(), name
    assert _events(run) == ["sealed"]  # nothing opened the sealed test set
    assert not (run / "final_test.json").exists() and not (run / ".final_training").exists()
    model = json.loads((run / "model.json").read_text())
    assert model["kind"] == kind
    assert (run / "history.csv").is_file() == curves and (run / "curves.png").is_file() == curves
    val = pd.read_csv(run / "val_predictions.csv")
    assert len(val) == json.loads((run / "split.json").read_text())["counts"]["val"]
    return model


def _check_search(run: Path, name="search_summary.json", completed=1):
    summary = json.loads((run / name).read_text())
    assert summary["counts"]["completed"] == completed, summary["counts"]
    return summary


# ------------------------------------------------------------------------------------------------ liver

def test_triphasic_liver_run_never_opens_the_test_set_resumes_and_evaluates(data, tmp_path, capsys, monkeypatch):
    run = tmp_path / "liver"
    manifest = data["liver"]
    _split_only(manifest, run, "native,arterial,delayed")
    with FilesAway(_test_files(run), tmp_path / "away"):
        # A final training that fails leaves no half-written result; the search it follows is kept.
        import tl_radiology.training as training

        real = training.fine_tune

        def broken(*args, **kwargs):
            Path(kwargs["out_dir"]).mkdir(parents=True, exist_ok=True)
            (Path(kwargs["out_dir"]) / "history.csv").write_text("epoch\n1\n")
            raise RuntimeError("disk full")

        monkeypatch.setattr(training, "fine_tune", broken)
        assert _run("liver_lesion_triphasic_ct", manifest, run, gradcam_samples=2) == 1
        assert "error: unexpected RuntimeError: disk full" in capsys.readouterr().err
        for name in ("model.json", "model.keras", "history.csv", "curves.png", "val_predictions.csv"):
            assert not (run / name).exists(), name
        assert _check_search(run)["this_run"]["trials_run"] == ["0"]
        monkeypatch.setattr(training, "fine_tune", real)

        # The same command again: the finished trial is not retrained, the final model is trained.
        assert _run("liver_lesion_triphasic_ct", None, run, gradcam_samples=2) == 0
        out = capsys.readouterr().out
        assert "existing split reused" in out and "best trial 0" in out and "tl-radiology evaluate" in out
        assert _check_search(run)["this_run"]["trials_run"] == []
        model = _check_run_files(run)
        assert model["input_shape"] == [32, 32, 3] and model["classes"] == ["cyst", "hcc", "hemangioma", "metastasis"]
        assert model["training_config"]["adapter"] == "stem"
        recipe = json.loads((run / "recipe.json").read_text())
        assert recipe["name"] == "liver_lesion_triphasic_ct" and recipe["backbone"] == TINY[0]
        assert recipe["image_columns"] == ["native", "arterial", "delayed"] and recipe["max_trials"] == 1
        assert len(list((run / "explain" / "val").glob("C-*.png"))) == 2
        history = pd.read_csv(run / "history.csv")
        assert list(history["phase"]) == ["head", "finetune"]
        # The final model is the best trial's training again (same configuration and seed): same values.
        assert history["val_auc"].max() == pytest.approx(_check_search(run)["best"]["objective"], abs=1e-4)
        assert model["training_config"]["search_best_trial"] == "0" and model["training_config"]["reproduces_trial"]
        assert "final model reproduces best trial 0: val_auc" in out

        # Again: everything is up to date, nothing is trained.
        stamp = (run / "model.keras").stat().st_mtime_ns
        assert _run("liver_lesion_triphasic_ct", None, run, gradcam_samples=2) == 0
        assert "already up to date" in capsys.readouterr().out
        assert (run / "model.keras").stat().st_mtime_ns == stamp

        # Raising max_trials continues the search: one new trial, the old one kept.
        assert _run("liver_lesion_triphasic_ct", None, run, max_trials=2) == 0
        capsys.readouterr()
        summary = _check_search(run, completed=2)
        assert summary["this_run"]["trials_run"] == ["1"]

        # A changed split setting or a changed search on this run directory: one line, exit 2, nothing written.
        assert _run("liver_lesion_triphasic_ct", None, run, max_trials=2, val_fraction=0.3) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: Run directory") and "val_fraction=0.15" in err and "\n" not in err
        assert _run("liver_lesion_triphasic_ct", None, run, max_trials=2, dropout=0.4) == 2
        err = capsys.readouterr().err.strip()
        assert "was started with another recipe (dropout: 0.2 then, 0.4 now)" in err and "--restart-search" in err
        assert json.loads((run / "recipe.json").read_text())["dropout"] == 0.2
        assert _events(run) == ["sealed"]

    # Back with the test files: the one-shot evaluation and the report.
    assert main(["evaluate", str(run), "--n-bootstrap", "50"]) == 0
    assert "macro_roc_auc" in capsys.readouterr().out
    assert _events(run)[-1] == "evaluated"
    assert main(["report", str(run)]) == 0
    assert (run / "report" / "report.html").is_file()
    # A run directory whose test set was used does not train another model.
    assert _run("liver_lesion_triphasic_ct", None, run, max_trials=3) == 2
    assert "already used by `tl-radiology evaluate`" in capsys.readouterr().err


@pytest.mark.parametrize("columns", ["arterial", "native,arterial"])
def test_monophasic_and_biphasic_variants_still_give_the_backbone_three_channels(data, tmp_path, capsys, columns):
    run = tmp_path / "variant"
    if "," in columns:  # a copied and edited recipe file runs by path
        recipe = recipe_file(tmp_path / "biphasic.py", "liver_lesion_triphasic_ct", name="biphasic",
                             image_columns=tuple(columns.split(",")))
    else:
        recipe = "liver_lesion_triphasic_ct"
    assert _run(recipe, data["liver"], run, image_columns=columns) == 0
    model = _check_run_files(run)
    channels = len(columns.split(","))
    assert model["input_shape"] == [32, 32, channels]
    assert json.loads((run / "recipe.json").read_text())["image_columns"] == columns.split(",")
    lock = json.loads((run / "test.lock").read_text())
    assert lock["image_columns"] == columns.split(",")  # the seal covers the columns the run reads
    from tl_radiology.training import TrainedModel

    network = TrainedModel.load(run).model
    assert network.get_layer("backbone").input_shape[-1] == channels  # the stem takes the phases as they are


# ------------------------------------------------------------------------------------------------ the others

def test_chest_xray_on_pneumoniamnist_pngs(data, tmp_path, capsys):
    run = tmp_path / "cxr"
    _split_only(data["pneumonia"], run)
    with FilesAway(_test_files(run), tmp_path / "away"):
        assert _run("chest_xray", None, run) == 0
    out, err = capsys.readouterr()
    # Progress with an ETA on standard error: cache, trials, epochs of the final training.
    for line in ("reading and caching: ", "search trials: 1/1 (100%)", "final training (epochs): 2/2 (100%)"):
        assert line in err, line
    model = _check_run_files(run)
    assert model["input_shape"] == [32, 32, 1] and model["classes"] == ["0", "1"]
    assert 0.0 <= model["threshold"]["threshold"] <= 1.0  # chosen on validation
    assert "roc_auc" in out and "threshold (youden)" in out
    _check_search(run)


def test_a_seed_ensemble_trains_the_best_configuration_again_from_the_next_seeds(data, tmp_path, capsys):
    run = tmp_path / "seeds"
    assert _run("chest_xray", data["pneumonia"], run) == 0
    assert json.loads((run / "model.json").read_text())["kind"] == "keras"
    capsys.readouterr()
    # final_seeds does not change the search: the same trial, trained again from two seeds, averaged.
    assert _run("chest_xray", data["pneumonia"], run, final_seeds=2) == 0
    err = capsys.readouterr().err
    model = _check_run_files(run, kind="ensemble")
    summary = _check_search(run)  # still the one completed trial: nothing was searched again
    members = [TrainedModel.load(run / "members" / str(i)) for i in range(2)]
    seeds = [m.training_config["seed"] for m in members]
    assert model["training_config"]["seeds"] == seeds and seeds[1] == seeds[0] + 1
    assert f"final training of member 1 (seed {seeds[1]})" in err
    assert model["training_config"]["search_best_trial"] == summary["best"]["trial_id"]
    assert (run / "members" / "1" / "history.csv").is_file() and (run / "curves.png").is_file()
    val = pd.read_csv(run / "val_predictions.csv")
    cases = RunDir(run).cases("val")
    each = [m.predict_cases(cases) for m in members]
    assert not np.allclose(each[0], each[1])  # two seeds, two different networks
    assert np.allclose(val["prob_1"].to_numpy(float), (each[0] + each[1]) / 2, atol=1e-5)
    # Other modes have no seed ensemble: refused before anything is written.
    assert _run("radiomics_features", data["pneumonia"], tmp_path / "features", final_seeds=2) == 2
    assert "field final_seeds expects 1 with mode='features'" in capsys.readouterr().err
    assert not (tmp_path / "features").exists()


def test_ct_multiwindow_on_one_phase(data, tmp_path):
    run = tmp_path / "mw"
    assert _run("ct_multiwindow", data["liver"], run, image_columns="arterial") == 0
    model = _check_run_files(run)
    assert model["input_shape"] == [32, 32, 3]
    windows = model["loader"]["per_image"]["transforms"][0]
    assert windows["class"] == "MultiWindow" and len(windows["windows"]) == 3


def test_lung_nodule_multiplanar_on_series_folders(data, tmp_path):
    run = tmp_path / "nodule"
    _split_only(data["nodule"], run)
    with FilesAway(_test_files(run), tmp_path / "away"):  # whole test series folders are away
        assert _run("lung_nodule_multiplanar", None, run, plane_size=32) == 0
    model = _check_run_files(run)
    assert model["loader"]["center_columns"] == ["center_z", "center_y", "center_x"]
    assert model["loader"]["per_image"]["transforms"][0]["class"] == "ExtractPlanes"


def test_radiomics_features_searches_backbones_and_classifiers(data, tmp_path, capsys):
    run = tmp_path / "features"
    assert _run("radiomics_features", data["pneumonia"], run, backbones=",".join(TINY), max_trials=3,
                classifiers="logistic_regression,random_forest") == 0
    model = _check_run_files(run, kind="features", curves=False)
    assert (run / "classifier.joblib").is_file()
    summary = _check_search(run, completed=3)
    assert summary["mode"] == "features" and set(summary["backbones"]) == set(TINY)
    assert model["training_config"]["backbone"] in TINY
    assert "search: 3 trials (3 completed" in capsys.readouterr().out


def test_ensemble_averages_two_searched_members(data, tmp_path):
    run = tmp_path / "ensemble"
    assert _run("ensemble", data["pneumonia"], run, backbones=",".join(TINY)) == 0
    model = _check_run_files(run, kind="ensemble")
    assert len(model["members"]) == 2
    for i in range(2):
        assert (run / "members" / str(i) / "model.json").is_file()
        assert (run / "members" / str(i) / "history.csv").is_file()
    for name in TINY:
        _check_search(run, f"search_{name}_summary.json")
    combined = _check_search(run, completed=2)
    assert combined["mode"] == "ensemble" and combined["backbones"] == list(TINY)
    history = pd.read_csv(run / "history.csv")
    assert sorted(history["backbone"].unique()) == sorted(TINY)


def test_retina_grade_is_multiclass_with_a_quadratic_kappa(data, tmp_path, capsys):
    run = tmp_path / "retina"
    assert _run("retina_grade", data["retina"], run) == 0
    model = _check_run_files(run)
    assert model["task"]["task"] == "multiclass" and model["classes"] == ["0", "1", "2", "3", "4"]
    assert model["input_shape"] == [32, 32, 3]
    assert model["training_config"]["ordinal"] is True
    kappa = json.loads((run / "val_metrics.json").read_text())["metrics"]["metrics"]["quadratic_weighted_kappa"]
    assert -1.0 <= kappa["estimate"] <= 1.0
    assert "quadratic_weighted_kappa" in capsys.readouterr().out
    # Test-time flips (fundus images may be flipped, the recipe trains with both): only the validation step is
    # redone, with each prediction averaged over the image and its three flips; the model is not trained again.
    plain = pd.read_csv(run / "val_predictions.csv")
    assert _run("retina_grade", data["retina"], run, "--set", "tta=true") == 0
    assert "the final model of this search is already trained; reusing it" in capsys.readouterr().err
    assert json.loads((run / "model.json").read_text())["tta"] == "horizontal_and_vertical"
    averaged = pd.read_csv(run / "val_predictions.csv")
    columns = [f"prob_{grade}" for grade in range(5)]
    assert not np.allclose(plain[columns].to_numpy(float), averaged[columns].to_numpy(float))
    # the one-shot evaluation reports the kappa too, for the same reason (ordinal grades), and the flips it used
    assert main(["evaluate", str(run), "--n-bootstrap", "50"]) == 0
    final = json.loads((run / "final_test.json").read_text())
    assert -1.0 <= final["metrics"]["metrics"]["quadratic_weighted_kappa"]["estimate"] <= 1.0
    assert final["model"]["tta"] == "horizontal_and_vertical"


def test_a_final_model_trained_in_another_process_reproduces_its_best_trial(data, tmp_path):
    # `search` in one process, `run` in another: the final model is the best trial's training again (issue 11
    # item 6: the datasets were made before the trial's global seed was set, and shuffled differently).
    recipe = recipe_file(tmp_path / "liver.py", "liver_lesion_triphasic_ct")
    run = tmp_path / "run"
    common = ["--out", str(run), *tiny_overrides(max_trials=2, gradcam_samples=0)]
    searched = run_console(["search", str(recipe), "--manifest", str(data["liver"]), *common])
    assert searched.returncode == 0, searched.stderr
    final = run_console(["run", str(recipe), *common])
    assert final.returncode == 0, final.stderr
    record = json.loads((run / "model.json").read_text())["training_config"]
    assert record["reproduces_trial"] is True
    assert record["final_objective"] == pytest.approx(record["search_best_objective"], abs=1e-6)
    assert f"final model reproduces best trial {record['search_best_trial']}" in final.stdout
