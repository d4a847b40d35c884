"""FineTuneConfig, augmentation, class weights and training curves: fast checks without training a network."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tl_radiology import InputError, OptionError
from tl_radiology.training import (
    FineTuneConfig,
    class_weights_from_labels,
    make_augmentation,
    overfitting_note,
    plot_training_curves,
)
from tl_radiology.training import _config
from tl_radiology.training._augment import augmentation_settings
from tl_radiology.training._optim import group_learning_rate_factors

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# ------------------------------------------------------------------------------------------------ FineTuneConfig

def test_config_round_trips_through_json_with_plain_values():
    config = FineTuneConfig(backbone="DenseNet121", weights=None, unfreeze=2, learning_rate_spread=10,
                            augmentation=0.5, flip="horizontal")
    data = json.loads(json.dumps(config.to_dict()))
    assert FineTuneConfig.from_dict(data) == config
    assert config.backbone == "densenet121"  # canonical name
    assert isinstance(config.learning_rate_spread, float)
    assert all(isinstance(v, (str, int, float, bool, type(None))) for v in config.to_dict().values())


def test_replace_changes_fields_and_is_validated_again():
    config = FineTuneConfig(weights=None)
    changed = config.replace(head_learning_rate=np.float64(3e-4), unfreeze=np.int64(3), dropout=0.2)
    assert (changed.head_learning_rate, changed.unfreeze, changed.dropout) == (3e-4, 3, 0.2)
    assert type(changed.unfreeze) is int and type(changed.head_learning_rate) is float  # numpy from a tuner
    assert config.head_learning_rate == 1e-3  # the original is untouched (frozen)
    with pytest.raises(OptionError, match=r"Unknown FineTuneConfig field 'head_learning_rte'\. Did you mean "
                                          r"'head_learning_rate'"):
        config.replace(head_learning_rte=1e-4)
    with pytest.raises(InputError, match=r"FineTuneConfig.dropout: expected a number >= 0.0 and < 1.0; received 1.5"):
        config.replace(dropout=1.5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"backbone": "resnet5O"}, r"Unknown backbone \(FineTuneConfig.backbone\) 'resnet5O'\. Did you mean 'resnet50'"),
        ({"optimizer": "adamm"}, r"Unknown optimizer \(FineTuneConfig.optimizer\) 'adamm'\. Did you mean 'adam'"),
        ({"head_learning_rate": 0}, r"FineTuneConfig.head_learning_rate: expected a number > 0.0; received 0"),
        ({"unfreeze": 9}, r"FineTuneConfig.unfreeze: expected 'all', 'none' or a number of layer groups from 0 to 5 "
                          r"for resnet50; received 9"),
        ({"unfreeze": "half"}, r"Unknown unfreeze setting \(FineTuneConfig.unfreeze\) 'half'"),
        ({"augmentation": 1.2}, r"FineTuneConfig.augmentation: expected a number >= 0.0 and <= 1.0; received 1.2"),
        ({"class_weighting": "inverse"}, r"Unknown class weighting \(FineTuneConfig.class_weighting\) 'inverse'"),
        ({"flip": "lr"}, r"Unknown flip \(FineTuneConfig.flip\) 'lr'"),
        ({"monitor": "val_acc"}, r"Unknown monitor \(FineTuneConfig.monitor\) 'val_acc'\. Did you mean .*"
                                 r"'val_accuracy'"),
        ({"input_size": 16}, r"FineTuneConfig.input_size: expected an integer >= 32 or None; received 16"),
        ({"learning_rate_spread": 0.5}, r"FineTuneConfig.learning_rate_spread: expected a number >= 1.0"),
        ({"early_stopping_patience": 0}, r"FineTuneConfig.early_stopping_patience: expected an integer >= 1 or None"),
        ({"batch_size": True}, r"FineTuneConfig.batch_size: expected an integer >= 1; received True"),
        ({"head_epochs": 0, "finetune_epochs": 0}, r"head_epochs and finetune_epochs are both 0"),
    ],
)
def test_bad_values_name_the_field_and_what_was_expected(changes, message):
    with pytest.raises(InputError, match=message):
        FineTuneConfig(weights=None, **changes)


def test_unfreeze_settings_and_the_default_monitor():
    config = FineTuneConfig(backbone="vgg16", weights=None)
    assert config.num_unfrozen_groups == 5 and config.has_finetune_phase
    assert FineTuneConfig(backbone="vgg16", weights=None, unfreeze="none").unfreeze == 0
    assert not FineTuneConfig(backbone="vgg16", weights=None, unfreeze="none").has_finetune_phase
    assert config.resolved_monitor("binary") == "val_auc"
    assert config.resolved_monitor("regression") == "val_loss"
    with pytest.raises(InputError, match=r"monitor='val_mae' is not recorded for task 'binary'"):
        config.replace(monitor="val_mae").resolved_monitor("binary")


def test_the_config_option_lists_agree_with_the_models_part():
    from tl_radiology.models import ADAPTERS, OPTIMIZERS
    from tl_radiology.models._build import POOLINGS

    assert _config.ADAPTERS == tuple(ADAPTERS)
    assert _config.OPTIMIZERS == tuple(OPTIMIZERS)
    assert _config.POOLINGS == tuple(POOLINGS)


# ------------------------------------------------------------------------------------------------ augmentation

def test_augmentation_changes_training_images_only_and_keeps_them_in_range():
    rng = np.random.default_rng(0)
    x = rng.random((16, 32, 32, 1)).astype("float32")
    augment = make_augmentation(1.0, seed=3)
    trained = keras.ops.convert_to_numpy(augment(x, training=True))
    assert trained.shape == x.shape
    assert 0.0 <= trained.min() and trained.max() <= 1.0
    assert np.abs(trained - x).mean() > 0.05
    assert np.array_equal(keras.ops.convert_to_numpy(augment(x, training=False)), x)  # validation / prediction
    assert [layer.name for layer in augment.layers] == ["rotation", "translation", "zoom", "contrast", "erasing"]


def test_flips_are_an_explicit_choice_and_strength_zero_is_nothing():
    assert make_augmentation(0.0) is None
    flip_only = make_augmentation(0.0, flip="horizontal")
    assert [layer.name for layer in flip_only.layers] == ["flip"]
    assert "flip" not in [layer.name for layer in make_augmentation(0.5).layers]
    settings = augmentation_settings(0.5)
    assert settings["rotation_degrees"] == pytest.approx(9.0) and settings["flip"] == "none"
    with pytest.raises(InputError, match=r"augmentation strength to be a number in \[0, 1\] \(0 = none\); "
                                         r"received 2"):
        make_augmentation(2)
    with pytest.raises(OptionError, match=r"Unknown flip 'horizontall'\. Did you mean 'horizontal'"):
        make_augmentation(0.5, flip="horizontall")


def test_horizontal_flip_mirrors_left_and_right():
    x = np.zeros((1, 32, 32, 1), "float32")
    x[:, :, :8] = 1.0  # a bright band on the image's left
    flipped = keras.ops.convert_to_numpy(make_augmentation(0.0, flip="horizontal", seed=0)(np.repeat(x, 64, 0),
                                                                                         training=True))
    mirrored = flipped[:, :, -8:].mean(axis=(1, 2, 3)) == 1.0
    assert 0 < mirrored.sum() < 64  # some images mirrored, some not


# ------------------------------------------------------------------------------------------------ class weights

def test_balanced_class_weights_follow_scikit_learn():
    weights = class_weights_from_labels(np.array([0] * 90 + [1] * 10, "float32"))
    assert weights == pytest.approx({0: 100 / (2 * 90), 1: 100 / (2 * 10)})
    sparse = class_weights_from_labels([0, 1, 1, 2, 2, 2], num_classes=3)
    one_hot = class_weights_from_labels(np.eye(3)[[0, 1, 1, 2, 2, 2]])
    assert sparse == pytest.approx({0: 2.0, 1: 1.0, 2: 2 / 3})
    assert one_hot == pytest.approx(sparse)


def test_class_weights_refuse_what_they_cannot_weigh():
    with pytest.raises(InputError, match=r"class 2 has no training cases"):
        class_weights_from_labels([0, 1, 1], num_classes=3)
    with pytest.raises(InputError, match=r"rows are not one-hot \(multi-label targets\)"):
        class_weights_from_labels(np.array([[1, 1], [0, 1]]))
    with pytest.raises(InputError, match=r"do not apply to regression targets"):
        class_weights_from_labels([0.3, 1.7])
    with pytest.raises(OptionError, match=r"Unknown class weighting method 'balance'"):
        class_weights_from_labels([0, 1], method="balance")


def test_spread_factors_are_geometric_from_the_lowest_to_the_top_group():
    assert group_learning_rate_factors(3, 100.0) == pytest.approx([0.01, 0.1, 1.0])
    assert group_learning_rate_factors(1, 100.0) == [1.0]
    assert group_learning_rate_factors(4, 1.0) == [1.0, 1.0, 1.0, 1.0]


# ------------------------------------------------------------------------------------------------ curves

def _history(val_loss, loss=None, phases=None):
    n = len(val_loss)
    loss = loss if loss is not None else list(np.linspace(1.0, 0.2, n))
    return pd.DataFrame({
        "epoch": np.arange(1, n + 1),
        "phase": phases or ["head"] * n,
        "loss": loss,
        "auc": np.linspace(0.6, 0.95, n),
        "val_loss": val_loss,
        "val_auc": np.linspace(0.6, 0.8, n),
    })


def test_overfitting_rule_on_constructed_histories():
    # Fig. 9: the training loss keeps falling, the validation loss turns up, the gap widens for 3 epochs.
    overfit = _history([0.9, 0.7, 0.6, 0.62, 0.7, 0.8], loss=[1.0, 0.8, 0.6, 0.45, 0.3, 0.2])
    note = overfitting_note(overfit)
    assert note.startswith("Overfitting: from epoch 3 to 6 the training loss fell (0.6 -> 0.2) while the "
                           "validation loss rose (0.6 -> 0.8)")
    assert "Lowest validation loss at epoch 3" in note
    # Both losses falling: no note; the gap widening for only 2 epochs: no note (window 3).
    assert overfitting_note(_history([0.9, 0.8, 0.7, 0.6, 0.55, 0.5])) is None
    assert overfitting_note(_history([0.9, 0.7, 0.6, 0.3, 0.7, 0.8], loss=[1.0, 0.8, 0.6, 0.45, 0.3, 0.2])) is None
    assert overfitting_note(overfit, window=5) is None
    # Only the last phase counts: a rise across the phase boundary is not overfitting.
    phases = ["head"] * 3 + ["finetune"] * 3
    assert overfitting_note(_history([0.5, 0.6, 0.7, 0.8, 0.9, 1.0], phases=phases)) is None


def test_curves_are_drawn_atomically_with_the_note(tmp_path):
    overfit = _history([0.9, 0.7, 0.6, 0.62, 0.7, 0.8], loss=[1.0, 0.8, 0.6, 0.45, 0.3, 0.2],
                       phases=["finetune"] * 6)
    path = plot_training_curves(overfit, tmp_path / "curves.png", monitor="val_loss", best_epoch=3)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]
    overfit.to_csv(tmp_path / "history.csv", index=False)
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    plot_training_curves(tmp_path / "history.csv", tmp_path / "from_csv.svg")
    assert "Overfitting" in (tmp_path / "from_csv.svg").read_text()  # the note is on the figure
    assert set(plt.get_fignums()) == before  # figures are closed
    with pytest.raises(InputError, match=r"History file .*missing.csv not found"):
        plot_training_curves(tmp_path / "missing.csv", tmp_path / "x.png")
