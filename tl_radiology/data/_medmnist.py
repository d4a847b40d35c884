"""Import a MedMNIST ``.npz`` file as PNG images plus a manifest that keeps the official split."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import atomic_directory
from .._errors import InputError
from .._options import look_up_option
from .._progress import Progress, status

__all__ = ["import_medmnist", "encode_png", "MEDMNIST_LABEL_NAMES"]

_SPLITS = ("train", "val", "test")

#: MedMNIST's own label names per 2-D data set: ``INFO[flag]["label"]`` of ``medmnist/info.py`` (MedMNIST v2 and
#: v3, github.com/MedMNIST/MedMNIST; Yang et al., Scientific Data 2023). The .npz files hold integer labels only,
#: so the names are copied here. RetinaMNIST's names are its diabetic-retinopathy grades "0" ... "4" themselves.
MEDMNIST_LABEL_NAMES = {
    "pathmnist": ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle", "normal colon mucosa",
                  "cancer-associated stroma", "colorectal adenocarcinoma epithelium"),
    "chestmnist": ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
                   "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"),
    "dermamnist": ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                   "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
                   "vascular lesions"),
    "octmnist": ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
    "pneumoniamnist": ("normal", "pneumonia"),
    "retinamnist": ("0", "1", "2", "3", "4"),
    "breastmnist": ("malignant", "normal, benign"),
    "bloodmnist": ("basophil", "eosinophil", "erythroblast",
                   "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte", "monocyte",
                   "neutrophil", "platelet"),
    "tissuemnist": ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells",
                    "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments",
                    "Thick Ascending Limb"),
    "organamnist": ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
                    "lung-left", "lung-right", "pancreas", "spleen"),
}
MEDMNIST_LABEL_NAMES["organcmnist"] = MEDMNIST_LABEL_NAMES["organsmnist"] = MEDMNIST_LABEL_NAMES["organamnist"]
# MedMNIST+ files of larger images are named <flag>_64.npz, _128, _224.
_SIZE_SUFFIX = re.compile(r"_(28|64|128|224)$")


def _data_set(stem: str, dataset) -> str | None:
    """The MedMNIST flag whose label names apply: ``dataset`` if given, else the file name's (None: unknown)."""
    if dataset is None:
        return None
    if dataset != "auto":
        return look_up_option(str(dataset).lower(), tuple(MEDMNIST_LABEL_NAMES), what="MedMNIST data set",
                              fix="Or dataset=None to keep the integer labels.")
    flag = _SIZE_SUFFIX.sub("", stem.lower())
    return flag if flag in MEDMNIST_LABEL_NAMES else None


def encode_png(array: np.ndarray) -> bytes:
    """Encode an 8-bit gray (``H x W``) or RGB (``H x W x 3``) array as PNG bytes, losslessly.

    Pillow's PNG writer (a scikit-image dependency) writes no time stamp or other varying chunk, so the same
    array always gives the same bytes: identical images stay byte-identical after import, which the leakage
    check relies on.
    """
    from PIL import Image  # deferred: Pillow, only to encode PNGs

    if array.dtype != np.uint8:
        raise InputError(f"PNG export expects uint8 pixels. Received dtype {array.dtype}.")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise InputError(f"PNG export expects H x W or H x W x 3 pixels. Received shape {array.shape}.")
    image = Image.fromarray(np.ascontiguousarray(array))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


# Over 100 lines through its docstring (the files written, the labels and the data set to cite); the body is about 80.
def import_medmnist(npz_path, out_dir, *, overwrite: bool = False, dataset: str | None = "auto") -> Path:
    """Write a MedMNIST 2-D ``.npz`` file as one PNG per image plus ``manifest.csv`` with the official split.

    Output layout (``out_dir`` is written as a whole, atomically; it must be new or empty unless
    ``overwrite``)::

        out_dir/manifest.csv              patient_id,label,image,split (see below for multi-label files)
        out_dir/train/train_00000.png     one 8-bit PNG per image (gray, or RGB for colour data sets)
        out_dir/val/val_00000.png ...     file number = index in the npz array

    MedMNIST has no patient ids, so each image gets its own (``<file stem>-<split>-<index>``, pseudonymized like
    any patient id when the manifest is read). The official split is kept in the ``split`` column, so
    ``tl-radiology split`` honours it; a patient-level check is impossible for this data.

    Labels are written as MedMNIST's own names (:data:`MEDMNIST_LABEL_NAMES`, from MedMNIST's ``INFO``), not as
    the npz's integers, so every table, plot, result file and Grad-CAM caption names the class:
    PneumoniaMNIST ``normal`` / ``pneumonia`` (sorted, so ``pneumonia`` is the positive class by default),
    BreastMNIST ``malignant`` / ``normal, benign``, OCTMNIST ``choroidal neovascularization`` ... ``normal``.
    RetinaMNIST's names are its grades ``0`` ... ``4`` (diabetic-retinopathy severity), so its labels stay
    numbers and can be read as a regression target or ordered grades. The data set is found from the file name
    (``pneumoniamnist.npz``, or ``pneumoniamnist_64.npz`` of MedMNIST+); a file of another name keeps the integer
    labels unless ``dataset`` names it. The mapping is also a recipe's ``class_names`` away for manifests made
    otherwise (``{"0": "normal", "1": "pneumonia"}``).

    Multi-label files (label arrays with several columns, e.g. ChestMNIST) get one 0/1 column per label,
    ``label_0`` ... ``label_<k-1>``, instead of ``label``; read them with ``label_column=["label_0", ...]``
    (``--label-column label_0,label_1,...``); the status line lists which name each column stands for.

    Data: MedMNIST v2 (Yang et al., Scientific Data 2023, doi:10.1038/s41597-022-01721-8), CC BY 4.0; cite it
    and the source data set (PneumoniaMNIST: Kermany et al., Cell 2018; RetinaMNIST: DeepDRiD).

    Args:
        npz_path: the MedMNIST file (keys ``train_images``, ``train_labels``, ``val_*``, ``test_*``).
        out_dir: the folder to create.
        overwrite: replace an existing non-empty ``out_dir``.
        dataset: whose label names to write: ``"auto"`` (default: the file name's MedMNIST data set, integers
            when the name is not one), a MedMNIST flag (``"pneumoniamnist"``), or ``None`` (keep the integers).

    Returns:
        The path of ``manifest.csv``.

    Raises:
        InputError: not an npz, missing keys, 3-D volumes, non-uint8 pixels, label/image count mismatch, a
            non-empty ``out_dir`` without ``overwrite``, labels outside the data set's names.
        OptionError: an unknown ``dataset`` (with close matches).

    Example:
        >>> manifest = import_medmnist("pneumoniamnist.npz", "data/pneumonia")  # doctest: +SKIP
        >>> Manifest.from_csv(manifest).has_split  # doctest: +SKIP
        True
    """
    npz_path = Path(npz_path)
    out_dir = Path(out_dir)
    if not npz_path.is_file():
        raise InputError(f"MedMNIST file {npz_path} not found. Give the path of a .npz file such as "
                         "pneumoniamnist.npz.")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise InputError(
            f"--out {out_dir} already exists and is not an empty folder. Choose a new folder, or pass --force "
            "(overwrite=True) to replace it."
        )
    try:
        data = np.load(npz_path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{npz_path} is not a readable .npz file ({' '.join(str(exc).split())}). Expected a "
                         "MedMNIST file.") from None
    with data:
        keys = set(data.files)
        needed = [f"{s}_{k}" for s in _SPLITS for k in ("images", "labels")]
        missing = [k for k in needed if k not in keys]
        if missing:
            raise InputError(
                f"{npz_path} is missing the MedMNIST keys {', '.join(missing)} (found: {', '.join(sorted(keys))}). "
                "Expected train/val/test _images and _labels."
            )
        arrays = {k: data[k] for k in needed}
    for split in _SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.dtype != np.uint8:
            raise InputError(f"{npz_path}: {split}_images has dtype {images.dtype}, expected uint8.")
        if images.ndim == 4 and images.shape[-1] != 3 or images.ndim not in (3, 4):
            raise InputError(
                f"{npz_path}: {split}_images has shape {images.shape}; expected N x H x W (gray) or "
                "N x H x W x 3 (RGB). 3-D MedMNIST volumes (e.g. OrganMNIST3D) are not supported by this import."
            )
        if len(labels) != len(images):
            raise InputError(f"{npz_path}: {len(images)} {split} images but {len(labels)} labels.")

    stem = npz_path.stem
    flag = _data_set(stem, dataset)
    names = MEDMNIST_LABEL_NAMES.get(flag) if flag else None
    num_labels = arrays["train_labels"].reshape(len(arrays["train_labels"]), -1).shape[1]
    if names is not None:
        values = {int(v) for s in _SPLITS for v in np.unique(arrays[f"{s}_labels"])}
        size = len(names) if num_labels == 1 else 2
        if num_labels > 1 and num_labels != len(names) or any(not 0 <= v < size for v in values):
            raise InputError(
                f"{npz_path}: its labels ({num_labels} column(s), values {sorted(values)[:10]}) do not fit "
                f"MedMNIST's {flag} ({len(names)} classes). Give the data set's own file, or dataset=None to keep "
                "the integer labels.")
    if num_labels > 1:
        meaning = f" ({', '.join(f'label_{i} = {n}' for i, n in enumerate(names))})" if names else ""
        status(f"{npz_path.name} is multi-label ({num_labels} labels): the manifest has columns label_0 ... "
               f"label_{num_labels - 1}{meaning}; read it with --label-column " + ",".join(
                   f"label_{i}" for i in range(num_labels)))
    elif names is not None and list(names) != [str(i) for i in range(len(names))]:
        status(f"labels written as MedMNIST's names for {flag}: "
               + ", ".join(f"{i} = {n}" for i, n in enumerate(names)))
    elif names is None:
        status(f"labels kept as the npz's integers: {npz_path.name} is not named after a MedMNIST data set "
               "(e.g. pneumoniamnist.npz); name it, or give its class names in the recipe's class_names")
    text = (lambda v: names[int(v)]) if names is not None and num_labels == 1 else (lambda v: str(int(v)))
    records = []
    total = sum(len(arrays[f"{s}_images"]) for s in _SPLITS)
    status(f"MedMNIST has no patient ids: each of the {total} images of {npz_path.name} is its own patient.")
    with atomic_directory(out_dir) as tmp, Progress(total, f"writing PNGs of {npz_path.name}") as bar:
        for split in _SPLITS:
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            labels = labels.reshape(len(labels), -1)
            (tmp / split).mkdir()
            for index, (image, label) in enumerate(zip(images, labels)):
                name = f"{split}/{split}_{index:05d}.png"
                (tmp / name).write_bytes(encode_png(image))
                record = {"patient_id": f"{stem}-{split}-{index:05d}"}
                if labels.shape[1] == 1:
                    record["label"] = text(label[0])
                else:
                    record.update({f"label_{i}": str(int(v)) for i, v in enumerate(label)})
                record.update(image=name, split=split)
                records.append(record)
                bar.update()
        frame = pd.DataFrame(records)
        (tmp / "manifest.csv").write_text(frame.to_csv(index=False, lineterminator="\n"), encoding="utf-8")
    return out_dir / "manifest.csv"
