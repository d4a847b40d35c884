"""Recipes without training: the prebuilt ones, fields and --set parsing, loading by name / file / recipe.json,
the loader each recipe builds on real files, and the `recipes` command (also as a real console script)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_run_support import medmnist_subset, nodule_phantoms, triphasic_phantoms

from tl_radiology import InputError, OptionError, Recipe, list_recipes, load_recipe
from tl_radiology.cli import main

PREBUILT = ["chest_xray", "ct_multiwindow", "ensemble", "liver_lesion_triphasic_ct", "lung_nodule_multiplanar",
            "radiomics_features", "retina_grade"]


def base(**changes) -> Recipe:
    values = dict(name="t", image_columns=("native", "arterial", "delayed"), windows=("liver",), weights=None,
                  input_size=32, adapter="stem")
    values.update(changes)
    return Recipe(**values)


# ------------------------------------------------------------------------------------------------ prebuilt

def test_the_seven_prebuilt_recipes_are_listed_and_load():
    assert list_recipes() == PREBUILT
    for name in PREBUILT:
        recipe = load_recipe(name)
        assert isinstance(recipe, Recipe) and recipe.name == name and recipe.description
        assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
        for backbone in recipe.member_backbones:
            assert recipe.fine_tune_config(backbone=backbone).backbone == backbone


def test_prebuilt_recipes_say_what_they_are():
    cxr = load_recipe("chest_xray")
    assert (cxr.mode, cxr.backbone, cxr.expect, cxr.adapter, cxr.flip) == ("finetune", "efficientnet_lite0", "gray",
                                                                            "replicate", "none")
    liver = load_recipe("liver_lesion_triphasic_ct")
    assert liver.image_columns == ("native", "arterial", "delayed") and liver.adapter == "stem"
    nodule = load_recipe("lung_nodule_multiplanar")
    assert nodule.center_columns == ("center_z", "center_y", "center_x") and nodule.num_channels == 3
    assert load_recipe("ct_multiwindow").windows == ("lung", "mediastinum", "bone")
    features = load_recipe("radiomics_features")
    assert features.mode == "features" and len(features.backbones) >= 2
    assert set(features.classifiers) == {"random_forest", "svm", "logistic_regression"}
    ensemble = load_recipe("ensemble")
    assert ensemble.mode == "ensemble" and ensemble.backbones == ("efficientnet_lite0", "efficientnet_lite2")
    assert ensemble.input_size >= 75  # InceptionV3's minimum
    retina = load_recipe("retina_grade")
    assert retina.task == "multiclass" and retina.ordinal and retina.expect == "rgb"
    # Full-size defaults: ImageNet weights at the backbone's size, real schedules.
    for name in PREBUILT:
        recipe = load_recipe(name)
        assert recipe.weights == "imagenet" and recipe.input_size >= 224
        assert recipe.mode == "features" or recipe.head_epochs + recipe.finetune_epochs >= 10


def test_recipe_holds_every_finetune_config_field_under_the_same_name():
    from tl_radiology.training import FineTuneConfig

    names = set(Recipe.field_names())
    config_fields = [f.name for f in dataclasses.fields(FineTuneConfig)]
    assert set(config_fields) <= names
    recipe = base(dropout=0.3, head_epochs=2, unfreeze=1, flip="horizontal")
    config = recipe.fine_tune_config()
    assert {name: getattr(config, name) for name in config_fields} == {
        name: getattr(recipe, name) for name in config_fields}


# ------------------------------------------------------------------------------------------------ --set

def test_replace_from_strings_parses_by_field_type():
    recipe = base().replace_from_strings({
        "dropout": "0.3", "image_columns": "native, arterial", "unfreeze": "2", "weights": "none",
        "train_batchnorm": "true", "value_range": "0,4095", "search_space": '{"dropout": [0.0, 0.5]}',
        "cv_folds": "3", "monitor": "val_loss", "early_stopping_patience": "None", "windows": "60:250",
    })
    assert recipe.dropout == 0.3 and recipe.image_columns == ("native", "arterial")
    assert recipe.unfreeze == 2 and recipe.weights is None and recipe.train_batchnorm is True
    assert recipe.value_range == (0.0, 4095.0) and recipe.search_space == {"dropout": [0.0, 0.5]}
    assert recipe.cv_folds == 3 and recipe.monitor == "val_loss" and recipe.early_stopping_patience is None
    assert recipe.windows == ("60:250",) and recipe.num_channels == 2
    assert base().replace_from_strings({"unfreeze": "all"}).unfreeze == "all"
    # The same name means the same thing as a search-space key: --set dropout and {"dropout": [...]}.
    assert recipe.fine_tune_config().dropout == 0.3


@pytest.mark.parametrize("key, text, match", [
    ("dropout", "abc", r"Recipe field 'dropout' expects a number; received 'abc'"),
    ("head_epochs", "1.5", r"'head_epochs' expects an integer; received '1.5'"),
    ("train_batchnorm", "maybe", r"'train_batchnorm' expects true/false; received 'maybe'"),
    ("search_space", "{dropout: 1}", r"'search_space' expects a JSON object .*not valid JSON"),
    ("value_range", "0", r"'value_range' expects 2 comma-separated numbers; received '0'"),
])
def test_wrong_types_name_the_field_the_type_and_the_text(key, text, match):
    with pytest.raises(InputError, match=match):
        base().replace_from_strings({key: text})


def test_unknown_fields_and_bad_values_fail_with_the_field_named():
    with pytest.raises(OptionError, match=r"Unknown recipe field 'dropuot'\. Did you mean 'dropout'\?"):
        base().replace_from_strings({"dropuot": "0.3"})
    with pytest.raises(InputError, match=r"FineTuneConfig\.dropout: expected a number >= 0\.0 and < 1\.0; "
                                         r"received 1\.5"):
        base(dropout=1.5)
    with pytest.raises(OptionError, match=r"Unknown backbone 'resnet5O'.*Did you mean 'resnet50'"):
        base(backbone="resnet5O")
    with pytest.raises(OptionError, match=r"Unknown window preset 'livr'.*Did you mean 'liver'"):
        base(windows=("livr",))
    with pytest.raises(InputError, match=r"field windows expects one window when there are several image columns"):
        base(windows=("lung", "bone"))
    with pytest.raises(InputError, match=r"field adapter expects 'stem' or 'projection' for 2-channel input"):
        base(image_columns=("native", "arterial"), adapter="replicate")
    with pytest.raises(InputError, match=r"field tuner expects 'random' or 'bayesian' with mode='features'"):
        base(mode="features", backbones=("vgg16",), tuner="hyperband")
    with pytest.raises(InputError, match=r"field backbones expects two or more backbones with mode='ensemble'"):
        base(mode="ensemble", backbones=("vgg16",))
    with pytest.raises(InputError, match=r"field threshold_target expects a sensitivity to reach"):
        base(threshold_method="sensitivity")
    with pytest.raises(InputError, match=r"search_space: Search space key 'dropout', value 2"):
        base(search_space={"dropout": [0.1, 2]})
    with pytest.raises(InputError, match=r"field val_fraction expects a fraction 0 <= F < 1; received 1\.5"):
        base(val_fraction=1.5)


def test_a_recipe_keeps_its_own_copy_of_dict_fields():
    space = {"dropout": [0.0, 0.5]}
    recipe = base(search_space=space)
    space["dropout"].append(0.9)
    assert recipe.search_space == {"dropout": [0.0, 0.5]}
    assert hash(recipe) == hash(base(search_space={"dropout": [0.0, 0.5]}))


# ------------------------------------------------------------------------------------------------ loading

def test_load_recipe_by_name_file_and_recipe_json(tmp_path):
    with pytest.raises(OptionError, match=r"Unknown recipe 'chest_xrya'\. Did you mean 'chest_xray'\? Available: "
                                          r"chest_xray, ct_multiwindow"):
        load_recipe("chest_xrya")
    with pytest.raises(InputError, match=r"Recipe file .*nope\.py not found"):
        load_recipe(tmp_path / "nope.py")
    # A copied and edited prebuilt recipe runs by path.
    assert main(["recipes", "liver_lesion_triphasic_ct", "--copy", str(tmp_path / "mine.py")]) == 0
    text = (tmp_path / "mine.py").read_text()
    assert 'name="liver_lesion_triphasic_ct"' in text
    (tmp_path / "mine.py").write_text(text.replace('name="liver_lesion_triphasic_ct"', 'name="mine"')
                                      .replace('"native", "arterial", "delayed"', '"arterial", "delayed"'))
    mine = load_recipe(str(tmp_path / "mine.py"))
    assert mine.name == "mine" and mine.image_columns == ("arterial", "delayed") and mine.num_channels == 2
    assert main(["recipes", "chest_xray", "--copy", str(tmp_path / "mine.py")]) == 2  # never overwrites
    # recipe.json (what a run writes) reads back to the same recipe.
    (tmp_path / "recipe.json").write_text(json.dumps(mine.to_dict()))
    assert load_recipe(tmp_path / "recipe.json") == mine
    # Broken files fail on one line naming the file and what is wrong.
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(InputError, match=r"empty\.py defines no module-level RECIPE"):
        load_recipe(tmp_path / "empty.py")
    (tmp_path / "syntax.py").write_text("from tl_radiology import Recipe\nRECIPE = Recipe(name='a'\n")
    with pytest.raises(InputError, match=r"syntax\.py could not be run \(line 2\): SyntaxError"):
        load_recipe(tmp_path / "syntax.py")
    (tmp_path / "bad.py").write_text("from tl_radiology import Recipe\nRECIPE = Recipe(name='a', dropout='x')\n")
    with pytest.raises(InputError, match=r"bad\.py: Recipe field 'dropout' expects a number; received 'x'"):
        load_recipe(tmp_path / "bad.py")


# ------------------------------------------------------------------------------------------------ loaders

@pytest.fixture(scope="module")
def data(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("recipe_data")
    from tl_radiology.data import Manifest

    liver = Manifest.from_csv(triphasic_phantoms(root / "liver", num_patients=2, cases_per_patient=1),
                              image_columns=("native", "arterial", "delayed")).cases.iloc[0]
    nodule = Manifest.from_csv(nodule_phantoms(root / "nodule", num_patients=1)).cases.iloc[0]
    cxr_csv = medmnist_subset(shared_data, root / "cxr", "pneumoniamnist", per_class={"train": 2, "val": 2, "test": 2})
    cxr = Manifest.from_csv(cxr_csv).cases.iloc[0]
    retina = Manifest.from_csv(medmnist_subset(shared_data, root / "retina", "retinamnist",
                                               per_class={"train": 1})).cases.iloc[0]
    return {"liver": liver, "nodule": nodule, "cxr": cxr, "retina": retina, "cxr_csv": cxr_csv}


def test_each_recipe_builds_the_loader_its_description_promises(data):
    small = {"input_size": "32", "weights": "none"}
    liver = load_recipe("liver_lesion_triphasic_ct").replace_from_strings(small)
    x = liver.loader()(data["liver"])
    assert x.shape == (32, 32, 3) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    for columns, channels in (("arterial", 1), ("native,arterial", 2)):
        variant = liver.replace_from_strings({"image_columns": columns})
        assert variant.loader()(data["liver"]).shape == (32, 32, channels) == (32, 32, variant.num_channels)
    windows = load_recipe("ct_multiwindow").replace_from_strings({**small, "image_columns": "arterial"})
    x = windows.loader()(data["liver"])
    assert x.shape == (32, 32, 3)
    assert x[..., 0].mean() > x[..., 1].mean() > x[..., 2].mean()  # soft tissue: bright in lung, dark in bone window
    nodule = load_recipe("lung_nodule_multiplanar").replace_from_strings({**small, "plane_size": "32"})
    assert nodule.loader()(data["nodule"]).shape == (32, 32, 3)  # axial, coronal, sagittal
    cxr = load_recipe("chest_xray").replace_from_strings(small).loader()(data["cxr"])
    assert cxr.shape == (32, 32, 1) and cxr.max() == pytest.approx(1.0, abs=0.05)
    retina = load_recipe("retina_grade").replace_from_strings(small).loader()(data["retina"])
    assert retina.shape == (32, 32, 3)


# ------------------------------------------------------------------------------------------------ command line

def test_recipes_command_lists_shows_and_exports(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in PREBUILT:
        assert f"\n{name} " in out
    assert "efficientnet_lite0" in out and "efficientnet_lite0+efficientnet_lite2" in out
    assert main(["recipes", "liver_lesion_triphasic_ct", "--set", "image_columns=native,arterial"]) == 0
    out = capsys.readouterr().out
    assert "image_columns            = native,arterial" in out and "[fine-tuning (FineTuneConfig)]" in out
    assert "source: " in out and "liver_lesion_triphasic_ct.py" in out
    assert main(["recipes", "retina_grade", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ordinal"] is True


@pytest.mark.parametrize("setting, match", [
    ("dropuot=0.3", r"^error: Recipe 'chest_xray': Unknown recipe field 'dropuot'\. Did you mean 'dropout'\?"),
    ("dropout=abc", r"^error: Recipe field 'dropout' expects a number; received 'abc'\."),
    ("dropout", r"^error: --set 'dropout': expected KEY=VALUE"),
    # A chest film allows no flips (laterality), so there are no flipped views to average at test time.
    ("tta=true", r"^error: Recipe 'chest_xray': field tta expects False while flip='none': test-time augmentation "
                 r"averages over the flips the recipe allows"),
])
def test_run_with_a_bad_set_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, setting, match):
    code = main(["run", "chest_xray", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "run"),
                 "--set", setting])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert __import__("re").search(match, lines[0]), lines[0]
    assert not (tmp_path / "run").exists()


def test_importing_the_package_and_recipe_class_stays_light():
    # Making a recipe validates it against the backbone registry (TensorFlow); importing does not.
    probe = subprocess.run([sys.executable, "-c", "import sys, tl_radiology; tl_radiology.Recipe; "
                            "tl_radiology.run_recipe; print('tensorflow' in sys.modules, 'keras' in sys.modules)"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "False False"


def test_a_recipe_that_cannot_take_the_images_fails_before_anything_is_written(data, tmp_path, capsys):
    # 28 px MedMNIST images at their own size (input_size=none) are below VGG16's minimum of 32 px.
    out = tmp_path / "run"
    code = main(["run", "chest_xray", "--manifest", str(data["cxr_csv"]), "--out", str(out), "--set", "weights=none",
                 "--set", "backbone=vgg16", "--set", "input_size=none"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1
    assert "loads 28x28 images (input_size=None)" in errors[0] and "at least 32" in errors[0]
    assert not out.exists()


def test_imagenet_weights_that_are_not_here_fail_before_anything_is_written(data, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "chest_xray", "--manifest", str(data["cxr_csv"]), "--out", str(out), "--set", "input_size=32",
                 "--set", "backbone=densenet121"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1
    assert "ImageNet weights for densenet121 are not available offline" in errors[0]
    assert "tl-radiology weights import" in errors[0] and "--set weights=none" in errors[0]
    assert not out.exists()  # no trial was tried, nothing was split


def test_every_missing_weights_file_is_named_at_once(data, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "ensemble", "--manifest", str(data["cxr_csv"]), "--out", str(out), "--set", "input_size=75",
                 "--set", "backbones=resnet50,inception_v3"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1
    assert "2 starting-weights files are not available offline" in errors[0]
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 (resnet50)" in errors[0]
    assert "inception_v3" in errors[0] and "tl-radiology weights import" in errors[0]
    assert not out.exists()


def test_a_test_case_the_recipe_cannot_load_is_refused_before_anything_is_sealed(data, tmp_path, capsys):
    # A colour image among the sealed test cases of a gray recipe: found while splitting, not after an opening.
    import pandas as pd
    from skimage.io import imsave

    folder = tmp_path / "cxr"
    frame = pd.read_csv(data["cxr_csv"])
    source = Path(data["cxr_csv"]).parent
    for name in frame["image"]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes((source / name).read_bytes())
    test_row = frame.index[frame["split"] == "test"][0]
    colour = np.zeros((28, 28, 3), dtype=np.uint8)
    colour[..., 0] = 200
    imsave(folder / frame.at[test_row, "image"], colour, check_contrast=False)
    frame.to_csv(folder / "manifest.csv", index=False)
    out = tmp_path / "run"
    code = main(["run", "chest_xray", "--manifest", str(folder / "manifest.csv"), "--out", str(out),
                 "--set", "weights=none", "--set", "input_size=32"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1
    assert f"Test case at manifest line {test_row + 2}" in errors[0] and "Nothing was sealed" in errors[0]
    assert not (out / "test.lock").exists() and not (out / "audit.log").exists()


@pytest.mark.parametrize("settings, expected", [
    (["--set", "tuner=bayesian", "--set", 'tuner_options={"alphaa": 0.001}'],
     r"Unknown option of tuner 'bayesian' 'alphaa'\. Did you mean 'alpha'\?"),
    (["--set", "seed=4294967296"], r"FineTuneConfig\.seed: expected an integer >= 0 and <= 4294967294"),
    (["--set", "split_seed=4294967296"], r"field split_seed expects an integer from 0 to 2\*\*32 - 1"),
])
def test_search_settings_the_tuner_cannot_take_fail_before_anything_is_written(data, tmp_path, capsys, settings,
                                                                               expected):
    out = tmp_path / "run"
    code = main(["run", "chest_xray", "--manifest", str(data["cxr_csv"]), "--out", str(out), "--set", "weights=none",
                 "--set", "input_size=32", *settings])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and re.search(expected, errors[0]), errors
    assert not out.exists()


def test_no_validation_fraction_without_a_split_column_fails_before_anything_is_written(data, tmp_path, capsys):
    import pandas as pd

    frame = pd.read_csv(data["cxr_csv"]).drop(columns=["split"])
    frame["image"] = [str((Path(data["cxr_csv"]).parent / name).resolve()) for name in frame["image"]]
    manifest = tmp_path / "manifest.csv"
    frame.to_csv(manifest, index=False)
    out = tmp_path / "run"
    code = main(["run", "chest_xray", "--manifest", str(manifest), "--out", str(out), "--set", "weights=none",
                 "--set", "input_size=32", "--set", "val_fraction=0", "--set", "allow_outside_root=true"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "field val_fraction expects > 0" in errors[0], errors
    assert not out.exists()


def test_an_input_size_that_cannot_fit_in_memory_is_refused_with_the_field_named():
    with pytest.raises(InputError, match=r"field input_size expects an integer <= 4096 pixels .*received 100000"):
        base(input_size=100000)
