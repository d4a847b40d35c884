"""The manifest: one row per case, validated all at once, with pseudonymous patient and case ids.

:class:`Manifest` runs the checks of :mod:`._manifest_table` (the CSV, its columns and rows) and
:mod:`._manifest_labels` (the task and classes), then builds the case table.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .._atomic import atomic_write_text
from .._errors import InputError, ManifestError
from .._options import look_up_option
from .._pseudonym import pseudonymize
from ..config import TASKS
from ._manifest_labels import class_sort_key, parse_labels, resolve_classes
from ._manifest_table import (
    RESERVED_COLUMNS,
    SPLITS,
    cell_text,
    check_columns,
    check_duplicates,
    check_patients,
    check_table_shape,
    format_problems,
    list_class_folders,
    read_csv_table,
    read_splits,
    resolve_images,
)

__all__ = ["Manifest", "TASKS", "SPLITS", "RESERVED_COLUMNS", "format_problems", "class_sort_key"]

# The keyword options of from_csv and from_dataframe that describe the table (see _table_options).
_TABLE_OPTIONS = ("patient_column", "label_column", "image_columns", "split_column", "allow_outside_root", "task",
                  "positive_class", "class_names")


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
        df = read_csv_table(path)
        return cls._build(df, root=path.resolve().parent, source=str(path), **_table_options(locals()))

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
        return cls._build(df.copy(), root=Path(root).resolve(), source="(DataFrame)", **_table_options(locals()))

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
        records, skipped = list_class_folders(root)
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
        """Validate a manifest table step by step and build the :class:`Manifest`.

        The steps: the table's shape and columns (:func:`check_columns`, which stops at a missing column), then
        every row (patient ids, image paths, duplicated cases, split values, labels); the row problems are
        collected and raised together, sorted by line. Then the classes and their names, then the case table.
        """
        image_columns = _as_names(image_columns, "image_columns")
        label_columns = _as_names(label_column, "label_column")
        if task is not None:
            task = look_up_option(task, TASKS, what="task")
        df = df.rename(columns=lambda c: str(c).strip())
        check_table_shape(df, source)
        columns = list(df.columns)
        has_split, extra, problems = check_columns(columns, source, patient_column, label_columns, image_columns,
                                                   split_column)
        root = Path(os.path.normpath(Path(root).absolute()))
        rows = list(range(2, len(df) + 2))
        text = {c: [cell_text(v) for v in df[c].tolist()] for c in columns}
        patients = text[patient_column]
        problems += check_patients(rows, patients, patient_column)
        abs_paths, rel_keys, image_problems = resolve_images(text, rows, image_columns, root, allow_outside_root)
        problems += image_problems
        problems += check_duplicates(rows, rel_keys, image_columns)
        splits = None
        if has_split:
            splits, split_problems = read_splits(rows, text[split_column], split_column)
            problems += split_problems
        labels, task, classes, label_problems = parse_labels(text, rows, label_columns, task)
        problems.extend(label_problems)
        if problems:
            problems.sort(key=lambda p: (p[0] is not None, p[0] or 0))
            raise ManifestError(format_problems(source, problems), problems)
        classes, names = cls.resolve_classes(classes, task, positive_class=positive_class, class_names=class_names,
                                             source=f"Manifest {source}")
        cases, id_map = _case_table(df, patients, rel_keys, labels, splits, abs_paths, rows, extra)
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
        return resolve_classes(classes, task, positive_class=positive_class, class_names=class_names,
                               source=source)

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


def _table_options(arguments: dict) -> dict:
    """The table options among a constructor's arguments (its ``locals()``), handed on to ``Manifest._build``.

    ``from_csv`` and ``from_dataframe`` spell the options out in their signatures (they are public); this takes
    them from there by name rather than forwarding each one by hand in both.
    """
    return {name: arguments[name] for name in _TABLE_OPTIONS}


def _as_names(value, option: str) -> tuple[str, ...]:
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",")]
    else:
        names = [str(v).strip() for v in value]
    names = [n for n in names if n]
    if not names:
        raise InputError(f"{option} names no column. Received: {value!r}. Give at least one column name.")
    return tuple(names)


def _case_table(df, patients, rel_keys, labels, splits, abs_paths, rows, extra) -> tuple[pd.DataFrame, dict]:
    """The case table of a validated manifest and its pseudonym -> raw patient id map.

    Args:
        df: the manifest table (its ``extra`` columns are carried unchanged).
        patients: the raw patient id of each row.
        rel_keys: each row's image paths relative to the root (the case id hashes them with the patient id).
        labels: the label of each row.
        splits: the split of each row, or ``None`` when the manifest has no split column.
        abs_paths: absolute image paths by image column.
        rows: the CSV line of each row.
        extra: the other columns to carry.

    Returns:
        ``(cases, id_map)``.
    """
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
    for col in abs_paths:
        cases[col] = abs_paths[col]
    cases["row"] = np.asarray(rows, dtype=np.int64)
    for col in extra:
        cases[col] = df[col].to_numpy(copy=True)
    return cases, id_map
