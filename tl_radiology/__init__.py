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

from ._lazy import lazy_exports, lazy_names  # noqa: E402
from ._version import __version__
from . import _errors  # noqa: E402  (its __all__ is part of ours)

from ._errors import (  # noqa: E402
    AuditKeyError,
    ImageReadError,
    InputError,
    LeakageError,
    ManifestError,
    OptionError,
    RunDirBusyError,
    RunDirError,
    SealBrokenError,
    SealError,
    SearchFailedError,
    TLRadiologyError,
    UntrustedFileError,
    WeightsNotAvailableError,
)

# Recipes and running them import TensorFlow; they are loaded on first use, so `import tl_radiology` (and the
# command line's --help) stays cheap.
_LAZY = {
    "recipe": ("Recipe", "load_recipe", "list_recipes"),
    "run": ("run_recipe", "search_recipe", "RunResult"),
    "run._demo": ("run_demo",),
}


__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY)


__all__ = [
    "__version__",
    *_errors.__all__,
    *lazy_exports(_LAZY),
]
