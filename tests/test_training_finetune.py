"""Two-phase fine-tuning on real PneumoniaMNIST / RetinaMNIST PNGs: phases, BatchNorm, files, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tl_radiology import InputError
from tl_radiology.backbones import get_backbone
from tl_radiology.data import CaseCache, CaseLoader, Manifest, import_medmnist, load_arrays, make_dataset
from tl_radiology.models import build_model, compile_model, unfreeze_layer_groups
from tl_radiology.training import FineTuneConfig, build_for_config, fine_tune, fit_two_phases
from tl_radiology.training._callbacks import _PhaseCallback, _Recorder
from tl_radiology.training._optim import make_layerwise_optimizer
from tl_radiology.transforms import Compose, Resize, ScaleIntensity

keras = pytest.importorskip("keras")

# Keras' own conversions of TensorFlow tensors trip NumPy 2's copy-keyword deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _medmnist_subset(shared_data, folder, name, counts):
    with np.load(shared_data / f"medmnist_{name}" / f"{name}.npz") as data:
        parts = {f"{s}_{k}": data[f"{s}_{k}"][:n] for s, n in counts for k in ("images", "labels")}
    np.savez(folder / f"{name}_small.npz", **parts)
    return Manifest.from_csv(import_medmnist(folder / f"{name}_small.npz", folder / "png"))


def _loader(size=32):
    return CaseLoader("image", per_image=Compose([ScaleIntensity("range", value_range=(0, 255)), Resize(size)]))


def _split(manifest, name):
    cases = manifest.cases
    return cases[cases["split"] == name].reset_index(drop=True)


class BatchNormProbe(keras.callbacks.Callback):
    """Snapshots of every BatchNorm layer's moving statistics at the start and end of each phase (fit call)."""

    def __init__(self):
        super().__init__()
        self.snapshots = []

    def _stats(self):
        base = self.model.get_layer("backbone")
        return {layer.name: (keras.ops.convert_to_numpy(layer.moving_mean),
                             keras.ops.convert_to_numpy(layer.moving_variance))
                for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)}

    def on_train_begin(self, logs=None):
        self.snapshots.append({"begin": self._stats(), "kernels": self._kernels()})

    def on_train_end(self, logs=None):
        self.snapshots[-1]["end"] = self._stats()
        self.snapshots[-1]["kernels_end"] = self._kernels()

    def _kernels(self):
        base = self.model.get_layer("backbone")
        return {name: keras.ops.convert_to_numpy(base.get_layer(name).kernel) for name in ("conv1_conv", "conv5_block3_3_conv")}


@pytest.fixture(scope="module")
def pneumonia(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pneumonia_ft")
    manifest = _medmnist_subset(shared_data, folder, "pneumoniamnist", (("train", 64), ("val", 32), ("test", 2)))
    return manifest, folder


@pytest.fixture(scope="module")
def run(pneumonia, tmp_path_factory):
    """One real two-phase run: ResNet50 (random weights, 32 px), 1 head epoch + 1 epoch with conv5 unfrozen."""
    manifest, folder = pneumonia
    loader = _loader()
    cache = CaseCache(folder / "cache")
    train = make_dataset(_split(manifest, "train"), loader, cache=cache, task=manifest.task,
                         classes=manifest.classes, batch_size=16, shuffle=True, seed=0)
    val = make_dataset(_split(manifest, "val"), loader, cache=cache, task=manifest.task, classes=manifest.classes,
                       batch_size=16)
    config = FineTuneConfig(backbone="resnet50", weights=None, head_epochs=1, finetune_epochs=1, unfreeze=1,
                            head_learning_rate=1e-3, finetune_learning_rate=1e-4, augmentation=0.3,
                            class_weighting="balanced", seed=0)
    probe = BatchNormProbe()
    out = tmp_path_factory.mktemp("run")
    keras.backend.clear_session()
    result = fine_tune(train, val, config=config, task=manifest.task, classes=manifest.classes, out_dir=out,
                       callbacks=[probe], verbose=False)
    x_val, y_val = load_arrays(_split(manifest, "val"), loader, cache, task=manifest.task, classes=manifest.classes)
    return result, probe, out, x_val, y_val, loader


@pytest.mark.slow
@pytest.mark.shared_data
def test_history_has_both_phases_numbered_on_and_a_finite_val_auc(run):
    result, _, out, *_ = run
    history = result.history
    assert history["epoch"].tolist() == [1, 2]
    assert history["phase"].tolist() == ["head", "finetune"]
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in history["val_auc"])
    assert history["learning_rate"].tolist() == pytest.approx([1e-3, 1e-4])
    on_disk = pd.read_csv(out / "history.csv")
    assert on_disk["phase"].tolist() == ["head", "finetune"]
    assert on_disk["val_auc"].to_numpy() == pytest.approx(history["val_auc"].to_numpy(), rel=1e-5)
    assert result.monitor == "val_auc"
    assert result.best_value == pytest.approx(history["val_auc"].max())
    assert result.best_metrics()["val_auc"] == pytest.approx(result.best_value)
    # Every file is in place and no temporary file of the atomic writes is left behind.
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.keras", "curves.png", "history.csv"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.shared_data
def test_trainable_counts_are_head_only_then_head_plus_the_unfrozen_group(run):
    result, *_ = run
    base = result.model.get_layer("backbone")
    head = 2048 * 1 + 1  # the sigmoid output layer on 2048 pooled features
    conv5 = get_backbone("resnet50").assign_layer_groups(base)["conv5"]
    conv5_params = sum(int(np.prod(w.shape)) for layer in conv5 if not isinstance(layer, keras.layers.BatchNormalization)
                       for w in layer.weights)
    assert result.trainable_params == {"head": head, "finetune": head + conv5_params}
    assert result.unfrozen_groups == ["conv5"]
    assert result.class_weights[0] > 1.0 > result.class_weights[1]  # 19 normal vs 45 pneumonia in the subset


@pytest.mark.slow
@pytest.mark.shared_data
def test_batchnorm_statistics_do_not_move_and_only_the_unfrozen_group_trains(run):
    _, probe, *_ = run
    assert len(probe.snapshots) == 2  # one fit per phase
    for phase in probe.snapshots:
        assert phase["begin"], "ResNet50 has BatchNorm layers"
        for name, (mean, variance) in phase["begin"].items():
            end_mean, end_variance = phase["end"][name]
            assert np.array_equal(mean, end_mean), name
            assert np.array_equal(variance, end_variance), name
    head_phase, finetune_phase = probe.snapshots
    for name, kernel in head_phase["kernels"].items():
        assert np.array_equal(kernel, head_phase["kernels_end"][name]), f"{name} trained in phase 1"
    assert np.array_equal(finetune_phase["kernels"]["conv1_conv"], finetune_phase["kernels_end"]["conv1_conv"])
    assert not np.array_equal(finetune_phase["kernels"]["conv5_block3_3_conv"],
                              finetune_phase["kernels_end"]["conv5_block3_3_conv"])


@pytest.mark.slow
@pytest.mark.shared_data
def test_best_checkpoint_reloads_with_the_same_predictions(run):
    result, _, out, x_val, y_val, _ = run
    reloaded = keras.saving.load_model(out / "checkpoint.keras", safe_mode=True, compile=False)
    expected = result.model.predict(x_val, verbose=0)
    assert np.allclose(reloaded.predict(x_val, verbose=0), expected, atol=1e-6)
    assert expected.shape == (32, 1) and len(np.unique(np.round(expected, 6))) > 1


@pytest.mark.slow
@pytest.mark.shared_data
def test_multiclass_sparse_labels_from_make_dataset_train_a_softmax_head(shared_data, tmp_path):
    manifest = _medmnist_subset(shared_data, tmp_path, "retinamnist", (("train", 80), ("val", 40), ("test", 2)))
    loader = _loader()
    cache = CaseCache(tmp_path / "cache")
    train = make_dataset(_split(manifest, "train"), loader, cache=cache, task="multiclass", classes=manifest.classes,
                         batch_size=16, shuffle=True)
    val = make_dataset(_split(manifest, "val"), loader, cache=cache, task="multiclass", classes=manifest.classes,
                       batch_size=16)
    assert train.element_spec[1].dtype.name == "int64"  # the pipeline's sparse encoding
    config = FineTuneConfig(backbone="vgg16", weights=None, head_epochs=2, finetune_epochs=0,
                            class_weighting="balanced", early_stopping_patience=None)
    keras.backend.clear_session()
    result = fine_tune(train, val, config=config, task="multiclass", classes=manifest.classes, verbose=False)
    assert result.task.num_classes == 5
    assert result.history["phase"].tolist() == ["head", "head"]
    assert sorted(result.class_weights) == [0, 1, 2, 3, 4]
    x_val, _ = load_arrays(_split(manifest, "val"), loader, cache)
    proba = result.to_trained_model(loader=loader).predict_proba(x_val)
    assert proba.shape == (40, 5)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_learning_rate_spread_moves_earlier_groups_less():
    """One SGD step from the same weights: with spread 100, block4 moves 1/100 as far, block5 as far as without."""
    rng = np.random.default_rng(0)
    x = rng.random((8, 32, 32, 1)).astype("float32")
    y = np.array([0, 1] * 4, dtype="float32")[:, None]
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = build_model("vgg16", input_shape=(32, 32, 1), weights=None)
    start = model.get_weights()
    groups = get_backbone("vgg16").assign_layer_groups(model.get_layer("backbone"))
    moved = {}
    for spread in (1.0, 100.0):
        model.set_weights(start)
        unfreeze_layer_groups(model, 2)
        factors = [(w, 1.0 / spread) for layer in groups["block4"] for w in layer.trainable_weights]
        optimizer = make_layerwise_optimizer("sgd", 0.01, factors, momentum=0.0)
        compile_model(model, optimizer=optimizer)
        model.train_on_batch(x, y)
        base = model.get_layer("backbone")
        moved[spread] = {
            name: float(np.abs(keras.ops.convert_to_numpy(base.get_layer(name).kernel) - before).sum())
            for name, before in (("block4_conv1", start_kernel(model, start, "block4_conv1")),
                                 ("block5_conv1", start_kernel(model, start, "block5_conv1")))
        }
    assert moved[1.0]["block4_conv1"] > 0 and moved[1.0]["block5_conv1"] > 0
    assert moved[100.0]["block4_conv1"] == pytest.approx(moved[1.0]["block4_conv1"] / 100.0, rel=1e-3)
    assert moved[100.0]["block5_conv1"] == pytest.approx(moved[1.0]["block5_conv1"], rel=1e-3)


def start_kernel(model, weights, layer_name):
    """The starting value of a backbone layer's kernel, found by position in ``model.weights``."""
    kernel = model.get_layer("backbone").get_layer(layer_name).kernel
    index = next(i for i, w in enumerate(model.weights) if w is kernel)
    return weights[index]


def test_a_phase_stops_after_patience_epochs_without_improvement_and_keeps_the_best_weights(tmp_path):
    """The recorder on constructed epoch logs: history.csv after every epoch, best weights and early stop."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    recorder = _Recorder(monitor="val_auc", patience=2, out_dir=tmp_path, verbose=False, total=5)
    callback = _PhaseCallback(recorder, "finetune")
    callback.set_model(model)
    model.compile(optimizer="sgd", loss="mse")
    values = [0.60, 0.70, 0.65, 0.68]
    kernels = []
    for epoch, value in enumerate(values):
        model.layers[0].kernel.assign(np.full((2, 1), float(epoch), "float32"))
        kernels.append(float(epoch))
        callback.on_epoch_end(epoch, {"loss": 1.0 - value, "val_loss": 1.0 - value, "val_auc": value})
        written = pd.read_csv(tmp_path / "history.csv")
        assert len(written) == epoch + 1  # rewritten after every epoch
        assert model.stop_training is (epoch == 3)
    assert recorder.best_epoch == 2 and recorder.best_value == pytest.approx(0.70)
    model.set_weights(recorder.best_weights)
    assert float(keras.ops.convert_to_numpy(model.layers[0].kernel)[0, 0]) == kernels[1]
    saved = keras.saving.load_model(tmp_path / "checkpoint.keras", compile=False)
    assert float(saved.get_weights()[0][0, 0]) == kernels[1]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_monitor_missing_from_the_logs_is_named():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    callback = _PhaseCallback(_Recorder(monitor="val_auc", patience=None, out_dir=None, verbose=False, total=1),
                              "head")
    callback.set_model(model)
    with pytest.raises(InputError, match=r"monitored quantity 'val_auc' is not in the training logs \(loss\)"):
        callback.on_epoch_end(0, {"loss": 0.5})


def test_data_that_does_not_fit_the_model_is_refused_before_training():
    config = FineTuneConfig(backbone="vgg16", weights=None, head_epochs=1, finetune_epochs=0, input_size=32)
    keras.backend.clear_session()
    model = build_for_config(config, "binary", (32, 32, 1))
    x = np.zeros((4, 40, 40, 1), "float32")
    y = np.array([0, 1, 0, 1], "float32")
    with pytest.raises(InputError, match=r"train: the images are 40x40x1 but the model takes 32x32x1"):
        fit_two_phases(model, (x, y), (x, y), config, verbose=False)
    with pytest.raises(InputError, match=r"input_size=32 but the data are 40x40"):
        build_for_config(config, "binary", (40, 40, 1))
    with pytest.raises(InputError, match=r"FineTuneConfig.monitor='val_auc' is not recorded for task 'regression'"):
        fit_two_phases(model, (x[:, :32, :32], y), (x[:, :32, :32], y), config.replace(monitor="val_auc"),
                       task="regression", verbose=False)
    with pytest.raises(InputError, match=r"class_weighting='balanced' applies to binary and multiclass"):
        fit_two_phases(model, (x[:, :32, :32], np.zeros((4, 2))), (x[:, :32, :32], np.zeros((4, 2))),
                       config.replace(class_weighting="balanced", monitor="val_loss"),
                       task=_multilabel_spec(), verbose=False)
    with pytest.raises(InputError, match=r"task='multiclass' needs classes"):
        fine_tune((x, y), (x, y), config=config, task="multiclass")


def _multilabel_spec():
    from tl_radiology.models import TaskSpec

    return TaskSpec("multilabel", 2)


def test_numpy_arrays_train_end_to_end_with_augmentation_reproducibly(tmp_path):
    """Arrays instead of tf.data: batched and shuffled inside, augmented training; one seed, one training."""
    rng = np.random.default_rng(1)
    x = rng.random((24, 32, 32, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > np.median(x.mean(axis=(1, 2, 3)))).astype("float32")
    config = FineTuneConfig(backbone="vgg16", weights=None, head_epochs=2, finetune_epochs=0, batch_size=8,
                            augmentation=1.0, flip="horizontal", monitor="val_loss")
    keras.backend.clear_session()
    result = fine_tune((x, y), (x, y), config=config, task="binary", classes=("normal", "pneumonia"),
                       out_dir=tmp_path, verbose=False)
    assert result.history["phase"].tolist() == ["head", "head"]
    assert result.trainable_params == {"head": 513}
    assert result.best_epoch == int(result.history.loc[result.history["val_loss"].idxmin(), "epoch"])
    assert result.to_trained_model().positive_class == "pneumonia"
    # The same seed gives the same training, augmentation included.
    keras.backend.clear_session()
    again = fine_tune((x, y), (x, y), config=config, task="binary", verbose=False)
    assert again.history["loss"].tolist() == result.history["loss"].tolist()



@pytest.mark.parametrize("task", ["regression", "multilabel"])
def test_regression_and_multilabel_targets_train_and_predict_in_their_shapes(task):
    rng = np.random.default_rng(3)
    x = rng.random((8, 32, 32, 1)).astype("float32")
    if task == "regression":
        y, classes, shape = rng.normal(size=8).astype("float32"), None, (8,)  # as encode_labels gives (N,)
    else:
        y, classes, shape = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2, 0, 1]], ["a", "b", "c"], (8, 3)
        y[0, 2] = 1.0  # two findings in one case
    config = FineTuneConfig(backbone="vgg16", weights=None, head_epochs=1, finetune_epochs=0, batch_size=4)
    keras.backend.clear_session()
    result = fine_tune((x, y), (x, y), config=config, task=task, classes=classes, verbose=False)
    assert result.monitor == ("val_loss" if task == "regression" else "val_auc")
    assert math.isfinite(result.history[result.monitor].iloc[0])
    assert result.to_trained_model().predict_proba(x).shape == shape
