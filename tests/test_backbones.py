"""The backbone registry: records, lookups, wildcards, input-size checks, and the weights routes (all offline)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from tl_radiology import InputError, OptionError, WeightsNotAvailableError
from tl_radiology.backbones import (
    PREPROCESS_MODES,
    BackboneSpec,
    build_backbone,
    get_backbone,
    import_weights,
    keras_cache_dir,
    list_backbones,
    register_backbone,
    resolve_weights,
    weights_identity,
    weights_status,
)
from tl_radiology.backbones import _registry

REQUIRED = [
    "vgg16", "vgg19", "resnet50", "resnet101", "resnet152", "resnet50v2", "resnet101v2", "resnet152v2",
    "inception_v3", "inception_resnet_v2", "xception", "densenet121", "densenet169", "densenet201",
    "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "efficientnet_b1",
    "efficientnet_b2", "efficientnet_b3", "efficientnetv2_b0", "convnext_tiny",
]


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    yield
    keras.backend.clear_session()


@pytest.fixture
def empty_keras_cache():
    """Keras' cache folder (the test session's KERAS_HOME/models), emptied before and after the test."""
    folder = keras_cache_dir()
    assert str(folder).startswith(os.environ["KERAS_HOME"]), "tests must not touch the user's ~/.keras"

    def clear():
        if folder.is_dir():
            for path in folder.iterdir():
                path.unlink()

    clear()
    yield folder
    clear()


def _randomize(model, seed=0):
    """Give every variable random values (not Keras' zeros/ones initial values), so copies can be told apart."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape, dtype = variable.shape, np.dtype(variable.dtype)
        if dtype.kind != "f":
            continue
        name = variable.path.rsplit("/", 1)[-1]
        if "variance" in name or "gamma" in name:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.1, shape)
        variable.assign(value.astype(dtype))
    return model


def _save_keras_published_layout(model, path):
    """Write weights in the layout of Keras' published ``*_notop.h5`` files (Keras' legacy HDF5 writer)."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as fh:
        legacy_h5_format.save_weights_to_hdf5_group(fh, model)
    return path


# ----------------------------------------------------------------------------------------------------- registry

def test_every_required_backbone_is_registered_with_consistent_facts():
    names = list_backbones()
    assert set(REQUIRED) <= set(names)
    for name in names:
        spec = get_backbone(name)
        assert spec.name == name
        assert spec.preprocess in PREPROCESS_MODES
        assert spec.min_size <= spec.default_size
        assert spec.weights_file and (spec.weights_package or spec.weights_url.endswith(spec.weights_file))
        assert spec.weights_hash is None or re.fullmatch(r"[0-9a-f]{32}|[0-9a-f]{64}", spec.weights_hash)
        assert spec.doc and "Default input" in spec.doc, f"{name}'s docstring must state its default input size"


def test_registry_facts_match_keras_conventions():
    assert get_backbone("vgg16").preprocess == "caffe"
    assert get_backbone("resnet50").preprocess == "caffe"
    assert get_backbone("resnet50v2").preprocess == "tf"
    assert get_backbone("inception_v3").preprocess == "tf"
    assert get_backbone("densenet121").preprocess == "torch"
    for name in ("efficientnet_b0", "efficientnetv2_b0", "convnext_tiny", "mobilenet_v3_small"):
        assert get_backbone(name).preprocess == "none", name
    assert get_backbone("inception_v3").min_size == 75 and get_backbone("inception_v3").default_size == 299
    assert get_backbone("xception").min_size == 71
    assert get_backbone("vgg16").group_names == ("block1", "block2", "block3", "block4", "block5")
    assert get_backbone("resnet50").group_names == ("conv1", "conv2", "conv3", "conv4", "conv5")
    assert get_backbone("densenet121").group_names == ("conv1", "conv2", "conv3", "conv4", "conv5")
    assert get_backbone("inception_v3").group_names == tuple(f"mixed{i}" for i in range(11))
    assert get_backbone("resnet50").weights_file == "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert get_backbone("efficientnetv2_b0").weights_file == "efficientnetv2-b0_notop.h5"


def test_list_backbones_takes_wildcards():
    assert list_backbones("dense*") == ["densenet121", "densenet169", "densenet201"]
    assert list_backbones("resnet*v2") == ["resnet101v2", "resnet152v2", "resnet50v2"]
    assert list_backbones("EFFICIENTNET_B?") == ["efficientnet_b0", "efficientnet_b1", "efficientnet_b2",
                                                 "efficientnet_b3"]
    assert list_backbones("nothing*") == []


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(OptionError, match=r"Unknown backbone 'resnet5O'\. Did you mean 'resnet50'.*Available: .*vgg16"):
        get_backbone("resnet5O")
    with pytest.raises(OptionError, match=r"Did you mean 'densenet121'"):
        build_backbone("densenet12l")


def test_register_backbone_refuses_duplicates_and_misnamed_functions():
    spec = get_backbone("vgg16")
    with pytest.raises(InputError, match=r"Backbone 'vgg16' is already registered\. .*replace=True"):
        register_backbone(spec)

    def my_backbone():
        return spec

    with pytest.raises(InputError, match=r"function 'my_backbone' returns a spec named 'vgg16'"):
        register_backbone(my_backbone)
    with pytest.raises(OptionError, match=r"Unknown preprocess mode of backbone 'tiny' 'rgb'"):
        BackboneSpec(name="tiny", constructor=keras.applications.VGG16, preprocess="rgb", default_size=32,
                     min_size=32, feature_dim=512, layer_groups=(("all", ".*"),), last_conv_layer=None)


def test_register_backbone_decorator_adds_a_user_backbone():
    @register_backbone
    def tiny_vgg():
        """Tiny VGG for this test. Default input 32x32; caffe preprocessing."""
        return BackboneSpec(
            name="tiny_vgg", constructor=keras.applications.VGG16, preprocess="caffe", default_size=32,
            min_size=32, feature_dim=512, layer_groups=(("features", r"^block"),), last_conv_layer="block5_conv3",
        )

    try:
        assert "tiny_vgg" in list_backbones("tiny*")
        assert get_backbone("tiny_vgg").doc.startswith("Tiny VGG for this test.")
        assert build_backbone("tiny_vgg").output.shape == (None, 1, 1, 512)
    finally:
        _registry._REGISTRY.pop("tiny_vgg", None)


def test_input_smaller_than_minimum_names_both_sizes_and_the_fix():
    with pytest.raises(InputError, match=re.escape(
        "inception_v3 needs inputs of at least 75×75 pixels; received 32×32. Use input_size >= 75 or a backbone "
        "with a smaller minimum such as resnet50 (32)."
    )):
        build_backbone("inception_v3", input_shape=(32, 32, 3))
    with pytest.raises(InputError, match=r"resnet50 needs inputs of at least 32×32 pixels; received 64×16"):
        build_backbone("resnet50", input_shape=(64, 16, 3))
    with pytest.raises(InputError, match=r"Expected input_shape to be \(height, width, channels\)"):
        build_backbone("resnet50", input_shape=(64, 64))


def test_build_backbone_gives_feature_maps_without_top_and_groups_in_order():
    base = build_backbone("vgg16", input_shape=(64, 48, 1))
    assert base.output.shape == (None, 2, 1, 512)
    groups = get_backbone("vgg16").assign_layer_groups(base)
    assert [layer.name for layer in groups["block5"]] == ["block5_conv1", "block5_conv2", "block5_conv3",
                                                           "block5_pool"]
    assert sum(len(layers) for layers in groups.values()) == len(base.layers) - 1  # all but the input layer


# ----------------------------------------------------------------------------------------------------- weights

def test_weights_file_route_gives_identical_outputs(tmp_path):
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    original = _randomize(build_backbone("mobilenet_v2", input_shape=(32, 32, 3)))
    path = tmp_path / "mine.weights.h5"
    original.save_weights(path)
    loaded = build_backbone("mobilenet_v2", input_shape=(32, 32, 3), weights=str(path))
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(original(x)))
    fresh = build_backbone("mobilenet_v2", input_shape=(32, 32, 3))
    assert not np.allclose(np.asarray(fresh(x)), np.asarray(original(x)))  # the file really changed the weights


def test_imagenet_without_local_file_fails_with_the_import_command(empty_keras_cache):
    spec = get_backbone("resnet50")
    with pytest.raises(WeightsNotAvailableError, match=(
        r"ImageNet weights for resnet50 are not available offline: resnet50_weights_tf_dim_ordering_tf_kernels_"
        r"notop\.h5 is not in Keras' cache folder .*models\..*`tl-radiology weights import "
        r"resnet50_weights_tf_dim_ordering_tf_kernels_notop\.h5 --backbone resnet50`"
    )):
        build_backbone("resnet50", input_shape=(32, 32, 3), weights="imagenet")
    assert not (empty_keras_cache / spec.weights_file).exists()  # nothing was downloaded or created
    row = next(r for r in weights_status("resnet50") if r["backbone"] == "resnet50")
    assert row["present"] is False and row["size"] is None and row["hash_ok"] is None
    assert row["path"] == str(empty_keras_cache / spec.weights_file)


def test_import_weights_then_imagenet_resolves_to_it(tmp_path, empty_keras_cache):
    x = np.random.default_rng(2).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    original = _randomize(build_backbone("vgg16", input_shape=(32, 32, 3)))
    source = tmp_path / "vgg16_converted.weights.h5"
    original.save_weights(source)

    result = import_weights(source, "vgg16")
    target = empty_keras_cache / get_backbone("vgg16").weights_file
    assert result["path"] == str(target) and target.is_file()
    assert result["converted"] is True  # a .weights.h5 file is rewritten in Keras' published layout
    assert result["published_hash_ok"] is False  # random weights are not Keras' file, and it says so

    imagenet = build_backbone("vgg16", input_shape=(32, 32, 3), weights="imagenet")
    np.testing.assert_allclose(np.asarray(imagenet(x)), np.asarray(original(x)), rtol=1e-6, atol=1e-5)

    identity = weights_identity("imagenet", "vgg16")
    assert identity["source"] == "imagenet" and identity["file"] == str(target)
    assert identity["published_hash_ok"] is False and len(identity["sha256"]) == 64
    row = weights_status("vgg16")[0]
    assert row["present"] is True and row["size"] == target.stat().st_size and row["hash_ok"] is False


def test_import_of_a_published_layout_file_is_a_byte_copy_and_refuses_silent_replacement(tmp_path,
                                                                                       empty_keras_cache):
    original = _randomize(build_backbone("vgg16", input_shape=(32, 32, 3)), seed=3)
    source = _save_keras_published_layout(original, tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    result = import_weights(source, "vgg16")
    assert result["converted"] is False
    assert Path(result["path"]).read_bytes() == source.read_bytes()
    assert import_weights(source, "vgg16")["unchanged"] is True

    other = _save_keras_published_layout(_randomize(build_backbone("vgg16", (32, 32, 3)), seed=4),
                                         tmp_path / "other.h5")
    with pytest.raises(InputError, match=r"already holds a different vgg16 weights file\. .*--overwrite"):
        import_weights(other, "vgg16")
    assert import_weights(other, "vgg16", overwrite=True)["replaced"] is True
    assert Path(result["path"]).read_bytes() == other.read_bytes()


def test_weights_of_another_backbone_are_refused_naming_the_mismatch(tmp_path, empty_keras_cache):
    vgg19 = build_backbone("vgg19", input_shape=(32, 32, 3))
    keras3_file = tmp_path / "vgg19.weights.h5"
    vgg19.save_weights(keras3_file)
    with pytest.raises(InputError, match=(
        r"Weights file .*vgg19\.weights\.h5 does not fit backbone vgg16: variable block\d_conv\d/kernel expects "
        r"shape \(3, 3, \d+, \d+\), the file has \(3, 3, \d+, \d+\)( \(\d+ layers do not load\))?\. "
        r"Expected a no-top weights file of vgg16"
    )):
        import_weights(keras3_file, "vgg16")
    published_layout = _save_keras_published_layout(vgg19, tmp_path / "vgg19_notop.h5")
    with pytest.raises(InputError, match=r"does not fit backbone vgg16: Layer count mismatch .*expected 13 "):
        build_backbone("vgg16", input_shape=(32, 32, 3), weights=published_layout)
    gray_vgg16 = _save_keras_published_layout(build_backbone("vgg16", (32, 32, 1)), tmp_path / "gray_notop.h5")
    with pytest.raises(InputError, match=(
        r"does not fit backbone vgg16: variable block1_conv1/kernel expects shape \(3, 3, 3, 64\), the file has "
        r"\(3, 3, 1, 64\)\."
    )):
        build_backbone("vgg16", input_shape=(32, 32, 3), weights=gray_vgg16)
    assert list(empty_keras_cache.glob("*")) == []  # nothing was imported


def test_a_file_lacking_variables_is_refused_even_where_keras_only_warns(tmp_path):
    small = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(64, 3, name="block1_conv1")])
    path = tmp_path / "partial.weights.h5"
    small.save_weights(path)
    with pytest.raises(InputError, match=(
        r"does not fit backbone vgg16: Layer 'block1_conv2' expected 2 variables, but received 0 .*"
        r"\(12 layers do not load\)"
    )):
        build_backbone("vgg16", input_shape=(32, 32, 3), weights=path)


def test_weights_option_errors_are_one_line_and_name_the_fix(tmp_path):
    with pytest.raises(OptionError, match=r"Unknown weights 'imagenett'\. Did you mean 'imagenet'\?"):
        resolve_weights("vgg16", "imagenett")
    with pytest.raises(InputError, match=r"Weights file .*missing\.h5 not found\. Expected 'imagenet', None"):
        resolve_weights("vgg16", tmp_path / "missing.h5")
    model_file = tmp_path / "model.keras"
    model_file.write_bytes(b"zip")
    with pytest.raises(InputError, match=r"is not an HDF5 weights file\. .*model\.save_weights"):
        resolve_weights("vgg16", model_file)
    with pytest.raises(InputError, match=r"Pretrained weights for vgg16 need 3 input channels; .*adapter='stem'"):
        build_backbone("vgg16", input_shape=(32, 32, 1), weights="imagenet")
    assert weights_identity(None) == {"source": "none", "file": None, "sha256": None, "published_hash_ok": None,
                                      "origin": None, "label": "random"}


def test_identity_of_a_file_records_its_sha256(tmp_path):
    path = tmp_path / "w.weights.h5"
    build_backbone("vgg16", input_shape=(32, 32, 3)).save_weights(path)
    import hashlib

    identity = weights_identity(str(path))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert identity == {"source": "file", "file": str(path.resolve()), "sha256": sha, "published_hash_ok": None,
                        "origin": None, "label": f"file:{sha}"}


def test_weights_status_reports_every_registered_backbone(empty_keras_cache):
    rows = weights_status()
    assert [row["backbone"] for row in rows] == list_backbones()
    assert all(row["present"] is False for row in rows)
    assert {row["file"] for row in rows} >= {"vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                             "convnext_tiny_notop.h5"}


def test_published_hash_match_is_reported(tmp_path, empty_keras_cache):
    import hashlib

    source = _save_keras_published_layout(_randomize(build_backbone("vgg16", (32, 32, 3))), tmp_path / "tiny.h5")

    @register_backbone
    def tiny_published():
        """VGG16 under another name, whose "published" hash is this test's file. Default input 32x32; caffe."""
        return BackboneSpec(
            name="tiny_published", constructor=keras.applications.VGG16, preprocess="caffe", default_size=32,
            min_size=32, feature_dim=512, layer_groups=(("features", r"^block"),), last_conv_layer="block5_conv3",
            weights_file="tiny_published_notop.h5", weights_hash=hashlib.md5(source.read_bytes()).hexdigest(),
        )

    try:
        assert import_weights(source, "tiny_published")["published_hash_ok"] is True
        assert weights_status("tiny_published")[0]["hash_ok"] is True
        assert weights_identity("imagenet", "tiny_published")["published_hash_ok"] is True
    finally:
        _registry._REGISTRY.pop("tiny_published", None)


def test_efficientnet_imagenet_build_matches_keras_own_imagenet_model(tmp_path, empty_keras_cache, monkeypatch):
    """Keras' ImageNet EfficientNet has an extra Rescaling that its weights=None build lacks; ours restores it."""
    from keras.src.applications import efficientnet

    original = _randomize(build_backbone("efficientnet_b0", (32, 32, 3)), seed=5)
    norm = next(layer for layer in original.layers if isinstance(layer, keras.layers.Normalization))
    norm.adapt_variance.assign(np.array([0.229, 0.224, 0.225], dtype="float32") ** 2)  # as in Keras' file
    source = _save_keras_published_layout(original, tmp_path / "efficientnetb0_notop.h5")
    import_weights(source, "efficientnet_b0")
    cached = str(empty_keras_cache / "efficientnetb0_notop.h5")
    # Keras' own weights="imagenet" path, with its download function pointed at the cached file (no network).
    monkeypatch.setattr(efficientnet.file_utils, "get_file", lambda *args, **kwargs: cached)
    keras_model = keras.applications.EfficientNetB0(include_top=False, weights="imagenet", input_shape=(32, 32, 3))
    ours = build_backbone("efficientnet_b0", (32, 32, 3), weights="imagenet")
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")

    def stem(model):  # the first convolution's output shows the input normalisation most directly
        return np.asarray(keras.Model(model.input, model.get_layer("stem_conv").output)(x))

    expected = stem(keras_model)
    np.testing.assert_allclose(stem(ours), expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    final = np.asarray(keras_model(x))
    np.testing.assert_allclose(np.asarray(ours(x)), final, rtol=0, atol=1e-4 * np.abs(final).max())
    as_a_file = build_backbone("efficientnet_b0", (32, 32, 3), weights=source)  # a path: loaded as Keras does
    assert np.abs(stem(as_a_file) - expected).max() > 0.1 * np.abs(expected).max()
