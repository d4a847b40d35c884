"""tl_radiology: transfer learning on radiology images with Keras 3 / TensorFlow.

The package is split into parts with one job each (see the README): ``io`` reads DICOM and raster images,
``transforms`` turns them into backbone inputs, ``data`` holds manifests, splits and the sealed test set,
``backbones`` and ``models`` build the networks, ``training`` runs the two transfer modes, ``search`` tunes
hyperparameters on validation data only, and ``evaluation`` opens the sealed test set once.

Importing the package is cheap: TensorFlow is imported only by the parts that need it.
"""

import os as _os

# Keras 3 runs on several backends; this toolkit is built and tested on TensorFlow.
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from ._version import __version__

from ._errors import (  # noqa: E402
    InputError,
    ManifestError,
    SealError,
    TLRadiologyError,
)

# Recipes and running them (TensorFlow is imported only when a recipe is made or run).
from ._recipe import Recipe, list_recipes, load_recipe  # noqa: E402
from ._run import RunResult, run_recipe, search_recipe  # noqa: E402
from ._run_demo import run_demo  # noqa: E402

__all__ = [
    "__version__",
    "TLRadiologyError",
    "InputError",
    "ManifestError",
    "SealError",
    "Recipe",
    "load_recipe",
    "list_recipes",
    "run_recipe",
    "search_recipe",
    "RunResult",
    "run_demo",
]
