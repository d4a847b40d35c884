"""The manifest: one row per case, validated all at once, with pseudonymous patient and case ids."""

from __future__ import annotations

import difflib
import math
import os
import re
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .._atomic import atomic_write_text
from .._errors import InputError, ManifestError
from .._options import look_up_option
from ..config import TASKS
from .._pseudonym import pseudonymize

__all__ = ["Manifest", "TASKS", "SPLITS", "RESERVED_COLUMNS", "format_problems", "class_sort_key"]

SPLITS = ("train", "val", "test")
# Names the case table uses for its own columns; a manifest column with one of these names would be ambiguous.
RESERVED_COLUMNS = ("case_id", "patient", "label", "split", "row")
_SPLIT_ALIASES = {"validation": "val", "valid": "val", "training": "train", "testing": "test"}
_TRUE = {"1", "1.0", "true", "yes", "y"}
_FALSE = {"0", "0.0", "false", "no", "n"}
# Suffixes Manifest.from_folders takes as images (plus files that carry the DICOM preamble).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom", ".ima", ".npy")
_MAX_LISTED = 20


def format_problems(source: str, problems: Sequence[tuple], fix: str = "Fix the manifest and run again.") -> str:
    """Render ``(row, column, message)`` problems as one line, listing the first 20."""
    parts = []
    for row, column, message in problems[:_MAX_LISTED]:
        where = []
        if row is not None:
            where.append(f"line {row}")
        if column is not None:
            where.append(f"column {column!r}")
        parts.append((", ".join(where) + ": " if where else "") + message)
    more = len(problems) - _MAX_LISTED
    tail = f"; and {more} more (all are listed in ManifestError.problems)" if more > 0 else ""
    count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
    return f"Manifest {source} has {count}: " + "; ".join(parts) + tail + f". {fix}"


def class_sort_key(names: Iterable[str]):
    """Sort key for class names: numerically when every name is a number ('2' before '10'), else as text."""
    names = list(names)
    try:
        values = {n: float(n) for n in names}
    except ValueError:
        return lambda n: str(n)
    return lambda n: (values.get(n, math.inf), str(n))


def _cell_text(value) -> str:
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
        return _cell_text(float(value))
    if value is pd.NA or value is pd.NaT:
        return ""
    return str(value).strip()


def _did_you_mean(name: str, available: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(available), n=2, cutoff=0.6)
    if not close:
        lowered = {a.lower().strip(): a for a in available}
        if name.lower().strip() in lowered:
            close = [lowered[name.lower().strip()]]
    return (" (did you mean " + " or ".join(repr(c) for c in close) + "?)") if close else ""


class Manifest:
    """A validated table of cases: pseudonymous ids, labels, absolute image paths and an optional split.

    Build one with :meth:`from_csv`, :meth:`from_dataframe` or :meth:`from_folders`; validation reports every bad
    row at once in one :class:`~tl_radiology.ManifestError` whose ``problems`` lists ``(line, column, message)``.

    The manifest CSV has one row per case: a patient id column (default ``patient_id``), a label column (default
    ``label``), one or more image columns (default ``image``; a file, or a folder holding one DICOM series) with
    paths relative to the CSV's folder, and optionally a ``split`` column (``train``/``val``/``test``; also
    ``validation``/``valid``) that is honoured instead of a random split. Other columns are carried through to the
    case table unchanged (for example a lesion centre), so they must not hold identifying data.

    Labels and the task:

    * one label column, at most two classes: ``binary`` (the second class in sorted order is the positive one);
    * one label column, three or more classes: ``multiclass``;
    * ``|``-separated labels in the label column (``effusion|nodule``), or several label columns holding 0/1:
      ``multilabel``;
    * ``regression`` only when asked (``task="regression"``): labels must be numbers.

    Class names are sorted, numerically when all are numbers (``"2"`` before ``"10"``), else as text. A binary
    task lists its classes negative first, positive second: by default the sorted order (so the second class is
    the positive one); ``positive_class=`` names the other one instead (then the two are listed the other way
    round). The order is a function of the labels and ``positive_class`` only, so it is the same on every run.

    Class names for people: a class is shown by its label, unless ``class_names=`` maps labels to names
    (``{"0": "normal", "1": "pneumonia"}`` for a manifest whose labels are codes). The names are for display
    (terminal, JSON results, report, Grad-CAM captions); the labels stay what the manifest holds, so the seal
    (``test.lock``, which hashes each test case's files and label) does not depend on them. MedMNIST imports
    write the names as the labels themselves (see :func:`~tl_radiology.data.import_medmnist`), so they need no
    mapping.

    Attributes:
        cases: a new DataFrame on every access, one row per case: ``case_id`` (``C-...``, a keyed hash of the
            patient id and the image paths), ``patient`` (``P-...``, see :mod:`tl_radiology._pseudonym`),
            ``label`` (text; ``a|b`` for multilabel; float for regression), ``split`` when the manifest has one,
            one column per image column holding absolute paths, ``row`` (the CSV line, header = line 1), then the
            manifest's other columns. The raw patient id is not in it.
        root: the folder relative paths are resolved against.
        task: ``"binary"``, ``"multiclass"``, ``"multilabel"`` or ``"regression"``.
        classes: the class labels in index order (empty for regression): sorted; binary: negative, positive.
        positive_class: the positive class of a binary task (``classes[1]``), else ``None``.
        class_names: label -> name for people, one entry per class (the label itself where none was given).
        image_columns: the image column names, in the order given.
        label_columns: the label column name(s) of the manifest.

    Example:
        >>> m = Manifest.from_csv("study/manifest.csv", image_columns=("native", "arterial", "delayed"))
        ... # doctest: +SKIP
        >>> m.task, m.classes  # doctest: +SKIP
        ('multiclass', ('cyst', 'hcc', 'hemangioma', 'metastasis'))
    """

    def __init__(self, cases, *, root, source, task, classes, image_columns, label_columns, id_map,
                 class_names=None):
        # Use the from_* constructors; this one trusts its arguments.
        self._cases = cases
        self.root = Path(root)
        self.source = str(source)
        self.task = task
        self.classes = tuple(classes)
        self.class_names = {c: (class_names or {}).get(c, c) for c in self.classes}
        self.positive_class = self.classes[1] if task == "binary" and len(self.classes) == 2 else None
        self.image_columns = tuple(image_columns)
        self.label_columns = tuple(label_columns)
        self._id_map = dict(id_map)

    # ----------------------------------------------------------------------------------------------- constructors
    @classmethod
    def from_csv(
        cls,
        path,
        *,
        patient_column: str = "patient_id",
        label_column: str | Sequence[str] = "label",
        image_columns: str | Sequence[str] = ("image",),
        split_column: str | None = "split",
        allow_outside_root: bool = False,
        task: str | None = None,
        positive_class: str | None = None,
        class_names=None,
    ) -> "Manifest":
        """Read and validate a manifest CSV.

        Args:
            path: the CSV file (UTF-8, a byte-order mark is accepted). Relative image paths are resolved against
                its folder.
            patient_column: the column holding patient ids (raw ids never leave the manifest object).
            label_column: the label column, or several 0/1 label columns for a multilabel task.
            image_columns: one or more image columns (a name, a comma-separated string or a sequence).
            split_column: the column of ``train``/``val``/``test`` values honoured instead of a random split;
                ``None`` ignores it. A manifest without that column simply has no split.
            allow_outside_root: accept paths that leave the CSV's folder (``..`` or absolute paths elsewhere).
            task: force the task (``"binary"``, ``"multiclass"``, ``"multilabel"``, ``"regression"``); default
                inferred from the labels.
            positive_class: binary tasks: the positive class, by label or by its name in ``class_names``
                (default: the second class in sorted order). Sensitivity, specificity, PPV, NPV and the threshold
                refer to it; the model's output is its probability.
            class_names: label -> name for people (``{"0": "normal", "1": "pneumonia"}``); labels not in it
                are shown as they are. Keys are read like labels (``"1.0"`` is class ``"1"``).

        Returns:
            The validated :class:`Manifest`.

        Raises:
            ManifestError: naming every bad row (CSV line) and column: missing file, empty label or patient id,
                unknown split value, duplicated case, a path leaving the folder, missing columns, an empty CSV.
            InputError: ``positive_class`` or a ``class_names`` key that is not one of the classes (with close
                matches), ``positive_class`` for a task that is not binary.

        Example:
            >>> m = Manifest.from_csv("data/manifest.csv")  # doctest: +SKIP
            >>> m.cases[["case_id", "patient", "label", "image"]].head(2)  # doctest: +SKIP
        """
        path = Path(path)
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
        return cls._build(
            df,
            root=path.resolve().parent,
            source=str(path),
            patient_column=patient_column,
            label_column=label_column,
            image_columns=image_columns,
            split_column=split_column,
            allow_outside_root=allow_outside_root,
            task=task,
            positive_class=positive_class,
            class_names=class_names,
        )

    @classmethod
    def from_dataframe(
        cls,
        df: pd.DataFrame,
        root,
        *,
        patient_column: str = "patient_id",
        label_column: str | Sequence[str] = "label",
        image_columns: str | Sequence[str] = ("image",),
        split_column: str | None = "split",
        allow_outside_root: bool = False,
        task: str | None = None,
        positive_class: str | None = None,
        class_names=None,
    ) -> "Manifest":
        """Validate a DataFrame laid out like a manifest CSV; ``df`` is not modified.

        Rows are numbered as if the frame were written to CSV (first row = line 2). Relative image paths are
        resolved against ``root``. Other arguments as in :meth:`from_csv`.

        Example:
            >>> df = pd.DataFrame({"patient_id": ["a", "b"], "label": ["0", "1"], "image": ["a.png", "b.png"]})
            >>> m = Manifest.from_dataframe(df, root="images")  # doctest: +SKIP
        """
        if not isinstance(df, pd.DataFrame):
            raise InputError(f"Expected a pandas DataFrame. Received: {type(df).__name__}.")
        return cls._build(
            df.copy(),
            root=Path(root).resolve(),
            source="(DataFrame)",
            patient_column=patient_column,
            label_column=label_column,
            image_columns=image_columns,
            split_column=split_column,
            allow_outside_root=allow_outside_root,
            task=task,
            positive_class=positive_class,
            class_names=class_names,
        )

    @classmethod
    def from_folders(cls, root, *, task: str | None = None, positive_class: str | None = None,
                     class_names=None) -> "Manifest":
        """Build a manifest from one subfolder per class (``root/<class>/<image file>``).

        Every image file directly inside a class folder (by suffix: png, jpg, jpeg, tif, tiff, dcm, dicom, ima,
        npy, or any file with the DICOM preamble) is one case; hidden files and deeper subfolders are skipped.
        Such data has no patient ids, so each file gets its own: its path relative to ``root`` (for example
        ``pneumonia/img_001.png``, pseudonymized like any patient id). A patient-level split is therefore
        impossible: two images of one patient may land in different splits. A :class:`UserWarning` says so; write
        a manifest CSV with a ``patient_id`` column when patients have several images.

        Args:
            root: the folder holding one subfolder per class (the subfolder name is the label).
            task, positive_class, class_names: as in :meth:`from_csv`.

        Returns:
            The validated :class:`Manifest`; ``row`` numbers the sorted file list as if written to CSV.

        Raises:
            ManifestError: no class subfolders, or a class folder without images.

        Example:
            >>> m = Manifest.from_folders("chest_xray/train")  # doctest: +SKIP
        """
        root = Path(root)
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
        warnings.warn(
            f"{root}: folder-per-class data has no patient ids, so each file is treated as its own patient and a "
            "patient-level split is impossible (images of one patient may land in different splits). Write a "
            "manifest CSV with a patient_id column if patients have several images.",
            UserWarning,
            stacklevel=2,
        )
        if skipped:
            warnings.warn(f"{root}: skipped {skipped} subfolder(s) inside class folders.", UserWarning, stacklevel=2)
        return cls._build(
            pd.DataFrame(records),
            root=root.resolve(),
            source=str(root),
            patient_column="patient_id",
            label_column="label",
            image_columns=("image",),
            split_column=None,
            allow_outside_root=False,
            task=task,
            positive_class=positive_class,
            class_names=class_names,
        )

    # -------------------------------------------------------------------------------------------- the validation
    @classmethod
    def _build(cls, df, *, root, source, patient_column, label_column, image_columns, split_column,
               allow_outside_root, task, positive_class=None, class_names=None):
        image_columns = _as_names(image_columns, "image_columns")
        label_columns = _as_names(label_column, "label_column")
        if task is not None:
            task = look_up_option(task, TASKS, what="task")
        df = df.rename(columns=lambda c: str(c).strip())
        source_name = source
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
        columns = list(df.columns)
        problems: list[tuple] = []
        wanted = [(patient_column, "patient_column"), *[(c, "label_column") for c in label_columns],
                  *[(c, "image_columns") for c in image_columns]]
        for name, option in wanted:
            if name not in columns:
                problems.append((
                    None, name,
                    f"missing column{_did_you_mean(name, columns)}; columns found: {', '.join(columns)}; name the "
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

        root = Path(os.path.normpath(Path(root).absolute()))
        rows = list(range(2, len(df) + 2))
        text = {c: [_cell_text(v) for v in df[c].tolist()] for c in columns}

        patients = text[patient_column]
        for row, value in zip(rows, patients):
            if not value:
                problems.append((row, patient_column, "empty patient id"))

        # Images: inside the folder (unless allowed), present, and no case listed twice.
        abs_paths = {c: [""] * len(df) for c in image_columns}
        rel_keys: list[tuple | None] = [None] * len(df)
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

        splits = None
        if has_split:
            splits = []
            for row, value in zip(rows, text[split_column]):
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
                        f"unknown split {value!r}{_did_you_mean(v, SPLITS)}; expected train, val or test",
                    ))
                splits.append(v)

        labels, task, classes, label_problems = _parse_labels(text, rows, label_columns, task)
        problems.extend(label_problems)
        if problems:
            problems.sort(key=lambda p: (p[0] is not None, p[0] or 0))
            raise ManifestError(format_problems(source_name, problems), problems)
        classes, names = cls.resolve_classes(classes, task, positive_class=positive_class, class_names=class_names,
                                             source=f"Manifest {source_name}")

        id_map = {}
        patient_ids, case_ids = [], []
        for i, raw in enumerate(patients):
            pid = pseudonymize(raw, prefix="P")
            id_map[pid] = raw
            patient_ids.append(pid)
            case_ids.append(pseudonymize(raw + "\0" + "\0".join(rel_keys[i]), prefix="C"))
        cases = pd.DataFrame({"case_id": case_ids, "patient": patient_ids, "label": labels})
        if splits is not None:
            cases["split"] = splits
        for col in image_columns:
            cases[col] = abs_paths[col]
        cases["row"] = np.asarray(rows, dtype=np.int64)
        for col in extra:
            cases[col] = df[col].to_numpy(copy=True)
        return cls(
            cases,
            root=root,
            source=source,
            task=task,
            classes=classes,
            image_columns=image_columns,
            label_columns=label_columns,
            id_map=id_map,
            class_names=names,
        )

    # ----------------------------------------------------------------------------------------- class order, names
    @staticmethod
    def resolve_classes(classes, task: str, *, positive_class: str | None = None, class_names=None,
                        source: str = "The manifest") -> tuple[tuple[str, ...], dict[str, str]]:
        """The classes in index order and their names for people, from sorted labels and the two settings.

        Binary: ``(negative, positive)``; the positive class is ``positive_class`` (a label, or a name given in
        ``class_names``), by default the second in sorted order. Other tasks keep the order given. Used by the
        manifest, and by a run to check a recipe against a run directory's recorded classes.

        Args:
            classes: the class labels, sorted (binary: in any order; they are sorted here).
            task: the task.
            positive_class: as in :meth:`from_csv`.
            class_names: as in :meth:`from_csv`.
            source: how the messages name the data.

        Returns:
            ``(classes, names)``: the classes in index order, and label -> name for every class.

        Raises:
            InputError: an unknown ``positive_class`` or ``class_names`` key (with close matches and the
                classes), ``positive_class`` for a task that is not binary, ``class_names`` for regression, two
                classes given one name.

        Example:
            >>> Manifest.resolve_classes(("benign", "malignant"), "binary", positive_class="benign")[0]
            ('malignant', 'benign')
        """
        classes = tuple(str(c) for c in classes)
        if task == "binary":
            classes = tuple(sorted(classes, key=class_sort_key(classes)))
        given = {}
        if class_names:
            if not isinstance(class_names, dict):
                raise InputError(f"class_names must map labels to names, e.g. {{\"0\": \"normal\", \"1\": "
                                 f"\"pneumonia\"}}; received {type(class_names).__name__}.")
            if task == "regression":
                raise InputError(f"{source}: class_names is for classes; a regression task has none. Remove "
                                 "class_names.")
            for key, value in class_names.items():
                label = _class_name(str(key).strip())
                if label not in classes:
                    raise InputError(
                        f"{source}: class_names names {key!r}, which is not one of the classes "
                        f"({', '.join(classes)}){_did_you_mean(label, classes)}. Use the labels of the manifest "
                        "as keys.")
                given[label] = str(value).strip()
            named = [given.get(c, c) for c in classes]
            twice = sorted({n for n in named if named.count(n) > 1})
            if twice:
                raise InputError(f"{source}: class_names gives two classes the name {twice[0]!r}; each class needs "
                                 "its own name.")
        names = {c: given.get(c, c) for c in classes}
        if positive_class is None or positive_class == "":
            return classes, names
        wanted = str(positive_class).strip()
        if task != "binary":
            raise InputError(
                f"{source}: positive_class={wanted!r} is for a binary task (two classes); this one is {task} "
                f"({', '.join(classes) or 'no classes'}). Remove positive_class.")
        by_name = {n: c for c, n in names.items()}
        label = wanted if wanted in classes else by_name.get(wanted, _class_name(wanted))
        if label not in classes:
            choices = list(dict.fromkeys([*classes, *names.values()]))
            raise InputError(
                f"{source}: unknown positive_class {wanted!r}{_did_you_mean(wanted, choices)}; the classes are "
                + ", ".join(c if names[c] == c else f"{c} ({names[c]})" for c in classes)
                + ". Set positive_class to one of them (--set positive_class=NAME).")
        if len(classes) == 2 and label == classes[0]:
            classes = (classes[1], classes[0])
        return classes, names

    # ------------------------------------------------------------------------------------------------- accessors
    @property
    def cases(self) -> pd.DataFrame:
        """The case table (a new copy on each access, so changing it never changes the manifest)."""
        return self._cases.copy()

    @property
    def has_split(self) -> bool:
        """Whether the manifest brought its own ``split`` column."""
        return "split" in self._cases.columns

    @property
    def num_patients(self) -> int:
        """Number of distinct patients."""
        return int(self._cases["patient"].nunique())

    def __len__(self) -> int:
        return len(self._cases)

    def __repr__(self) -> str:
        return (
            f"Manifest({self.source!r}, cases={len(self)}, patients={self.num_patients}, task={self.task!r}, "
            f"classes={list(self.classes)}, image_columns={list(self.image_columns)}, has_split={self.has_split})"
        )

    def label_targets(self, cases: pd.DataFrame | None = None) -> np.ndarray:
        """Turn the ``label`` column into model targets for this manifest's task.

        Args:
            cases: a case table (default: this manifest's); its labels must be among :attr:`classes`.

        Returns:
            binary: float32 0/1 (1 = ``classes[1]``); multiclass: int64 class indices; multilabel: float32
            ``N x len(classes)`` k-hot; regression: float32 values.

        Raises:
            InputError: a label that is not one of the manifest's classes (named with its row).

        Example:
            >>> y = manifest.label_targets()  # doctest: +SKIP
        """
        cases = self._cases if cases is None else cases
        labels = cases["label"].tolist()
        rows = cases["row"].tolist() if "row" in cases.columns else [None] * len(labels)
        if self.task == "regression":
            return np.asarray([float(v) for v in labels], dtype=np.float32)
        index = {c: i for i, c in enumerate(self.classes)}

        def lookup(name, row):
            if name not in index:
                raise InputError(
                    f"Label {name!r} (line {row}) is not one of the manifest's classes "
                    f"{', '.join(self.classes)}. Use cases from the same manifest."
                )
            return index[name]

        if self.task == "multilabel":
            out = np.zeros((len(labels), len(self.classes)), dtype=np.float32)
            for i, (value, row) in enumerate(zip(labels, rows)):
                for name in filter(None, str(value).split("|")):
                    out[i, lookup(name, row)] = 1.0
            return out
        idx = np.asarray([lookup(str(v), r) for v, r in zip(labels, rows)], dtype=np.int64)
        return idx.astype(np.float32) if self.task == "binary" else idx

    def write_id_map(self, path) -> Path:
        """Write the pseudonym -> raw patient id table (``patient,patient_id``) to ``path``, atomically.

        This is the only output that holds raw patient ids; keep it outside shared folders.

        Example:
            >>> manifest.write_id_map("/secure/id_map.csv")  # doctest: +SKIP
        """
        frame = pd.DataFrame(sorted(self._id_map.items()), columns=["patient", "patient_id"])
        return atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def _as_names(value, option: str) -> tuple[str, ...]:
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",")]
    else:
        names = [str(v).strip() for v in value]
    names = [n for n in names if n]
    if not names:
        raise InputError(f"{option} names no column. Received: {value!r}. Give at least one column name.")
    return tuple(names)


def _parse_labels(text, rows, label_columns, task):
    """Return (labels, task, classes, problems) for the label column(s)."""
    problems = []
    if len(label_columns) > 1:
        if task not in (None, "multilabel"):
            problems.append((None, ",".join(label_columns),
                             f"several label columns make a multilabel task, but task={task!r} was asked"))
        labels = []
        for i, row in enumerate(rows):
            on = []
            for col in label_columns:
                value = text[col][i].lower()
                if value in _TRUE:
                    on.append(col)
                elif value not in _FALSE:
                    problems.append((row, col, f"label value {text[col][i]!r} is not 0 or 1"
                                     + (" (empty)" if not value else "")))
            labels.append("|".join(sorted(on)))
        return labels, "multilabel", tuple(sorted(label_columns)), problems

    col = label_columns[0]
    raw = text[col]
    for row, value in zip(rows, raw):
        if not value:
            problems.append((row, col, "empty label; fill in the label or remove the row"))
        elif value.lower() in _MISSING_MARKERS:
            problems.append((row, col, f"label {value!r} marks a missing value, not a class; fill in the label or "
                                       "remove the row"))
    if task == "regression":
        labels = []
        for row, value in zip(rows, raw):
            try:
                number = float(value)
            except ValueError:
                number = math.nan
                if value:
                    problems.append((row, col, f"label {value!r} is not a number (task 'regression')"))
            else:
                if not math.isfinite(number):
                    problems.append((row, col, f"label {value!r} is not a finite number (task 'regression')"))
            labels.append(number)
        return labels, task, (), problems

    if task == "multilabel" or (task is None and any("|" in v for v in raw)):
        labels, names = [], set()
        for value in raw:
            parts = sorted({_class_name(p.strip()) for p in value.split("|") if p.strip()})
            names.update(parts)
            labels.append("|".join(parts))
        return labels, "multilabel", tuple(sorted(names, key=class_sort_key(names))), problems

    raw = [_class_name(v) for v in raw]
    names = sorted(set(v for v in raw if v), key=class_sort_key(set(raw)))
    inferred = "binary" if len(names) <= 2 else "multiclass"
    if task == "binary" and len(names) > 2:
        problems.append((None, col, f"task 'binary' needs at most 2 classes, found {len(names)}: "
                                    f"{', '.join(names)}; use task='multiclass'"))
    return list(raw), task or inferred, tuple(names), problems


#: Cell texts that spreadsheets and pandas write for a missing value; as a label they would become a class.
_MISSING_MARKERS = {"nan", "-nan", "na", "n/a", "#n/a", "<na>", "nat", "null"}
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _class_name(value: str) -> str:
    """One spelling per numeric class: '1', '1.0', '+1' and '1e0' are all class '1'; '0.50' is '0.5'.

    Only plain decimal numbers are normalised (not 'inf', not hex); other text is kept as written.
    """
    if not _NUMBER.fullmatch(value):
        return value
    number = float(value)
    if not math.isfinite(number):
        return value
    if number.is_integer():
        return str(int(number))
    return repr(number)


def _check_header(path: Path) -> None:
    """Refuse a header that names a column twice (pandas would silently rename the second to 'label.1')."""
    import csv

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


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"
