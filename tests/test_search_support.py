"""Helpers shared by the search tests (and the processes some of them start): a tiny registered backbone and
small real data sets. No tests here.

The tiny backbone is a real Keras network registered through the public ``register_backbone``, with two layer
groups, so a trial builds, trains both phases and unfreezes by group in about a second: the searches under test
are real keras-tuner searches that really train, only small.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
TINY = "tiny_cnn"


def tiny_cnn(include_top=False, weights=None, input_shape=(32, 32, 3), **kwargs):
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="block1_conv")(inputs)
    x = keras.layers.MaxPooling2D(name="block1_pool")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="block2_conv")(x)
    return keras.Model(inputs, x, name=TINY)


def register_tiny_backbone() -> str:
    from tl_radiology.backbones import BackboneSpec, register_backbone

    register_backbone(
        BackboneSpec(name=TINY, constructor=tiny_cnn, preprocess="tf", default_size=32, min_size=16, feature_dim=16,
                     layer_groups=(("block1", r"^block1_"), ("block2", r"^block2_")), last_conv_layer="block2_conv",
                     family="test"),
        replace=True,
    )
    return TINY


def unregister_tiny_backbone() -> None:
    from tl_radiology.backbones import _registry

    _registry._REGISTRY.pop(TINY, None)


def phantom_setup(folder, *, num_patients=12, cases_per_patient=3):
    """Triphasic CT phantoms (real DICOM, four classes, several cases per patient), split by patient.

    Returns ``(manifest, train, val, loader, cache)``; the test split is made and set aside (never used).
    """
    from tl_radiology.data import CaseCache, CaseLoader, Manifest, make_split, make_triphasic_phantoms
    from tl_radiology.transforms import Window

    folder = Path(folder)
    csv = folder / "phantoms" / "manifest.csv"
    if not csv.is_file():
        csv = make_triphasic_phantoms(folder / "phantoms", num_patients=num_patients,
                                      cases_per_patient=cases_per_patient, size=32, seed=0)
    manifest = Manifest.from_csv(csv, image_columns=("native", "arterial", "delayed"))
    cases = make_split(manifest.cases, val=0.25, test=0.15, seed=0)
    train = cases[cases["split"] == "train"].reset_index(drop=True)
    val = cases[cases["split"] == "val"].reset_index(drop=True)
    loader = CaseLoader(manifest.image_columns, per_image=Window.preset("liver"))
    return manifest, train, val, loader, CaseCache(folder / "cache")


def tiny_config(**changes):
    from tl_radiology.training import FineTuneConfig

    values = dict(backbone=TINY, weights=None, head_epochs=1, finetune_epochs=1, batch_size=8)
    values.update(changes)
    return FineTuneConfig(**values)


def subprocess_environment() -> dict:
    """The environment for a child Python that imports this module and the package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


PYTHON = sys.executable
