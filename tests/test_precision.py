"""The ``precision`` option (bfloat16 backbone) and the lazily built feature extractor.

Synthetic inputs at 32 px and random or test-written weights: what is checked is where bfloat16 is used and where
it is not, that outputs stay close to float32's, that the choice is recorded, saved and keyed in the cache, and
that a fully cached extraction builds no backbone.
"""

from __future__ import annotations

import numpy as np
import pytest

import keras

from tl_radiology import OptionError
from tl_radiology.models import build_model, model_info
from tl_radiology.training import BackboneFeatures, FineTuneConfig, TrainedModel


def _images(n=6, size=32, channels=1, seed=0):
    return np.random.default_rng(seed).random((n, size, size, channels), dtype=np.float32)


def test_mixed_bfloat16_computes_the_backbone_in_bfloat16_and_keeps_the_rest_float32():
    keras.utils.set_random_seed(1)
    reference = build_model("resnet50", input_shape=(32, 32, 1), task="binary", weights=None)
    mixed = build_model("resnet50", input_shape=(32, 32, 1), task="binary", weights=None,
                        precision="mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored after the build
    backbone = mixed.get_layer("backbone")
    convs = [layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and {layer.dtype_policy.name for layer in convs} == {"mixed_bfloat16"}
    assert all(w.dtype == "float32" for w in convs[0].weights)  # variables stay float32
    for name in ("preprocess", "pool"):
        assert mixed.get_layer(name).dtype_policy.name == "float32"
    assert model_info(mixed)["precision"] == "mixed_bfloat16" and model_info(reference)["precision"] == "float32"
    # Same weights, two precisions: the probability is float32 and close to float32's.
    mixed.set_weights(reference.get_weights())
    x = _images()
    p32 = reference.predict(x, verbose=0)
    p16 = mixed.predict(x, verbose=0)
    assert p16.dtype == np.float32
    assert np.max(np.abs(p16 - p32)) < 0.05, (p16.ravel(), p32.ravel())
    assert not np.array_equal(p16, p32)  # it really computed in another precision


def test_an_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(OptionError, match=r"precision.*'bfloat16'.*mixed_bfloat16"):
        build_model("vgg16", input_shape=(32, 32, 1), task="binary", weights=None, precision="bfloat16")
    with pytest.raises(OptionError, match=r"mixed_bfloat16"):
        FineTuneConfig(backbone="vgg16", precision="half")
    assert FineTuneConfig(backbone="vgg16").precision == "float32"


def test_a_saved_mixed_model_reloads_with_its_precision_and_predictions(tmp_path):
    keras.utils.set_random_seed(2)
    model = build_model("vgg16", input_shape=(32, 32, 1), task="binary", weights=None, precision="mixed_bfloat16")
    trained = TrainedModel.from_keras(model, classes=["normal", "pneumonia"])
    assert trained.precision == "mixed_bfloat16"
    x = _images()
    before = trained.predict_proba(x)
    trained.save(tmp_path / "model")
    again = TrainedModel.load(tmp_path / "model")
    assert again.precision == "mixed_bfloat16"
    assert again.model.get_layer("backbone").layers[1].dtype_policy.name == "mixed_bfloat16"
    assert np.allclose(again.predict_proba(x), before, atol=1e-6)


def test_a_fully_cached_extraction_builds_no_backbone_and_precisions_are_cached_apart(vgg_weights, tmp_path):
    cache = tmp_path / "features"
    x = _images(8)
    first = BackboneFeatures("vgg16", weights=vgg_weights, cache_dir=cache).fit(x[:1])
    assert first.cache_stats_.builds == 0  # fit builds nothing for a weights file
    f32 = first.transform(x)
    assert first.cache_stats_.builds == 1 and first.cache_stats_.misses == 8

    again = BackboneFeatures("vgg16", weights=vgg_weights, cache_dir=cache).fit(x[:1])
    assert np.array_equal(again.transform(x), f32)
    assert (again.cache_stats_.builds, again.cache_stats_.hits, again.cache_stats_.model_calls) == (0, 8, 0)

    mixed = BackboneFeatures("vgg16", weights=vgg_weights, cache_dir=cache, precision="mixed_bfloat16").fit(x[:1])
    assert mixed.extractor_key_ != first.extractor_key_
    f16 = mixed.transform(x)
    assert (mixed.cache_stats_.hits, mixed.cache_stats_.misses, mixed.cache_stats_.builds) == (0, 8, 1)
    assert f16.dtype == np.float32 and f16.shape == f32.shape == (8, 512)
    scale = np.abs(f32).mean()
    assert 0 < np.abs(f16 - f32).mean() < 0.05 * scale  # close to float32's, but not float32's


def test_model_is_built_on_first_read_and_an_unfitted_extractor_says_so(vgg_weights):
    features = BackboneFeatures("vgg16", weights=vgg_weights)
    with pytest.raises(AttributeError, match="not fitted.*call fit first"):
        features.model_
    features.fit(_images(1))
    assert features.cache_stats_.builds == 0
    assert features.model_.output.shape[-1] == 512 and features.cache_stats_.builds == 1
    assert features.model_ is features.model_ and features.cache_stats_.builds == 1
