"""Checking a manifest table: reading the CSV, its columns and its rows, each problem as ``(line, column, message)``.

The steps :class:`~tl_radiology.data.Manifest` runs before it builds the case table: read the CSV (UTF-8, no column
named twice), check the table's shape and columns (present, distinct, not reserved), then the rows (patient ids,
image paths inside the folder and present, no case twice, split values). Also the listing of a folder-per-class
data set. Problems are collected so that one ``ManifestError`` names every bad row at once.
"""

from __future__ import annotations

import csv
import difflib
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .._errors import ManifestError
from .._options import listed

__all__ = ["SPLITS", "RESERVED_COLUMNS", "IMAGE_SUFFIXES", "format_problems"]

SPLITS = ("train", "val", "test")
# Names the case table uses for its own columns; a manifest column with one of these names would be ambiguous.
RESERVED_COLUMNS = ("case_id", "patient", "label", "split", "row")
_SPLIT_ALIASES = {"validation": "val", "valid": "val", "training": "train", "testing": "test"}
# Suffixes Manifest.from_folders takes as images (plus files that carry the DICOM preamble).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom", ".ima", ".npy")
_MAX_LISTED = 20


def format_problems(source: str, problems: Sequence[tuple], fix: str = "Fix the manifest and run again.") -> str:
    """Render ``(row, column, message)`` problems as one line, listing the first 20."""
    parts = []
    for row, column, message in problems:
        where = []
        if row is not None:
            where.append(f"line {row}")
        if column is not None:
            where.append(f"column {column!r}")
        parts.append((", ".join(where) + ": " if where else "") + message)
    tail = " (all are listed in ManifestError.problems)" if len(problems) > _MAX_LISTED else ""
    count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
    return f"Manifest {source} has {count}: " + listed(parts, _MAX_LISTED) + tail + f". {fix}"


def cell_text(value) -> str:
    """A cell as stripped text: missing values become '', integral floats lose their '.0' (pandas NaN upcasts)."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, (np.floating,)):
        return cell_text(float(value))
    if value is pd.NA or value is pd.NaT:
        return ""
    return str(value).strip()


def did_you_mean(name: str, available: Sequence[str]) -> str:
    """`` (did you mean 'a' or 'b'?)`` for the close matches of ``name`` in ``available``, else ``""``."""
    close = difflib.get_close_matches(name, list(available), n=2, cutoff=0.6)
    if not close:
        lowered = {a.lower().strip(): a for a in available}
        if name.lower().strip() in lowered:
            close = [lowered[name.lower().strip()]]
    return (" (did you mean " + " or ".join(repr(c) for c in close) + "?)") if close else ""


def read_csv_table(path: Path) -> pd.DataFrame:
    """Read a manifest CSV as text cells (UTF-8, a byte-order mark accepted), refusing a column named twice.

    Args:
        path: the CSV file.

    Returns:
        The table, every cell a string (no value is read as missing).

    Raises:
        ManifestError: a folder or a missing file, an empty file, text that is not CSV or not UTF-8, a header
            that names a column twice.
    """
    if path.is_dir():
        raise ManifestError(
            f"Manifest {path} is a folder, expected a CSV file. Give the CSV's path, or use "
            "Manifest.from_folders for one subfolder per class."
        )
    if not path.is_file():
        raise ManifestError(f"Manifest {path} not found. Check the path of the manifest CSV.")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise ManifestError(
            f"Manifest {path} is empty. Expected a header line (e.g. patient_id,label,image) and one row per "
            "case.",
            [(None, None, "empty CSV")],
        ) from None
    except pd.errors.ParserError as exc:
        raise ManifestError(
            f"Manifest {path} is not valid CSV: {' '.join(str(exc).split())}. Check quoting and the number "
            "of commas on that line."
        ) from None
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"Manifest {path} is not UTF-8 text (byte {exc.start}). Save it as UTF-8 CSV."
        ) from None
    _check_header(path)
    return df


def _check_header(path: Path) -> None:
    """Refuse a header that names a column twice (pandas would silently rename the second to 'label.1')."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # read_csv has reported (or will report) these
    names = [h.strip() for h in header]
    duplicated = sorted({n for n in names if n and names.count(n) > 1})
    if duplicated:
        problems = [(1, n, f"column name appears {names.count(n)} times in the header (columns "
                           f"{', '.join(str(i + 1) for i, h in enumerate(names) if h == n)}); rename or remove the "
                           "extra column") for n in duplicated]
        raise ManifestError(format_problems(str(path), problems), problems)


def check_table_shape(df: pd.DataFrame, source_name: str) -> None:
    """Refuse a table with a column named twice, without columns, or without rows.

    Raises:
        ManifestError: naming the duplicated columns, or saying the table is empty.
    """
    duplicated = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if duplicated:
        problems = [(1, c, "column name appears more than once in the header; rename or remove the extra column")
                    for c in duplicated]
        raise ManifestError(format_problems(source_name, problems), problems)
    if df.shape[1] == 0:
        raise ManifestError(f"Manifest {source_name} is empty. Expected a header line and one row per case.",
                            [(None, None, "empty CSV")])
    if len(df) == 0:
        raise ManifestError(
            f"Manifest {source_name} has a header but no rows. Expected one row per case.",
            [(None, None, "no rows")],
        )


def check_columns(columns: list[str], source_name: str, patient_column: str, label_columns: tuple[str, ...],
                  image_columns: tuple[str, ...], split_column: str | None) -> tuple[bool, list[str], list[tuple]]:
    """Check that the named columns exist and differ, and that no used or carried column has a reserved name.

    Args:
        columns: the table's column names.
        source_name: how messages name the manifest.
        patient_column, label_columns, image_columns, split_column: the columns asked for.

    Returns:
        ``(has_split, extra, problems)``: whether the split column is present, the other columns carried into
        the case table, and the reserved-name problems (reported with the row problems).

    Raises:
        ManifestError: a missing column (with close matches), or one column named for two roles.
    """
    problems: list[tuple] = []
    wanted = [(patient_column, "patient_column"), *[(c, "label_column") for c in label_columns],
              *[(c, "image_columns") for c in image_columns]]
    for name, option in wanted:
        if name not in columns:
            problems.append((
                None, name,
                f"missing column{did_you_mean(name, columns)}; columns found: {', '.join(columns)}; name the "
                f"right one with {option}=",
            ))
    if problems:
        raise ManifestError(format_problems(source_name, problems), problems)
    if len(set(image_columns)) != len(image_columns) or set(image_columns) & set(label_columns) or (
        patient_column in image_columns or patient_column in label_columns
    ):
        raise ManifestError(
            f"Manifest {source_name}: the patient, label and image columns must be different columns. "
            f"Received patient_column={patient_column!r}, label_column={list(label_columns)}, "
            f"image_columns={list(image_columns)}."
        )
    has_split = split_column is not None and split_column in columns
    used = {patient_column, *label_columns, *image_columns} | ({split_column} if has_split else set())
    extra = [c for c in columns if c not in used]
    checked = [*image_columns, *(label_columns if label_columns != ("label",) else ())]
    checked += [c for c in extra if not (c == "split" and split_column is None)]
    for name in checked:
        if name in RESERVED_COLUMNS:
            problems.append((
                None, name,
                f"column name {name!r} is reserved for the case table ({', '.join(RESERVED_COLUMNS)}); "
                "rename the column",
            ))
    # With split_column=None a 'split' column is ignored, not carried.
    extra = [c for c in extra if c not in RESERVED_COLUMNS]
    return has_split, extra, problems


def check_patients(rows: list[int], patients: list[str], patient_column: str) -> list[tuple]:
    """One problem per row without a patient id."""
    return [(row, patient_column, "empty patient id") for row, value in zip(rows, patients) if not value]


def resolve_images(text: dict[str, list[str]], rows: list[int], image_columns: tuple[str, ...], root: Path,
                   allow_outside_root: bool) -> tuple[dict[str, list[str]], list[tuple | None], list[tuple]]:
    """Resolve every image path against ``root``: inside the folder (unless allowed), present, a non-empty folder.

    Args:
        text: the table's cells as text, by column.
        rows: the CSV line of each row.
        image_columns: the image columns.
        root: the normalised absolute folder relative paths are resolved against.
        allow_outside_root: accept paths that leave ``root``.

    Returns:
        ``(abs_paths, keys, problems)``: absolute paths by column (``""`` where refused), each row's key for
        finding duplicated cases (its paths relative to ``root``; ``None`` where a path was refused) and the
        problems found.
    """
    problems: list[tuple] = []
    abs_paths = {c: [""] * len(rows) for c in image_columns}
    rel_keys: list[tuple | None] = [None] * len(rows)
    for i, row in enumerate(rows):
        key = []
        for col in image_columns:
            value = text[col][i]
            if not value:
                problems.append((row, col, "empty image path"))
                key = None
                continue
            full = Path(os.path.normpath(Path(value) if Path(value).is_absolute() else root / value))
            inside = full == root or root in full.parents
            if not inside and not allow_outside_root:
                problems.append((
                    row, col,
                    f"path {value!r} leaves the manifest's folder {root}; use a path inside it or allow it "
                    "with --allow-outside-root (allow_outside_root=True)",
                ))
                key = None
                continue
            if not full.exists():
                problems.append((row, col, f"file {value!r} not found (looked for {full})"))
            elif full.is_dir() and not any(p.is_file() for p in full.rglob("*")):
                problems.append((row, col, f"folder {value!r} holds no files (expected a DICOM series)"))
            abs_paths[col][i] = str(full)
            if key is not None:
                key.append(os.path.relpath(full, root) if inside else str(full))
        rel_keys[i] = tuple(key) if key is not None else None
    return abs_paths, rel_keys, problems


def check_duplicates(rows: list[int], rel_keys: list[tuple | None], image_columns: tuple[str, ...]) -> list[tuple]:
    """One problem per row that lists the same image file(s) as an earlier row."""
    problems = []
    first_seen: dict[tuple, int] = {}
    for row, key in zip(rows, rel_keys):
        if key is None:
            continue
        if key in first_seen:
            problems.append((
                row, ",".join(image_columns),
                f"duplicated case: the same image file(s) as line {first_seen[key]} ({', '.join(key)})",
            ))
        else:
            first_seen[key] = row
    return problems


def read_splits(rows: list[int], values: list[str], split_column: str) -> tuple[list[str], list[tuple]]:
    """The split of every row (``train``/``val``/``test``, aliases such as ``validation`` accepted) and problems."""
    splits, problems = [], []
    for row, value in zip(rows, values):
        v = value.lower()
        v = _SPLIT_ALIASES.get(v, v)
        if not value:
            problems.append((
                row, split_column,
                "empty split; fill in train, val or test on every row, or remove the column to let the "
                "split be made",
            ))
        elif v not in SPLITS:
            problems.append((
                row, split_column,
                f"unknown split {value!r}{did_you_mean(v, SPLITS)}; expected train, val or test",
            ))
        splits.append(v)
    return splits, problems


def list_class_folders(root: Path) -> tuple[list[dict[str, str]], int]:
    """List a folder-per-class data set as manifest rows, one per image file directly inside a class folder.

    Args:
        root: the folder holding one subfolder per class.

    Returns:
        ``(records, skipped)``: ``patient_id``/``label``/``image`` rows (the patient id is the file's path
        relative to ``root``), and the number of subfolders skipped inside class folders.

    Raises:
        ManifestError: ``root`` is not a folder, has no class subfolders, or a class folder holds no image.
    """
    if not root.is_dir():
        raise ManifestError(f"Folder {root} not found. Expected a folder with one subfolder per class.")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ManifestError(
            f"Folder {root} has no class subfolders. Expected root/<class>/<image files>, or write a "
            "manifest CSV (patient_id,label,image)."
        )
    records, problems, skipped = [], [], 0
    for class_dir in class_dirs:
        found = 0
        for entry in sorted(class_dir.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                skipped += 1
                continue
            if entry.suffix.lower() in IMAGE_SUFFIXES or _has_dicom_preamble(entry):
                rel = entry.relative_to(root).as_posix()
                records.append({"patient_id": rel, "label": class_dir.name, "image": rel})
                found += 1
        if not found:
            problems.append((None, None, f"class folder {class_dir.name!r} holds no image files"))
    if problems:
        raise ManifestError(format_problems(str(root), problems, "Remove empty class folders or add images."),
                            problems)
    return records, skipped


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"
