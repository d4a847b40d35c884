"""Helpers shared by the recipe, run, distributed-search and demo tests (no tests here).

Small real data sets (synthetic DICOM phantoms written by the data part, real MedMNIST images from
../shared/data written as PNGs) and two tiny registered backbones, so a recipe runs end to end -- split, a real
keras-tuner search, two-phase training, threshold, evaluation -- in seconds. The recipes keep everything else
(columns, transforms, mode, search space, schedule shape); only the backbone and the sizes are shrunk with
``--set``, as a user would for a quick look. The real Keras applications are exercised by the backbone, model and
training tests, and by the demo.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
TINY = ("tiny_cnn", "tiny_cnn_b")
PYTHON = sys.executable
CONSOLE = str(Path(sys.executable).with_name("tl-radiology"))

#: The ``--set`` options that shrink any fine-tuning recipe to a test run (1 trial, 1 epoch per phase).
TINY_SETTINGS = {
    "backbone": TINY[0], "weights": "none", "input_size": "32", "max_trials": "1", "head_epochs": "1",
    "finetune_epochs": "1", "batch_size": "8", "n_bootstrap": "50", "gradcam_samples": "0",
}

# Written into a recipe file so that processes started from the command line know the tiny backbones too (a
# recipe file may register a backbone of its own before defining RECIPE).
REGISTER_SOURCE = '''
def _tiny(name):
    def build(include_top=False, weights=None, input_shape=(32, 32, 3), **kwargs):
        import keras
        inputs = keras.Input(input_shape)
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="block1_conv")(inputs)
        x = keras.layers.MaxPooling2D(name="block1_pool")(x)
        x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="block2_conv")(x)
        return keras.Model(inputs, x, name=name)
    return build


def register_tiny_backbones(names=("tiny_cnn", "tiny_cnn_b")):
    from tl_radiology.backbones import BackboneSpec, register_backbone

    for name in names:
        register_backbone(BackboneSpec(
            name=name, constructor=_tiny(name), preprocess="tf", default_size=32, min_size=16, feature_dim=16,
            layer_groups=(("block1", r"^block1_"), ("block2", r"^block2_")), last_conv_layer="block2_conv",
            family="test"), replace=True)
'''

_namespace: dict = {}
exec(compile(REGISTER_SOURCE, "test_run_support_register", "exec"), _namespace)
register_tiny_backbones = _namespace["register_tiny_backbones"]


def tiny_overrides(**changes) -> list[str]:
    """``--set`` arguments for :data:`TINY_SETTINGS` with ``changes``."""
    values = dict(TINY_SETTINGS)
    values.update({k: str(v) for k, v in changes.items()})
    args = []
    for key, value in values.items():
        args += ["--set", f"{key}={value}"]
    return args


def recipe_file(path, recipe: str, **fields) -> Path:
    """Write a recipe file that registers the tiny backbones and derives from a prebuilt recipe."""
    lines = [REGISTER_SOURCE, "register_tiny_backbones()", "", "from tl_radiology import load_recipe", "",
             f"RECIPE = load_recipe({recipe!r}).replace(**{fields!r})", ""]
    path = Path(path)
    path.write_text("\n".join(lines))
    return path


def triphasic_phantoms(folder, *, num_patients=12, cases_per_patient=3, size=32) -> Path:
    from tl_radiology.data import make_triphasic_phantoms

    return make_triphasic_phantoms(Path(folder), num_patients=num_patients, cases_per_patient=cases_per_patient,
                                   size=size, seed=0)


def nodule_phantoms(folder, *, num_patients=16) -> Path:
    from tl_radiology.data import make_nodule_phantoms

    return make_nodule_phantoms(Path(folder), num_patients=num_patients, cases_per_patient=1, shape=(12, 48, 48),
                                seed=0)


def medmnist_subset(shared_data, folder, name, *, per_class=None) -> Path:
    """A few real MedMNIST images per class and split as PNGs with a manifest keeping the official split.

    ``per_class`` maps split -> images per class (default train 8, val 4, test 4).
    """
    import numpy as np
    import pandas as pd
    from PIL import Image

    per_class = per_class or {"train": 8, "val": 4, "test": 4}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    with np.load(Path(shared_data) / f"medmnist_{name}" / f"{name}.npz") as data:
        for split, count in per_class.items():
            images, labels = data[f"{split}_images"], data[f"{split}_labels"].reshape(-1)
            for label in sorted(set(labels.tolist())):
                for index in np.flatnonzero(labels == label)[:count]:
                    file = f"{split}_{index:05d}.png"
                    Image.fromarray(images[index]).save(folder / file)
                    rows.append({"patient_id": f"{name}-{split}-{index}", "label": str(label), "image": file,
                                 "split": split})
    path = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def subprocess_environment() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the command line must keep TensorFlow's noise out by itself
    return env


def run_console(args, *, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """Run the real ``tl-radiology`` console script."""
    return subprocess.run([CONSOLE, *map(str, args)], cwd=cwd, env=subprocess_environment(), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


#: Lines TensorFlow prints at start-up that the command line must keep out of the terminal (without --debug).
TF_NOISE = ("oneDNN custom operations", "cuda drivers", "cpu_feature_guard", "absl::InitializeLog",
            "rebuild TensorFlow", "TF_ENABLE_ONEDNN_OPTS")
