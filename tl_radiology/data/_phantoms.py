"""Synthetic CT phantoms written as real DICOM files (pydicom), for the demo and the tests.

Two tasks a single axial image cannot solve, each with a known answer:

* :func:`make_triphasic_phantoms`: liver lesions told apart by how they enhance over three contrast phases
  (native, arterial, delayed), the "phases as channels" idea of Yamashita et al. (2018).
* :func:`make_nodule_phantoms`: a nodule (sphere) versus a vessel (cylinder along z) at a known centre of a CT
  volume: both are disks in the axial plane; the coronal and sagittal planes tell them apart.

Every file is CT Image Storage with stored values = HU + 1024 (RescaleIntercept -1024, RescaleSlope 1), so
a reader that skips the modality LUT is off by 1024 HU. UIDs are derived deterministically from the seed with
``pydicom.uid.generate_uid(entropy_srcs=...)``, so the same arguments write the same bytes. Patient ids are
synthetic (``PHANTOM-0001``); there are no names, birth dates or institutions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import atomic_directory
from .._errors import InputError
from .._progress import Progress

__all__ = ["make_triphasic_phantoms", "make_nodule_phantoms", "TRIPHASIC_HU", "LIVER_HU"]

_INTERCEPT = -1024.0
_PHASES = ("native", "arterial", "delayed")

#: Liver parenchyma (HU) in each phase before the per-patient contrast gain: it enhances mostly late (portal venous).
LIVER_HU = {"native": 55.0, "arterial": 75.0, "delayed": 105.0}

#: Lesion (centre, rim) HU per class and phase. Rows that are equal within a phase are indistinguishable in that
#: phase alone; every pair of classes differs in at least one phase.
TRIPHASIC_HU = {
    "cyst": {"native": (8.0, 8.0), "arterial": (8.0, 8.0), "delayed": (8.0, 8.0)},
    "hcc": {"native": (45.0, 45.0), "arterial": (115.0, 115.0), "delayed": (75.0, 95.0)},
    "hemangioma": {"native": (45.0, 45.0), "arterial": (45.0, 125.0), "delayed": (110.0, 110.0)},
    "metastasis": {"native": (45.0, 45.0), "arterial": (45.0, 125.0), "delayed": (75.0, 95.0)},
}


def _check_counts(num_patients, cases_per_patient):
    for name, value in (("num_patients", num_patients), ("cases_per_patient", cases_per_patient)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name} must be a positive integer. Received: {value!r}.")


def _check_out(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise InputError(
            f"Output folder {out_dir} already exists and is not empty. Choose a new folder, or pass "
            "overwrite=True to replace it."
        )


def _uid(seed, *parts) -> str:
    from pydicom.uid import generate_uid  # deferred: pydicom, only to write the phantoms' DICOM files

    return generate_uid(entropy_srcs=["tl_radiology-phantom", str(seed), *map(str, parts)])


def _write_ct(path: Path, hu: np.ndarray, *, patient_id, study_uid, series_uid, sop_uid, frame_uid, position,
              spacing_yx, thickness, instance, series_number, description, contrast: bool) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset  # deferred: pydicom, as in _uid
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    stored = np.clip(np.rint(hu - _INTERCEPT), 0, 4095).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.Modality = "CT"
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.Manufacturer = "tl_radiology synthetic phantom"
    ds.PatientID = patient_id
    ds.PatientName = "PHANTOM"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyDate = "20000101"
    ds.StudyTime = "000000"
    ds.AccessionNumber = ""
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance
    ds.SeriesDescription = description
    ds.BodyPartExamined = "ABDOMEN" if description in _PHASES else "CHEST"
    ds.PatientPosition = "HFS"
    ds.KVP = 120
    if contrast:
        ds.ContrastBolusAgent = "synthetic iodinated contrast"
    ds.PixelSpacing = [f"{spacing_yx[0]:.4f}", f"{spacing_yx[1]:.4f}"]
    ds.SliceThickness = f"{thickness:.3f}"
    ds.ImagePositionPatient = [f"{v:.3f}" for v in position]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = f"{position[2]:.3f}"
    ds.RescaleIntercept = int(_INTERCEPT)
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 60 if description in _PHASES else -600
    ds.WindowWidth = 400 if description in _PHASES else 1500
    ds.set_pixel_data(stored, "MONOCHROME2", 12, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)


def _smooth_field(rng, shape, sigma, amplitude):
    from scipy.ndimage import gaussian_filter  # deferred: SciPy, only for the phantoms' smooth fields

    field = gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (field.std() + 1e-9) * amplitude


def _soft_inside(distance, radius, width=0.6):
    """1 inside ``radius``, 0 outside, with a logistic edge ``width`` wide (partial-volume blur)."""
    return 1.0 / (1.0 + np.exp(np.clip((distance - radius) / width, -50, 50)))


# Over 100 lines through its docstring (what the phantoms contain and why); the body is about 65.
def make_triphasic_phantoms(
    out_dir,
    *,
    num_patients: int,
    cases_per_patient: int,
    size: int = 64,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write triphasic liver CT phantoms (native, arterial, delayed) with four lesion classes.

    Each case is one axial slice through a liver lesion, acquired in three phases (three DICOM series of one
    study, same geometry, co-registered). The lesion's class is defined by its enhancement over time:

    ===========  ================  ==================  ==================  ===============================
    class        native (C / R)    arterial (C / R)    delayed (C / R)     pattern
    ===========  ================  ==================  ==================  ===============================
    cyst         8 / 8             8 / 8               8 / 8               non-enhancing, water density
    hcc          45 / 45           115 / 115           75 / 95             hypervascular, washout, capsule
    hemangioma   45 / 45           45 / 125 (nodular)  110 / 110           peripheral nodular, fills in
    metastasis   45 / 45           45 / 125            75 / 95             rim-enhancing, centre stays low
    liver        55                75                  105                 background, enhances late
    ===========  ================  ==================  ==================  ===============================

    (C = lesion centre, r < 0.6 R; R = rim, 0.6 R to R; HU before per-patient variation.) In the native phase
    hcc, hemangioma and metastasis look the same; in the arterial phase hemangioma and metastasis; in the
    delayed phase hcc and metastasis. So one phase alone cannot separate the classes (at best 50%, 75% and
    75% accuracy), while the three phases together can: every pair differs by >= 35 HU in some phase.

    Variation: per patient, a liver baseline (SD 4 HU) and a contrast gain (0.8-1.2, scaling every
    enhancement); per lesion, a radius of 8-16 mm, a random position, an offset common to all phases (SD 4 HU)
    and one per phase (SD 5 HU); per image, liver texture (smooth, SD 4 HU) and noise (SD 12 HU). Classes
    are balanced over all cases and shuffled, so a patient may have lesions of several classes.

    Geometry: ``size x size`` pixels over a 96 mm field of view (PixelSpacing 96/size mm), 5 mm slice
    thickness, ImageOrientationPatient 1,0,0,0,1,0, one ImagePositionPatient per case for all three phases.

    Writes ``out_dir/manifest.csv`` with columns ``patient_id, label, native, arterial, delayed`` (paths
    relative to ``out_dir``) and ``center_y, center_x, radius_px`` (the lesion's centre row and column and its
    radius in pixels, for crops and tests), and ``out_dir/<patient>/case_<n>/<phase>.dcm``. The folder is
    written atomically; it must be new or empty unless ``overwrite``.

    Args:
        out_dir: the folder to create.
        num_patients: number of synthetic patients.
        cases_per_patient: lesions (cases) per patient.
        size: image rows and columns (at least 32).
        seed: random seed; the same arguments give byte-identical files.
        overwrite: replace a non-empty ``out_dir``.

    Returns:
        The path of ``manifest.csv``.

    Raises:
        InputError: non-positive counts, ``size < 32``, or a non-empty ``out_dir`` without ``overwrite``.

    Example:
        >>> manifest = make_triphasic_phantoms("phantoms/liver", num_patients=20, cases_per_patient=3)
        ... # doctest: +SKIP
        >>> Manifest.from_csv(manifest, image_columns=("native", "arterial", "delayed")).classes  # doctest: +SKIP
        ('cyst', 'hcc', 'hemangioma', 'metastasis')
    """
    _check_counts(num_patients, cases_per_patient)
    if not isinstance(size, (int, np.integer)) or size < 32:
        raise InputError(f"size must be an integer of at least 32 pixels. Received: {size!r}.")
    out_dir = Path(out_dir)
    _check_out(out_dir, overwrite)
    rng = np.random.default_rng(seed)
    classes = sorted(TRIPHASIC_HU)
    total = num_patients * cases_per_patient
    labels = rng.permutation(np.resize(np.asarray(classes), total))
    spacing = 96.0 / size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    records = []
    with atomic_directory(out_dir) as tmp, Progress(total, "writing triphasic phantoms") as bar:
        for p in range(num_patients):
            patient_id = f"PHANTOM-{p + 1:04d}"
            liver_base = 55.0 + rng.normal(0, 4)
            gain = rng.uniform(0.8, 1.2)
            for c in range(cases_per_patient):
                label = str(labels[p * cases_per_patient + c])
                radius = rng.uniform(8.0, 16.0) / spacing
                margin = radius + 4
                cy, cx = rng.uniform(margin, size - 1 - margin, size=2)
                angle = np.arctan2(yy - cy, xx - cx)
                dist = np.hypot(yy - cy, xx - cx)
                lesion = _soft_inside(dist, radius)
                core = _soft_inside(dist, 0.6 * radius)
                nodules = 1.0 + 0.25 * np.cos(5 * angle + rng.uniform(0, 2 * np.pi))
                offset = rng.normal(0, 4)
                texture = _smooth_field(rng, (size, size), sigma=3.0, amplitude=4.0)
                z = rng.uniform(-150.0, -50.0)
                position = (-48.0, -48.0, z)
                study_uid = _uid(seed, patient_id, c, "study")
                frame_uid = _uid(seed, patient_id, c, "frame")
                case_dir = tmp / patient_id / f"case_{c + 1:02d}"
                case_dir.mkdir(parents=True)
                record = {"patient_id": patient_id, "label": label}
                for k, phase in enumerate(_PHASES):
                    liver = liver_base + gain * (LIVER_HU[phase] - LIVER_HU["native"])
                    centre, rim = TRIPHASIC_HU[label][phase]
                    native_c, native_r = TRIPHASIC_HU[label]["native"]
                    jitter = offset + rng.normal(0, 5)
                    centre_hu = native_c + gain * (centre - native_c) + jitter
                    rim_hu = native_r + gain * (rim - native_r) + jitter
                    rim_map = np.full((size, size), rim_hu)
                    if label == "hemangioma" and phase == "arterial":
                        # peripheral nodular enhancement: the rim's enhancement comes in nodules (same mean)
                        rim_map = native_r + jitter + (rim_hu - native_r - jitter) * nodules
                    inner = core * centre_hu + (1 - core) * rim_map
                    image = (1 - lesion) * (liver + texture) + lesion * inner
                    image = image + rng.normal(0, 12.0, size=(size, size))
                    name = f"{phase}.dcm"
                    _write_ct(
                        case_dir / name, image, patient_id=patient_id, study_uid=study_uid,
                        series_uid=_uid(seed, patient_id, c, phase, "series"),
                        sop_uid=_uid(seed, patient_id, c, phase, "sop"), frame_uid=frame_uid, position=position,
                        spacing_yx=(spacing, spacing), thickness=5.0, instance=1, series_number=k + 1,
                        description=phase, contrast=phase != "native",
                    )
                    record[phase] = f"{patient_id}/case_{c + 1:02d}/{name}"
                record.update(center_y=round(float(cy), 2), center_x=round(float(cx), 2),
                              radius_px=round(float(radius), 2))
                records.append(record)
                bar.update()
        frame = pd.DataFrame(records)
        (tmp / "manifest.csv").write_text(frame.to_csv(index=False, lineterminator="\n"), encoding="utf-8")
    return out_dir / "manifest.csv"


# Over 100 lines through its docstring (what the phantoms contain and why); the body is about 75.
def make_nodule_phantoms(
    out_dir,
    *,
    num_patients: int,
    cases_per_patient: int = 1,
    shape: tuple[int, int, int] = (32, 64, 64),
    spacing: tuple[float, float, float] = (2.5, 0.7, 0.7),
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write chest CT volume phantoms: a nodule (sphere) or a vessel (cylinder along z) at a known centre.

    Each case is one CT series folder of ``Z`` axial slices (``shape`` = Z x H x W voxels, anisotropic
    ``spacing`` = slice step, row, column in mm; default 2.5 x 0.7 x 0.7 mm). Lung parenchyma is about -850 HU
    (smooth texture SD 30 HU, noise SD 20 HU). The target, about 40 HU (soft tissue), is

    * ``nodule``: a sphere of radius 3-5 mm (a few slices thick);
    * ``vessel``: a cylinder of radius 3-5 mm running along z through the whole volume.

    On the axial slice through the centre both are a disk of the same size; the coronal and sagittal planes
    show a disk (nodule) or a long band (vessel). Each volume also holds two distractors at least 16 pixels
    away from the target in-plane: one vessel and one small nodule, so a model must look at the centre.
    Classes alternate over the cases and are shuffled.

    Writes ``out_dir/manifest.csv`` with columns ``patient_id, label, image`` (the series folder, relative to
    ``out_dir``), ``center_z, center_y, center_x`` and ``radius_mm``. The centre is in voxel indices of the
    volume whose slices are ordered by increasing ImagePositionPatient z (slice file ``slice_000.dcm`` has the
    lowest z and index 0), row and column as in the pixel array. Files are
    ``out_dir/<patient>/case_<n>/slice_<k>.dcm``; the folder is written atomically.

    Args:
        out_dir: the folder to create.
        num_patients: number of synthetic patients.
        cases_per_patient: volumes (cases) per patient.
        shape: voxels (Z, H, W); H and W at least 48, Z at least 12.
        spacing: (slice step, row spacing, column spacing) in mm.
        seed: random seed; the same arguments give byte-identical files.
        overwrite: replace a non-empty ``out_dir``.

    Returns:
        The path of ``manifest.csv``.

    Raises:
        InputError: bad counts, shape or spacing, or a non-empty ``out_dir`` without ``overwrite``.

    Example:
        >>> manifest = make_nodule_phantoms("phantoms/nodules", num_patients=10)  # doctest: +SKIP
    """
    _check_counts(num_patients, cases_per_patient)
    try:
        nz, ny, nx = (int(v) for v in shape)
        sz, sy, sx = (float(v) for v in spacing)
    except (TypeError, ValueError):
        raise InputError(f"shape must be 3 integers and spacing 3 numbers. Received: {shape!r}, {spacing!r}.") from None
    if nz < 12 or ny < 48 or nx < 48:
        raise InputError(f"shape must be at least (12, 48, 48) voxels. Received: {tuple(shape)}.")
    if min(sz, sy, sx) <= 0:
        raise InputError(f"spacing must be positive millimetres. Received: {tuple(spacing)}.")
    out_dir = Path(out_dir)
    _check_out(out_dir, overwrite)
    rng = np.random.default_rng(seed)
    total = num_patients * cases_per_patient
    labels = rng.permutation(np.resize(np.asarray(["nodule", "vessel"]), total))
    zz, yy, xx = np.meshgrid(np.arange(nz) * sz, np.arange(ny) * sy, np.arange(nx) * sx, indexing="ij")
    records = []
    with atomic_directory(out_dir) as tmp, Progress(total, "writing nodule phantoms") as bar:
        for p in range(num_patients):
            patient_id = f"PHANTOM-{p + 1:04d}"
            for c in range(cases_per_patient):
                label = str(labels[p * cases_per_patient + c])
                radius = rng.uniform(3.0, 5.0)
                cz = int(rng.integers(int(nz * 0.35), int(nz * 0.65) + 1))
                cy = int(rng.integers(20, ny - 20))
                cx = int(rng.integers(20, nx - 20))
                centre_mm = np.array([cz * sz, cy * sy, cx * sx])
                volume = -850.0 + _smooth_field(rng, (nz, ny, nx), sigma=4.0, amplitude=30.0)
                target = np.zeros((nz, ny, nx))

                def add(mask_value):
                    nonlocal target
                    target = np.maximum(target, mask_value)

                if label == "nodule":
                    add(_soft_inside(np.sqrt((zz - centre_mm[0]) ** 2 + (yy - centre_mm[1]) ** 2
                                             + (xx - centre_mm[2]) ** 2), radius, width=0.4))
                else:
                    add(_soft_inside(np.hypot(yy - centre_mm[1], xx - centre_mm[2]), radius, width=0.4))
                # distractors away from the target, in-plane distance >= 16 pixels
                for kind in ("vessel", "nodule"):
                    for _ in range(100):
                        dy, dx = rng.integers(4, ny - 4), rng.integers(4, nx - 4)
                        if np.hypot(dy - cy, dx - cx) >= 16:
                            break
                    r = rng.uniform(1.5, 3.0)
                    if kind == "vessel":
                        add(_soft_inside(np.hypot(yy - dy * sy, xx - dx * sx), r, width=0.4))
                    else:
                        dz = rng.uniform(0, (nz - 1) * sz)
                        add(_soft_inside(np.sqrt((zz - dz) ** 2 + (yy - dy * sy) ** 2 + (xx - dx * sx) ** 2), r,
                                         width=0.4))
                volume = volume * (1 - target) + 40.0 * target + rng.normal(0, 20.0, size=volume.shape)
                study_uid = _uid(seed, patient_id, c, "study")
                series_uid = _uid(seed, patient_id, c, "series")
                frame_uid = _uid(seed, patient_id, c, "frame")
                z0 = rng.uniform(-200.0, -100.0)
                rel = f"{patient_id}/case_{c + 1:02d}"
                (tmp / rel).mkdir(parents=True)
                x0, y0 = -(nx * sx) / 2, -(ny * sy) / 2
                for k in range(nz):
                    _write_ct(
                        tmp / rel / f"slice_{k:03d}.dcm", volume[k], patient_id=patient_id, study_uid=study_uid,
                        series_uid=series_uid, sop_uid=_uid(seed, patient_id, c, k, "sop"), frame_uid=frame_uid,
                        position=(x0, y0, z0 + k * sz), spacing_yx=(sy, sx), thickness=sz, instance=k + 1,
                        series_number=1, description="chest CT (synthetic)", contrast=False,
                    )
                records.append({"patient_id": patient_id, "label": label, "image": rel, "center_z": cz,
                                "center_y": cy, "center_x": cx, "radius_mm": round(float(radius), 3)})
                bar.update()
        frame = pd.DataFrame(records)
        (tmp / "manifest.csv").write_text(frame.to_csv(index=False, lineterminator="\n"), encoding="utf-8")
    return out_dir / "manifest.csv"
