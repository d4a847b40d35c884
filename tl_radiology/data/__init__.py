"""Cases and their splits: manifests, patient-level splits, leakage checks, the sealed test set, MedMNIST import
and synthetic DICOM phantoms.

The path of a case through this part: a manifest CSV (or a folder per class, or a MedMNIST file) is validated into
a :class:`Manifest`; :func:`make_split` assigns train / val / test by patient (or the manifest's own split is
honoured); :func:`check_leakage` refuses a patient in two splits and reports identical images across splits;
:meth:`RunDir.create_split` writes ``splits.csv`` and seals the test set in ``test.lock``; training and search
read :meth:`RunDir.cases` (``train`` / ``val`` only); ``evaluate`` alone opens :class:`SealedTestSet`.

Example:
    >>> from tl_radiology.data import Manifest, RunDir
    >>> manifest = Manifest.from_csv("data/manifest.csv")  # doctest: +SKIP
    >>> RunDir("runs/a").create_split(manifest, val=0.15, test=0.15, seed=0)  # doctest: +SKIP
"""

from ._cache import CaseCache
from ._hashing import content_digest, sha256_file
from ._leakage import LeakageReport, check_leakage
from ._loader import CaseLoader, loader_from_config
from ._manifest import Manifest
from ._medmnist import import_medmnist
from ._pipeline import encode_labels, load_arrays, make_dataset
from ._phantoms import make_nodule_phantoms, make_triphasic_phantoms
from ._rundir import RunDir, SealedTestSet
from ._seal import run_history
from ._seal_content import check_external_content, refuse_sealed_content
from ._split import make_split

__all__ = [
    "run_history",
    "check_external_content",
    "refuse_sealed_content",
    "sha256_file",
    "content_digest",
    "Manifest",
    "make_split",
    "check_leakage",
    "LeakageReport",
    "RunDir",
    "SealedTestSet",
    "import_medmnist",
    "make_triphasic_phantoms",
    "make_nodule_phantoms",
    "CaseLoader",
    "loader_from_config",
    "CaseCache",
    "make_dataset",
    "encode_labels",
    "load_arrays",
]
