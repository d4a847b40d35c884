"""Finding the slices of one DICOM series in a folder: list its DICOM files, choose one series, check they stack.

The first steps of :func:`~tl_radiology.io.read_dicom_series`: which files of the folder count, which of them are
image slices, which series is read, and whether its slices can share one array (single-frame, grayscale, one size).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from .._errors import ImageReadError
from .._options import listed
from ._common import check_expect, check_frame
from ._dicom_checks import non_image_kind
from ._dicom_file import DICOM_SUFFIXES, _has_preamble, _head, _looks_like_raw_dataset, read_dataset

_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory (DICOMDIR)


def _names(paths, limit: int = 5) -> str:
    """Name up to ``limit`` files, then count the rest, so a message stays one readable line."""
    return listed((p.name for p in paths), limit, sep=", ")


def _check_arguments(folder, expect: str, frame: int | None) -> tuple[Path, int | None]:
    """Check the reader's arguments and that ``folder`` is a folder, before anything is read.

    Args:
        folder: the folder given to :func:`read_dicom_series`.
        expect: ``"gray"``, ``"any"`` or ``"rgb"`` (the last is refused: a series is read as grayscale).
        frame: the slice index to read, or None.

    Returns:
        The folder as a :class:`~pathlib.Path` and the checked frame index.

    Raises:
        ImageReadError: the folder does not exist, is a file, or ``expect="rgb"``.
    """
    expect = check_expect(expect)
    frame = check_frame(frame)
    folder = Path(folder)
    if not folder.exists():
        raise ImageReadError(f"{folder} does not exist; expected a folder of DICOM slices. Check the path.")
    if not folder.is_dir():
        raise ImageReadError(f"{folder} is a file; expected a folder of DICOM slices. Use read_dicom for one file.")
    if expect == "rgb":
        raise ImageReadError(
            f"{folder} is read as a grayscale volume but expect='rgb' was given. Pass expect='gray' or "
            f"expect='any' for a DICOM series."
        )
    return folder, frame


def _list_series_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """Split a folder's files into DICOM candidates and ignored files, by name and first bytes only.

    The rule is the one :func:`read_dicom_series` documents: non-hidden files directly in the folder that carry
    the ``DICM`` marker, a DICOM suffix, or no suffix and the start of a raw data set. A file that cannot be
    opened is ignored rather than fatal, since folders often hold stray unreadable files beside a series.

    Args:
        folder: the series folder.

    Returns:
        ``(candidates, ignored)``, each sorted by file name.

    Raises:
        ImageReadError: the folder itself cannot be listed.
    """
    dicom, ignored = [], []
    try:
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            try:
                head = _head(path)
            except OSError:
                ignored.append(path)
                continue
            suffix = path.suffix.lower()
            if _has_preamble(head) or suffix in DICOM_SUFFIXES or (suffix == "" and _looks_like_raw_dataset(head)):
                dicom.append(path)
            else:
                ignored.append(path)
    except OSError as exc:
        raise ImageReadError(
            f"{folder} cannot be listed ({exc.strerror or exc}); expected a readable folder of DICOM slices. Fix its "
            f"permissions."
        ) from exc
    return dicom, ignored


def _read_image_headers(candidates: list[Path]) -> tuple[list[Path], list, list[Path]]:
    """Read the candidates' headers and set aside the DICOM objects that are not image slices.

    Args:
        candidates: the DICOM candidates from :func:`_list_series_files`.

    Returns:
        ``(paths, headers, refused)``: the image slices with their headers, and the other DICOM objects.

    Raises:
        ImageReadError: a candidate is not DICOM, or a slice is cut off (from :func:`read_dataset`).
    """
    paths, headers, refused = [], [], []
    for path in candidates:
        ds = read_dataset(path, header_only=True)
        if "Rows" not in ds and str(ds.get("SOPClassUID") or "") != _DIRECTORY_SOP_CLASS:
            # Not an image, or a slice cut off before its Rows: a full read tells them apart (and fails if cut).
            ds = read_dataset(path, header_only=False)
        if str(ds.get("SOPClassUID") or "") == _DIRECTORY_SOP_CLASS or "Rows" not in ds or non_image_kind(ds):
            # DICOMDIR, reports, and objects beside a series that are not slices of it (SEG, RT dose, PR, ...)
            refused.append(path)
            continue
        paths.append(path)
        headers.append(ds)
    return paths, headers, refused


def _choose_series(
    folder: Path, paths: list[Path], headers: list, ignored: list[Path], series_uid: str | None
) -> tuple[list[Path], list, list[Path]]:
    """Keep the slices of one series: the one ``series_uid`` names, or the only one in the folder.

    Args:
        folder: the series folder, for messages.
        paths: the image slices found.
        headers: their headers, in the same order.
        ignored: the files set aside so far.
        series_uid: the Series Instance UID to keep, or None to require a single series.

    Returns:
        ``(paths, headers, ignored)`` with the slices of other series moved to ``ignored``.

    Raises:
        ImageReadError: no image slice at all; no slice of ``series_uid``; several series and no ``series_uid``.
    """
    if not paths:
        raise ImageReadError(
            f"{folder} holds no DICOM image files ({len(ignored)} other files ignored). Expected a folder of DICOM "
            f"slices of one series; check the folder."
        )
    uids = [str(ds.get("SeriesInstanceUID") or "(none)") for ds in headers]
    if series_uid is not None:
        keep = [i for i, u in enumerate(uids) if u == str(series_uid)]
        if not keep:
            raise ImageReadError(
                f"{folder} has no slice of series_uid={series_uid!r}. Available: {', '.join(sorted(set(uids)))}."
            )
        kept = set(keep)
        ignored = ignored + [p for i, p in enumerate(paths) if i not in kept]
        paths, headers, uids = [paths[i] for i in keep], [headers[i] for i in keep], [uids[i] for i in keep]
    fix = "move each series into its own folder, or pick one with series_uid=..."
    _split_by(paths, uids, "SeriesInstanceUIDs", folder, fix)
    return paths, headers, ignored


def _split_by(paths, values, what: str, folder: Path, fix: str) -> None:
    """Fail naming the files whose ``values`` differ from the most common one."""
    groups: dict[Any, list[Path]] = defaultdict(list)
    for path, value in zip(paths, values):
        groups[value].append(path)
    if len(groups) <= 1:
        return
    ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    majority_value, majority = ordered[0]
    others = "; ".join(f"{value} in {_names(files)}" for value, files in ordered[1:])
    raise ImageReadError(
        f"{folder} mixes {what}: {len(majority)} files have {majority_value}, but {others}. Expected one series "
        f"with a single {what}; {fix}"
    )


def _check_stackable(folder: Path, paths: list[Path], headers: list) -> None:
    """Check that the slices can share one array: single-frame, grayscale and of one size.

    Args:
        folder: the series folder, for messages.
        paths: the slices of the chosen series.
        headers: their headers, in the same order.

    Raises:
        ImageReadError: a multi-frame or colour slice, or slices of different sizes.
    """
    multi = [p for p, ds in zip(paths, headers) if int(ds.get("NumberOfFrames") or 1) > 1]
    if multi:
        raise ImageReadError(
            f"{folder} holds multi-frame files ({_names(multi)}); a series folder must hold single-frame slices. "
            f"Read a multi-frame file with read_dicom(path) instead."
        )
    colour = [
        p
        for p, ds in zip(paths, headers)
        if int(ds.get("SamplesPerPixel") or 1) > 1
        or str(ds.get("PhotometricInterpretation") or "").upper() == "PALETTE COLOR"
    ]
    if colour:
        raise ImageReadError(
            f"{folder} holds colour slices ({_names(colour)}); a series volume must be grayscale. Read colour "
            f"images one by one with read_dicom(path, expect='rgb')."
        )
    _split_by(
        paths, [(int(ds.Rows), int(ds.Columns)) for ds in headers], "image sizes (Rows, Columns)", folder,
        "remove the files of the other size (scouts, localisers or another series).",
    )
