"""Applying a run's model to new images with the run's exact preprocessing.

The model's ``model.json`` holds the ``CaseLoader`` config the training cases went through; ``predict`` rebuilds
that loader, so new images are read, windowed, stacked and resized exactly as the training images were. Nothing is
written to the run's case cache, and the sealed test set is neither opened nor readable this way: inputs that are
sealed test files of the run are refused until the final evaluation has completed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import atomic_write_text
from .._errors import InputError
from .._options import listed
from .._progress import status
from .._pseudonym import pseudonymize
from ..data import RunDir, load_arrays, loader_from_config, refuse_sealed_content, run_history
from . import _runfiles as files
from ._scoring import prediction_table

__all__ = ["predict"]


def _as_list(inputs) -> list[str]:
    if isinstance(inputs, (str, os.PathLike)):
        return [os.fspath(inputs)]
    items = [os.fspath(i) for i in inputs]
    if not items:
        raise InputError("predict needs at least one input: image files, DICOM series folders, or a manifest CSV.")
    return items


def _describe_columns(loader) -> str:
    columns = ", ".join(loader.image_columns)
    if loader.center_columns:
        columns += " and the centre columns " + ", ".join(loader.center_columns)
    return columns


def _manifest_cases(path: Path, loader, patient_column: str) -> tuple[pd.DataFrame, list[str]]:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"Cannot read manifest {path}: {exc}. Expected a CSV with a header row.") from None
    wanted = list(loader.image_columns) + list(loader.center_columns or ())
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise InputError(
            f"Manifest {path} has no column {', '.join(map(repr, missing))}; the model of this run takes "
            f"{_describe_columns(loader)} (as its training manifest). It has: {', '.join(frame.columns)}."
        )
    if frame.empty:
        raise InputError(f"Manifest {path} has no rows; expected one row per case to predict.")
    cases = pd.DataFrame({"row": np.arange(2, len(frame) + 2)})
    problems = []
    for column in loader.image_columns:
        resolved = []
        for line, value in zip(cases["row"], frame[column]):
            if not str(value).strip():
                problems.append(f"line {line}, column {column!r}: empty path")
                resolved.append("")
                continue
            full = Path(value) if Path(value).is_absolute() else path.parent / value
            if not full.exists():
                problems.append(f"line {line}, column {column!r}: {value!r} not found (looked for {full})")
            resolved.append(str(full.resolve()))
        cases[column] = resolved
        cases[f"input_{column}" if len(loader.image_columns) > 1 else "input"] = frame[column].to_numpy()
    if problems:
        shown = listed(problems, 10)
        raise InputError(f"Manifest {path} has {len(problems)} problem(s): {shown}. Fix the paths and run again.")
    for column in loader.center_columns or ():
        cases[column] = frame[column].to_numpy()
    keys = ["|".join(cases.loc[i, c] for c in loader.image_columns) for i in cases.index]
    cases.insert(0, "case_id", [pseudonymize(k, prefix="C") for k in keys])
    keep = ["case_id"]
    if patient_column in frame.columns:
        cases.insert(1, "patient", [pseudonymize(v, prefix="P") if str(v).strip() else "" for v in
                                    frame[patient_column]])
        keep.append("patient")
    keep += [c for c in cases.columns if c.startswith("input")] + ["row"]
    return cases, keep


def _file_cases(items: list[str], loader) -> tuple[pd.DataFrame, list[str]]:
    if len(loader.image_columns) > 1 or loader.center_columns:
        raise InputError(
            f"The model of this run takes {len(loader.image_columns)} image column(s) per case "
            f"({_describe_columns(loader)}); single files cannot say which is which. Give a manifest CSV with "
            "those columns instead: tl-radiology predict RUN_DIR cases.csv --out predictions.csv"
        )
    missing = [item for item in items if not Path(item).exists()]
    if missing:
        raise InputError(f"Input {missing[0]!r} not found" + (f" (and {len(missing) - 1} more)" if len(missing) > 1
                         else "") + "; give existing image files or DICOM series folders.")
    column = loader.image_columns[0]
    resolved = [str(Path(item).resolve()) for item in items]
    cases = pd.DataFrame({
        "case_id": [pseudonymize(r, prefix="C") for r in resolved],
        "input": items,
        column: resolved,
        "row": np.arange(1, len(items) + 1),  # the input's position on the command line
    })
    return cases, ["case_id", "input"]


def _refuse_sealed_inputs(run: RunDir, cases: pd.DataFrame, loader, *, from_manifest: bool) -> None:
    """Refuse sealed test images of the run before its final evaluation, by content (file and pixel hashes).

    A copy of a test image elsewhere, or re-saved with another header, is the same image: compared with the hashes
    in ``test.lock`` (no sealed file is opened for it). A run whose record was altered, or whose ``test.lock`` was
    deleted, is refused (:meth:`RunDir.sealed_test`).
    """
    if not run.has_split() and not run_history(run.path):
        return  # no split was ever sealed here
    run.sealed_test()  # the record is intact (raises naming what changed otherwise)
    if any(e.get("event") == "evaluated" for e in files.events_since_seal(run.audit_events())):
        return
    inputs = [(value, f"line {row}, column {column!r}" if from_manifest else "")
              for column in loader.image_columns for value, row in zip(cases[column], cases["row"])]
    refuse_sealed_content(run, inputs)


def predict(run_dir, inputs, *, out_csv, patient_column: str = "patient_id", batch_size: int = 32) -> pd.DataFrame:
    """Predict new cases with a run's model and preprocessing; write one CSV row per case.

    Inputs are either image files / DICOM series folders (for a model with one image column), or one manifest
    CSV with the run's image columns (required for multi-column models, e.g. triphasic CT; also the way to
    give centre columns). Paths in a manifest are relative to its folder. Each case is loaded with the loader
    saved in ``model.json`` (no case cache), predicted, and written with the decision threshold chosen on
    validation.

    Output columns: ``case_id`` (a pseudonym: keyed hash of the image paths), ``patient`` (pseudonym, when the
    manifest has a patient column), ``input`` (the path as the user gave it: the user's own input, kept so rows
    can be matched; one ``input_<column>`` per column for multi-column manifests), ``row`` (manifest line), then
    ``prob_<class>`` per class (regression: ``prediction``), ``predicted`` and the ``threshold`` used.

    Args:
        run_dir: the run directory with a saved model (``model.json``).
        inputs: a path or a list of paths: image files, series folders, or a single ``.csv`` manifest.
        out_csv: the CSV file to write (atomically).
        patient_column: a manifest's patient id column (pseudonymised in the output; optional).
        batch_size: images per prediction batch.

    Returns:
        The table written.

    Raises:
        InputError: inputs that do not exist, files given for a multi-column model, a manifest without the run's
            columns, images that load to another shape than the model takes, a model without a validation
            threshold (binary / multilabel).
        SealError: an input is a sealed test image of the run (same file bytes or decoded pixels, wherever it is)
            and the final evaluation has not completed.
        SealBrokenError: the run's seal record was altered or its test.lock deleted.
        RunDirError: no saved model, or a model file that changed since it was saved.

    Example:
        >>> predict("runs/a", ["new/case1.dcm", "new/case2.dcm"], out_csv="predictions.csv")  # doctest: +SKIP
    """
    out_csv = Path(out_csv)
    if out_csv.suffix.lower() != ".csv":
        raise InputError(f"--out {out_csv} must name a .csv file; received suffix {out_csv.suffix or '(none)'!r}.")
    run = RunDir(run_dir)
    trained = files.load_trained_model(run.path)
    if trained.loader_config is None:
        raise InputError(
            f"The model of {run.path} was saved without its loader, so new images cannot be preprocessed the way "
            "the training images were. Save it with to_trained_model(loader=loader)."
        )
    loader = loader_from_config(trained.loader_config)
    items = _as_list(inputs)
    if len(items) == 1 and items[0].lower().endswith(".csv"):
        cases, keep = _manifest_cases(Path(items[0]), loader, patient_column)
    elif any(item.lower().endswith(".csv") for item in items):
        raise InputError("Give either one manifest CSV or image files / series folders, not both.")
    else:
        cases, keep = _file_cases(items, loader)
    _refuse_sealed_inputs(run, cases, loader, from_manifest=len(items) == 1 and items[0].lower().endswith(".csv"))
    task, classes = trained.task.task, list(trained.classes or [])
    if task in ("binary", "multilabel") and not trained.threshold:
        raise InputError(
            f"The model of {run.path} has no decision threshold chosen on validation yet (model.json), so no label "
            "can be predicted. Finalise the run on validation first (tl-radiology run does it)."
        )
    status(f"predicting {len(cases)} case(s) with the model of {run.path}")
    x, _ = load_arrays(cases, loader, None)
    expected = trained.input_shape
    if expected is not None and list(x.shape[1:]) != list(expected):
        raise InputError(
            f"The inputs load as {'x'.join(map(str, x.shape[1:]))} images with the run's preprocessing, but the "
            f"model takes {'x'.join(map(str, expected))}. Give images like the training images (same modality, "
            "size and channels), or retrain with a Resize in the recipe."
        )
    probabilities = trained.predict_proba(x, batch_size=batch_size)
    table = prediction_table(cases, task, classes, probabilities, trained.threshold, keep=tuple(keep))
    atomic_write_text(out_csv, table.to_csv(index=False, lineterminator="\n"))
    return table
