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


def pneumonia_setup(shared_data, folder, *, train_per_class=24, val_per_class=12):
    """A small real PneumoniaMNIST subset (chest X-rays, half pneumonia) written as PNGs with a manifest.

    Returns ``(manifest, train, val, loader, cache)``; images are scaled to [0, 1] and resized to 32 x 32.
    """
    import numpy as np
    import pandas as pd
    from PIL import Image

    from tl_radiology.data import CaseCache, CaseLoader, Manifest
    from tl_radiology.transforms import Compose, Resize, ScaleIntensity

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    with np.load(Path(shared_data) / "medmnist_pneumoniamnist" / "pneumoniamnist.npz") as data:
        for split, per_class in (("train", train_per_class), ("val", val_per_class)):
            images, labels = data[f"{split}_images"], data[f"{split}_labels"].reshape(-1)
            for label in (0, 1):
                for index in np.flatnonzero(labels == label)[:per_class]:
                    name = f"{split}_{index:05d}.png"
                    Image.fromarray(images[index]).save(folder / name)
                    rows.append({"patient_id": f"pm-{split}-{index}", "label": str(label), "image": name,
                                 "split": split})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    manifest = Manifest.from_csv(folder / "manifest.csv")
    loader = CaseLoader("image", per_image=Compose([ScaleIntensity("range", value_range=(0, 255)), Resize(32)]))
    cases = manifest.cases
    train = cases[cases["split"] == "train"].reset_index(drop=True)
    val = cases[cases["split"] == "val"].reset_index(drop=True)
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
