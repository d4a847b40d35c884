"""Grad-CAM and CAM: known answers on hand-set weights, CAM = Grad-CAM for a GAP + linear head, overlays."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tl_radiology import InputError
from tl_radiology.evaluation import class_activation_map, grad_cam, overlay
from tl_radiology.models import build_model


def _hand_set_model(units: int, activation: str) -> keras.Model:
    """image -> backbone (1x1 conv: channel 0 = x, channel 1 = 1 - x) -> GAP -> Dense with an identity kernel.

    The class-0 logit is the mean of the image and the class-1 logit the mean of (1 - image), so the evidence
    for class 0 sits exactly where the image is bright and for class 1 where it is dark.
    """
    inner_in = keras.Input((16, 16, 1))
    conv = keras.layers.Conv2D(2, 1, name="conv")
    backbone = keras.Model(inner_in, conv(inner_in), name="backbone")
    image = keras.Input((16, 16, 1), name="image")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(backbone(image))
    head = keras.layers.Dense(units, activation=activation, name="predictions")
    model = keras.Model(image, head(x))
    conv.set_weights([np.array([1.0, -1.0], "float32").reshape(1, 1, 1, 2), np.array([0.0, 1.0], "float32")])
    kernel = np.eye(2, units, dtype="float32") if units > 1 else np.array([[1.0], [0.0]], "float32")
    head.set_weights([kernel, np.zeros(units, "float32")])
    return model


def _blob(center, size=16, sigma=1.5):
    yy, xx = np.mgrid[0:size, 0:size]
    return np.exp(-((yy - center[0]) ** 2 + (xx - center[1]) ** 2) / (2 * sigma**2)).astype("float32")[..., None]


def test_grad_cam_finds_the_bright_spot_a_hand_set_binary_model_looks_at():
    model = _hand_set_model(1, "sigmoid")
    image = _blob((4, 11))
    heat = grad_cam(model, image, layer="conv")
    assert heat.shape == (16, 16) and heat.dtype == np.float32
    assert np.unravel_index(np.argmax(heat), heat.shape) == (4, 11)
    # The positive-class evidence is the image itself (channel 0, weight 1), scaled to a maximum of 1.
    np.testing.assert_allclose(heat, image[..., 0] / image.max(), atol=1e-5)
    # The negative class (the negated logit) has no positive evidence anywhere in a non-negative image.
    assert np.all(grad_cam(model, image, layer="conv", class_index=0) == 0)


def test_grad_cam_explains_the_class_asked_for_in_a_softmax_head():
    model = _hand_set_model(2, "softmax")
    image = _blob((12, 3))
    bright = grad_cam(model, image[None], layer="conv", class_index=0)[0]
    dark = grad_cam(model, image[None], layer="conv", class_index=1)[0]
    assert np.unravel_index(np.argmax(bright), bright.shape) == (12, 3)
    assert dark[12, 3] == pytest.approx(0.0, abs=1e-6) and dark[0, 15] == pytest.approx(1.0, abs=1e-3)
    # Default: the predicted class. A mostly dark image is predicted class 1 (mean of 1 - x is larger).
    np.testing.assert_allclose(grad_cam(model, image, layer="conv"), dark, atol=1e-6)
    # One class per image.
    both = grad_cam(model, np.stack([image, image]), layer="conv", class_index=[0, 1])
    np.testing.assert_allclose(both[0], bright, atol=1e-6)
    np.testing.assert_allclose(both[1], dark, atol=1e-6)


@pytest.mark.parametrize("task, num_classes", [("binary", None), ("multiclass", 3), ("multilabel", 2)])
def test_cam_equals_grad_cam_for_global_average_pooling_and_a_linear_head(task, num_classes):
    model = build_model("vgg16", input_shape=(64, 64, 1), task=task, num_classes=num_classes, weights=None,
                        dropout=0.3)
    images = np.random.default_rng(0).uniform(0, 1, (3, 64, 64, 1)).astype("float32")
    feature_layer = model.get_layer("backbone").layers[-1].name  # block5_pool: the map that is pooled
    cam = class_activation_map(model, images, normalize=False)
    gradient = grad_cam(model, images, layer=feature_layer, normalize=False)
    pixels = np.prod(model.get_layer("backbone").output.shape[1:3])
    # Grad-CAM's channel weights are w_kc / (h * w): the same map divided by the number of feature-map pixels.
    np.testing.assert_allclose(gradient * pixels, cam, rtol=1e-4, atol=1e-5 * float(cam.max()))
    np.testing.assert_allclose(class_activation_map(model, images), grad_cam(model, images, layer=feature_layer),
                               atol=1e-4)


def test_cam_is_refused_where_the_head_is_not_linear_on_pooled_features():
    model = build_model("vgg16", input_shape=(32, 32, 1), weights=None, dense_units=8)
    with pytest.raises(InputError, match=r"CAM needs global average pooling.*GlobalAveragePooling2D -> Dense.*grad_cam"):
        class_activation_map(model, np.zeros((1, 32, 32, 1), "float32"))
    heat = grad_cam(model, np.random.default_rng(1).uniform(0, 1, (1, 32, 32, 1)).astype("float32"))
    assert heat.shape == (1, 32, 32) and 0 <= heat.min() and heat.max() <= 1  # Grad-CAM works for any head


def test_the_registered_layer_is_used_and_a_reloaded_model_needs_its_backbone_name(tmp_path):
    from tl_radiology.evaluation import explain_target

    model = build_model("vgg16", input_shape=(32, 32, 1), weights=None)
    assert explain_target(model) == "block5_conv3"  # from the registry record, inside the nested backbone
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    with pytest.raises(InputError, match=r"Cannot tell which backbone.*backbone='<registry name>'"):
        grad_cam(loaded, np.zeros((32, 32, 1), "float32"))
    image = np.random.default_rng(2).uniform(0, 1, (32, 32, 1)).astype("float32")
    np.testing.assert_allclose(grad_cam(loaded, image, backbone="vgg16"), grad_cam(model, image), atol=1e-5)


def test_bad_inputs_are_refused_with_the_fix():
    model = _hand_set_model(1, "sigmoid")
    with pytest.raises(InputError, match=r"expects images of shape \(N, 16, 16, 1\)"):
        grad_cam(model, np.zeros((2, 8, 8, 1)), layer="conv")
    with pytest.raises(InputError, match=r"Layer 'nope' not found.*leave layer=None"):
        grad_cam(model, np.zeros((16, 16, 1)), layer="nope")
    with pytest.raises(InputError, match=r"Grad-CAM needs a feature map"):
        grad_cam(model, np.zeros((16, 16, 1)), layer="pool")
    with pytest.raises(InputError, match=r"class_index=2 is out of range for a binary head"):
        grad_cam(model, np.zeros((16, 16, 1)), layer="conv", class_index=2)
    with pytest.raises(InputError, match=r"NaN"):
        grad_cam(model, np.full((16, 16, 1), np.nan), layer="conv")


def test_overlay_blends_a_coloured_heatmap_over_the_image_without_changing_it():
    image = np.zeros((16, 16, 1), "float32")
    image[:, :8] = 1.0
    heat = np.zeros((16, 16), "float32")
    heat[8, 12] = 1.0
    before = image.copy()
    rgb = overlay(image, heat, alpha=0.5)
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(image, before)
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[0, 15]) == (0, 0, 0)  # no heat: the image shows
    assert rgb[8, 12, 0] > 0 and not (rgb[8, 12] == rgb[8, 12][0]).all()  # heat: coloured (jet's top is red)
    assert overlay(np.zeros((16, 16, 3)), np.ones((4, 4))).shape == (16, 16, 3)  # heatmap resized
    with pytest.raises(InputError, match=r"image values in \[0, 1\]"):
        overlay(image * 300, heat)
    with pytest.raises(InputError, match=r"Unknown colormap 'jett'. Did you mean 'jet'"):
        overlay(image, heat, colormap="jett")
