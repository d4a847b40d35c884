"""Random augmentation of training images with Keras preprocessing layers, at one strength in [0, 1]."""

from __future__ import annotations

import keras

from .._errors import InputError
from .._options import look_up_option
from ..config import FLIPS, is_integer, is_number

__all__ = ["make_augmentation", "augmentation_settings"]

# The transformation each layer gets at strength 1; strength s scales every range linearly (s = 0: no layer).
_AT_FULL_STRENGTH = {
    "rotation": 0.05,  # fraction of a full turn: +-18 degrees
    "translation": 0.10,  # fraction of the height / width
    "zoom": 0.15,  # +-15 %
    "contrast": 0.30,  # contrast factor in [0.7, 1.3]
    "erasing": 0.50,  # probability that an image gets one erased rectangle
}
_ERASED_AREA = (0.02, 0.10)  # fraction of each side's length squared, i.e. of the image area per side pair


def augmentation_settings(strength: float, flip: str = "none") -> dict:
    """The ranges :func:`make_augmentation` uses at ``strength`` (for logs, ``model.json`` and the README).

    Example:
        >>> augmentation_settings(0.5)["rotation_degrees"]
        9.0
    """
    strength = _check_strength(strength)
    flip = look_up_option(flip, FLIPS, what="flip")
    s = strength
    return {
        "strength": s,
        "flip": flip,
        "rotation_degrees": round(360.0 * _AT_FULL_STRENGTH["rotation"] * s, 6),
        "translation_fraction": round(_AT_FULL_STRENGTH["translation"] * s, 6),
        "zoom_fraction": round(_AT_FULL_STRENGTH["zoom"] * s, 6),
        "contrast_factor": round(_AT_FULL_STRENGTH["contrast"] * s, 6),
        "erasing_probability": round(_AT_FULL_STRENGTH["erasing"] * s, 6),
    }


def _check_strength(strength) -> float:
    if not is_number(strength) or not 0.0 <= float(strength) <= 1.0:
        raise InputError(
            f"Expected the augmentation strength to be a number in [0, 1] (0 = none); received {strength!r}."
        )
    return float(strength)


def make_augmentation(strength: float, seed: int = 0, *, flip: str = "none"):
    """Random augmentation for training images in [0, 1], from Keras preprocessing layers.

    Every range grows linearly with ``strength``; at ``strength=1``:

    - ``RandomRotation``: up to +-18 degrees;
    - ``RandomTranslation``: up to 10 % of the height and width;
    - ``RandomZoom``: +-15 %;
    - ``RandomContrast``: contrast factor in [0.7, 1.3];
    - ``RandomErasing``: with probability 0.5, one rectangle of 2-10 % of each side squared is replaced by noise
      (an occlusion the model must look past, against learning one local shortcut such as a marker).

    Pixels moved in from outside the image are filled with 0 (air / background) rather than mirrored, so no
    anatomy is invented at the border. Values stay in [0, 1] (the layers are told the input range).

    Flips are not included by default, and are an explicit choice (``flip``): in chest radiographs and most
    cross-sectional images left and right are anatomy, not nuisance. The heart lies on the left; a mirrored film
    looks like dextrocardia or situs inversus, and findings such as a right-sided effusion or a left-sided
    pneumothorax change their meaning when mirrored. Side markers ("L"/"R") would also be mirrored. Use
    ``flip="horizontal"`` only where the finding does not depend on the side (e.g. a symmetric organ seen in
    isolation) and ``"vertical"`` only for images with no up/down convention.

    Apply it to training data only, as ``make_dataset(..., augment=make_augmentation(0.5))`` or through
    ``FineTuneConfig.augmentation`` (``fine_tune`` applies it to the training set); never at validation or
    prediction. The layers are inactive when called with ``training=False``.

    Args:
        strength: in [0, 1]; 0 gives no geometric or intensity change.
        seed: seed of the layers' random generators.
        flip: ``"none"``, ``"horizontal"``, ``"vertical"`` or ``"horizontal_and_vertical"``.

    Returns:
        A ``keras.Sequential`` named ``"augmentation"``, or ``None`` when ``strength`` is 0 and ``flip`` is
        ``"none"`` (nothing to do).

    Raises:
        InputError: ``strength`` outside [0, 1] or a seed that is not an integer.
        OptionError: an unknown ``flip``.

    Example:
        >>> augment = make_augmentation(0.5, seed=1)
        >>> [layer.name for layer in augment.layers]
        ['rotation', 'translation', 'zoom', 'contrast', 'erasing']
    """
    strength = _check_strength(strength)
    flip = look_up_option(flip, FLIPS, what="flip")
    if not is_integer(seed) or seed < 0:
        raise InputError(f"Expected seed to be an integer >= 0; received {seed!r}.")
    seed = int(seed)
    layers = []
    if flip != "none":
        layers.append(keras.layers.RandomFlip(flip, seed=seed, name="flip"))
    s = strength
    if s > 0:
        fill = {"fill_mode": "constant", "fill_value": 0.0}
        layers += [
            keras.layers.RandomRotation(_AT_FULL_STRENGTH["rotation"] * s, seed=seed + 1, name="rotation", **fill),
            keras.layers.RandomTranslation(
                _AT_FULL_STRENGTH["translation"] * s, _AT_FULL_STRENGTH["translation"] * s, seed=seed + 2,
                name="translation", **fill,
            ),
            keras.layers.RandomZoom(_AT_FULL_STRENGTH["zoom"] * s, seed=seed + 3, name="zoom", **fill),
            keras.layers.RandomContrast(_AT_FULL_STRENGTH["contrast"] * s, value_range=(0.0, 1.0), seed=seed + 4,
                                        name="contrast"),
            keras.layers.RandomErasing(
                factor=(_AT_FULL_STRENGTH["erasing"] * s,) * 2, scale=_ERASED_AREA, fill_value=None,
                value_range=(0.0, 1.0), seed=seed + 5, name="erasing",
            ),
        ]
    if not layers:
        return None
    return keras.Sequential(layers, name="augmentation")
