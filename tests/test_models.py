"""Models: preprocessing inside the model, input adapters (replicate / projection / stem), heads, save and load."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tl_radiology import InputError, OptionError
from tl_radiology.backbones import build_backbone, get_backbone
from tl_radiology.models import (
    BackbonePreprocess,
    TaskSpec,
    adapt_input_conv,
    build_model,
    compile_model,
    model_info,
    unfreeze_layer_groups,
)
from tl_radiology.models._layers import preprocess_constants


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    yield
    keras.backend.clear_session()


def _random_weights_file(tmp_path, backbone, seed=0):
    """A weights file of the 3-channel backbone with random values everywhere (BatchNorm statistics included)."""
    return _random_backbone(tmp_path, backbone, seed)[0]


def _random_backbone(tmp_path, backbone, seed=0):
    """``(path, model)``: the 3-channel backbone at its minimum size with random weights, and their file."""
    spec = get_backbone(backbone)
    model = build_backbone(backbone, input_shape=(spec.min_size, spec.min_size, 3))
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        dtype = np.dtype(variable.dtype)
        if dtype.kind != "f":
            continue
        name = variable.path.rsplit("/", 1)[-1]
        if "variance" in name or "gamma" in name:
            value = rng.uniform(0.5, 1.5, variable.shape)
        elif "kernel" in name:
            value = np.asarray(variable) * rng.uniform(0.8, 1.2, variable.shape)  # keep Glorot's scale
        else:
            value = rng.normal(0.0, 0.1, variable.shape)
        variable.assign(value.astype(dtype))
    path = tmp_path / f"{backbone}_random.weights.h5"
    model.save_weights(path)
    return path, model


def _gray_images(size, n=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 1)).astype("float32")


def _first_conv_output(base, x):
    """Output of a backbone's first convolution (found by structure): where input handling shows most directly."""
    first = next(layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D))
    return np.asarray(keras.Model(base.input, first.output)(x))


def _assert_close(actual, expected, rtol=1e-4):
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = max(np.abs(expected).max(), 1e-6)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


# ------------------------------------------------------------------------------------------ preprocessing

@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_preprocess_layer_equals_keras_preprocess_input_on_0_255(mode):
    x = np.random.default_rng(0).uniform(0, 1, (2, 5, 5, 3)).astype("float32")
    expected = keras.applications.imagenet_utils.preprocess_input(x * 255.0, mode=mode)
    np.testing.assert_allclose(np.asarray(BackbonePreprocess(mode)(x)), expected, rtol=1e-5, atol=1e-4)


def test_preprocess_constants_for_other_channel_counts():
    scale, offset, reverse = preprocess_constants("caffe", 1)
    assert not reverse and scale.tolist() == [255.0]
    np.testing.assert_allclose(offset, [-np.mean([103.939, 116.779, 123.68])], rtol=1e-6)
    scale, offset, _ = preprocess_constants("torch", 4)
    np.testing.assert_allclose(scale, 1 / np.array([0.229, 0.224, 0.225, 0.229]), rtol=1e-6)
    with pytest.raises(OptionError, match=r"Unknown preprocess mode 'bgr'"):
        preprocess_constants("bgr")


# ------------------------------------------------------------------------------------------ adapters

def test_adapt_input_conv_sums_repeats_and_rescales():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 8))
    np.testing.assert_allclose(adapt_input_conv(kernel, 1)[:, :, 0], kernel.sum(axis=2))
    np.testing.assert_array_equal(adapt_input_conv(kernel, 3), kernel)
    five = adapt_input_conv(kernel, 5)
    assert five.shape == (3, 3, 5, 8)
    for channel in range(5):
        np.testing.assert_allclose(five[:, :, channel], kernel[:, :, channel % 3] * 3 / 5)
    # Six equal channels respond like one gray channel to the summed kernel: 6 * 3/6 = once per RGB slice.
    np.testing.assert_allclose(adapt_input_conv(kernel, 6).sum(axis=2), kernel.sum(axis=2))
    before = kernel.copy()
    adapt_input_conv(kernel, 2)
    np.testing.assert_array_equal(kernel, before)  # input untouched
    with pytest.raises(InputError, match=r"expects a kernel \(kh, kw, 3, filters\); received shape \(3, 3, 4, 8\)"):
        adapt_input_conv(np.zeros((3, 3, 4, 8)), 1)


# caffe, torch, and torch built into ConvNeXt: per-channel preprocessing, so the equivalence holds at the backbone
# (the tf family is checked on the whole model below, EfficientNet's learned constants further down).
@pytest.mark.parametrize("backbone", ["vgg16", "densenet121", "convnext_tiny"])
def test_stem_backbone_on_gray_equals_original_backbone_on_replicated_gray(tmp_path, backbone):
    spec = get_backbone(backbone)
    size = spec.min_size
    weights, rgb_base = _random_backbone(tmp_path, backbone)
    if spec.builtin_preprocess in ("tf", "torch"):
        # A C-channel stem is built without the backbone's own preprocessing (our layer applies it): compare with
        # the original backbone built the same way.
        rgb_base = build_backbone(backbone, (size, size, 3), weights=weights, include_preprocessing=False)
    stem = build_model(backbone, input_shape=(size, size, 1), adapter="stem", weights=weights)
    stem_base = stem.get_layer("backbone")
    assert stem_base.input.shape[-1] == 1 and rgb_base.input.shape[-1] == 3
    gray = np.asarray(stem.get_layer("preprocess")(_gray_images(size)))  # a preprocessed gray image
    rgb = np.repeat(gray, 3, axis=-1)
    _assert_close(_first_conv_output(stem_base, gray), _first_conv_output(rgb_base, rgb))
    expected = np.asarray(rgb_base(rgb, training=False))
    _assert_close(stem_base(gray, training=False), expected)
    assert np.abs(expected).max() > 0


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "mobilenet_v3_small"])  # tf, and none with built-in tf
def test_full_stem_model_equals_full_replicate_model_for_per_channel_identical_preprocessing(tmp_path, backbone):
    size = get_backbone(backbone).min_size
    weights = _random_weights_file(tmp_path, backbone)
    stem = build_model(backbone, input_shape=(size, size, 1), adapter="stem", weights=weights, task="regression")
    replicate = build_model(backbone, input_shape=(size, size, 1), adapter="replicate", weights=weights,
                            task="regression")
    replicate.get_layer("predictions").set_weights(stem.get_layer("predictions").get_weights())
    images = _gray_images(size)
    expected = np.asarray(replicate(images))
    _assert_close(stem(images), expected)
    assert model_info(stem)["adapter"] == "stem" and model_info(stem)["preprocess"] == "tf"


def test_stem_adapts_efficientnet_normalization_exactly(tmp_path):
    """EfficientNet keeps its ImageNet mean/std as Normalization weights: they are spread like the kernel."""
    _, rgb = _random_backbone(tmp_path, "efficientnet_b0")
    norm = next(layer for layer in rgb.layers if isinstance(layer, keras.layers.Normalization))
    norm.adapt_mean.assign(np.array([0.485, 0.456, 0.406], "float32"))  # distinct per channel, as ImageNet's
    norm.adapt_variance.assign(np.array([0.229, 0.224, 0.225], "float32") ** 2)
    norm.finalize_state()
    weights = tmp_path / "efficientnet_b0_imagenet_like.weights.h5"
    rgb.save_weights(weights)
    stem = build_model("efficientnet_b0", input_shape=(32, 32, 1), adapter="stem", weights=weights)
    mean, variance = (np.asarray(w, dtype=np.float64) for w in norm.get_weights()[:2])
    scale, offset = 1 / np.sqrt(variance), -mean / np.sqrt(variance)
    gray = _gray_images(32) * 255.0  # the backbone's own input: 0..255
    # The RGB input whose normalised channels all equal the stem's normalised gray channel.
    target = scale.mean() * gray / 255.0 + offset.mean()
    rgb_input = (255.0 * (target - offset) / scale).astype("float32")
    stem_base = stem.get_layer("backbone")
    _assert_close(_first_conv_output(stem_base, gray), _first_conv_output(rgb, rgb_input))
    expected = np.asarray(rgb(rgb_input, training=False))
    _assert_close(stem_base(gray, training=False), expected)


def test_stem_with_four_channels_builds_a_four_channel_backbone(tmp_path):
    weights, rgb = _random_backbone(tmp_path, "vgg16")
    model = build_model("vgg16", input_shape=(32, 32, 4), adapter="stem", weights=weights)
    base = model.get_layer("backbone")
    kernel = base.get_layer("block1_conv1").kernel
    assert tuple(kernel.shape) == (3, 3, 4, 64)
    original = rgb.get_layer("block1_conv1").kernel
    np.testing.assert_allclose(np.asarray(kernel)[:, :, 3], np.asarray(original)[:, :, 0] * 3 / 4, rtol=1e-6)
    assert model(np.random.rand(1, 32, 32, 4).astype("float32")).shape == (1, 1)


def test_projection_adapter_starts_as_replicate_and_trains(tmp_path):
    weights = _random_weights_file(tmp_path, "vgg16")
    projection = build_model("vgg16", input_shape=(32, 32, 1), adapter="projection", weights=weights)
    replicate = build_model("vgg16", input_shape=(32, 32, 1), adapter="replicate", weights=weights)
    replicate.get_layer("predictions").set_weights(projection.get_layer("predictions").get_weights())
    images = _gray_images(32)
    _assert_close(projection(images), replicate(images))

    four = build_model("vgg16", input_shape=(32, 32, 4), adapter="projection", weights=weights)
    adapter = four.get_layer("adapter")
    assert adapter.output.shape == (None, 32, 32, 3)
    x = tf.constant(np.random.rand(2, 32, 32, 4).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(four(x, training=True))
    gradient = tape.gradient(loss, adapter.kernel.value)
    assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0


def test_replicate_refuses_other_channel_counts_suggesting_the_other_adapters():
    with pytest.raises(InputError, match=r"adapter='replicate' copies 1 gray channel .*received 4 channels\. "
                                         r"Use adapter='projection' .* or adapter='stem'"):
        build_model("vgg16", input_shape=(32, 32, 4), adapter="replicate")
    with pytest.raises(OptionError, match=r"Unknown adapter 'stme'\. Did you mean 'stem'\?"):
        build_model("vgg16", input_shape=(32, 32, 1), adapter="stme")
    with pytest.raises(InputError, match=r"vgg16 needs inputs of at least 32×32 pixels; received 28×28"):
        build_model("vgg16", input_shape=(28, 28, 1))


# ------------------------------------------------------------------------------------------ heads

HEADS = [
    ("binary", None, 1, "sigmoid", keras.losses.BinaryCrossentropy, ["accuracy", "auc"]),
    ("multiclass", 3, 3, "softmax", keras.losses.SparseCategoricalCrossentropy, ["accuracy", "auc"]),
    ("multilabel", 4, 4, "sigmoid", keras.losses.BinaryCrossentropy, ["accuracy", "auc"]),
    ("regression", 1, 1, "linear", keras.losses.MeanSquaredError, ["mae", "rmse"]),
]


def _labels(task, n, seed=0):
    """Labels as the data pipeline encodes them (docs/ARCHITECTURE.md, "Label encoding")."""
    rng = np.random.default_rng(seed)
    return {
        "binary": np.tile([0.0, 1.0], n // 2).astype("float32"),
        "multiclass": np.arange(n, dtype="int64") % 3,
        "multilabel": rng.integers(0, 2, (n, 4)).astype("float32"),
        "regression": rng.normal(size=n).astype("float32"),
    }[task]


@pytest.mark.parametrize("task, num_classes, units, activation, loss_type, metrics", HEADS)
def test_heads_have_the_task_activation_loss_and_metrics_and_train(task, num_classes, units, activation,
                                                                    loss_type, metrics):
    spec = TaskSpec(task, num_classes)
    model = build_model("vgg16", input_shape=(32, 32, 1), task=spec, dropout=0.2, dense_units=8, l2=1e-4)
    out = model.get_layer("predictions")
    assert out.activation.__name__ == activation and model.output.shape == (None, units)
    compile_model(model, learning_rate=1e-3)
    model.run_eagerly = True  # tiny data: tracing the train step would cost more than the steps
    assert isinstance(model.loss, loss_type)
    history = model.fit(_gray_images(32, n=8), _labels(task, 8), epochs=2, batch_size=4, verbose=0).history
    assert sorted(history) == sorted(["loss"] + metrics)
    assert all(np.isfinite(history["loss"])) and all(np.isfinite(history[metrics[1]]))
    assert len(model.losses) == 2  # L2 on the dense and the output kernels
    if task == "multiclass":
        np.testing.assert_allclose(np.asarray(model(_gray_images(32))).sum(axis=1), 1.0, rtol=1e-5)


def test_multiclass_auc_is_the_macro_one_vs_rest_auc_of_integer_labels():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = np.arange(30) % 3
    scores = rng.dirichlet(np.ones(3), 30).astype("float32")
    scores[np.arange(30), labels] += rng.uniform(0, 0.5, 30).astype("float32")
    scores /= scores.sum(axis=1, keepdims=True)
    metric = TaskSpec("multiclass", 3).make_metrics()[1]
    metric.update_state(labels, scores)
    assert float(metric.result()) == pytest.approx(roc_auc_score(labels, scores, multi_class="ovr"), abs=5e-3)
    smoothed = TaskSpec("multiclass", 3).make_loss(label_smoothing=0.1)
    plain = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)
    assert float(smoothed(labels, scores)) == pytest.approx(float(plain(np.eye(3)[labels], scores)), rel=1e-5)


def test_task_spec_validates_sizes_and_labels():
    assert TaskSpec("binary").units == 1 and TaskSpec("binary").num_classes == 2
    assert TaskSpec("regression", loss="mae").make_loss().name == "mean_absolute_error"
    assert TaskSpec("multilabel", 3).make_metrics()[1].multi_label is True
    with pytest.raises(InputError, match=r"task='multiclass' needs num_classes \(the number of classes, at least 2\)"):
        TaskSpec("multiclass")
    with pytest.raises(InputError, match=r"task='binary' has 2 classes .* Use task='multiclass'"):
        TaskSpec("binary", 3)
    with pytest.raises(OptionError, match=r"Unknown task 'multiclas'\. Did you mean 'multiclass'"):
        TaskSpec("multiclas", 3)
    with pytest.raises(InputError, match=r"task='binary' uses the loss 'binary_crossentropy'; received loss='mae'"):
        TaskSpec("binary", loss="mae")


def test_compile_model_optimizers_by_name():
    model = build_model("vgg16", input_shape=(32, 32, 3), task="binary")
    compile_model(model, optimizer="sgd", learning_rate=0.01, nesterov=True)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert model.optimizer.nesterov and model.optimizer.momentum == 0.9
    assert np.isclose(float(model.optimizer.learning_rate), 0.01)
    compile_model(model, optimizer="AdamW", weight_decay=1e-3)
    assert isinstance(model.optimizer, keras.optimizers.AdamW) and model.optimizer.weight_decay == 1e-3
    with pytest.raises(OptionError, match=r"Unknown optimizer 'adan'\. Did you mean 'adam'"):
        compile_model(model, optimizer="adan")
    with pytest.raises(InputError, match=r"outputs 1 values but task 'multiclass' with num_classes=3 needs 3"):
        compile_model(model, TaskSpec("multiclass", 3))
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(InputError, match=r"compile_model needs task_spec for model .*pass TaskSpec\(task, "):
        compile_model(plain)


# ------------------------------------------------------------------------------------------ model record, BN, save

def test_model_records_what_it_was_built_from(tmp_path):
    weights = _random_weights_file(tmp_path, "vgg16")
    model = build_model("vgg16", input_shape=(32, 32, 1), task="multiclass", num_classes=3, adapter="stem",
                        weights=weights, pooling="max")
    info = model_info(model)
    assert info["backbone"] == "vgg16" and info["adapter"] == "stem" and info["input_shape"] == [32, 32, 1]
    assert info["task"] == {"task": "multiclass", "num_classes": 3, "loss": None} and info["num_classes"] == 3
    assert info["weights"]["source"] == "file" and info["weights"]["file"] == str(weights.resolve())
    assert info["pooling"] == "max" and info["preprocess"] == "caffe" and info["batchnorm"] == "frozen"
    import json

    json.dumps(info)  # JSON-able for model.json
    with pytest.raises(InputError, match=r"No build record for model"):
        model_info(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))


def test_pretrained_batchnorm_stays_in_inference_mode_while_fine_tuning(tmp_path):
    weights = _random_weights_file(tmp_path, "mobilenet_v2")
    model = build_model("mobilenet_v2", input_shape=(32, 32, 1), weights=weights)
    assert unfreeze_layer_groups(model, 1) == ["top"]
    compile_model(model, learning_rate=0.1)
    model.run_eagerly = True
    base = model.get_layer("backbone")
    bn, top_conv, stem_conv = (base.get_layer(n) for n in ("Conv_1_bn", "Conv_1", "Conv1"))
    before = [np.asarray(v).copy() for v in (bn.moving_mean, top_conv.kernel, stem_conv.kernel)]
    model.fit(_gray_images(32, n=4), np.array([[0.0], [1.0], [0.0], [1.0]]), epochs=1, verbose=0)
    after = [np.asarray(v) for v in (bn.moving_mean, top_conv.kernel, stem_conv.kernel)]
    np.testing.assert_array_equal(after[0], before[0])  # statistics untouched
    assert np.abs(after[1] - before[1]).max() > 0  # the unfrozen group trained
    np.testing.assert_array_equal(after[2], before[2])  # the frozen group did not
    with pytest.raises(InputError, match=r"num_groups to be an integer from 0 to 6 or 'all' for mobilenet_v2"):
        unfreeze_layer_groups(model, 7)


def test_saved_model_with_preprocessing_layers_reloads_with_identical_predictions(tmp_path):
    weights = _random_weights_file(tmp_path, "vgg16")
    model = build_model("vgg16", input_shape=(32, 32, 1), adapter="stem", weights=weights,
                        task="multiclass", num_classes=3, dense_units=4)
    compile_model(model)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)  # safe_mode: only registered, serializable layers
    images = _gray_images(32, n=3)
    np.testing.assert_array_equal(np.asarray(reloaded(images)), np.asarray(model(images)))
    assert reloaded.get_layer("preprocess").get_config() == model.get_layer("preprocess").get_config()
    assert reloaded.get_layer("backbone").input.shape[-1] == 1
