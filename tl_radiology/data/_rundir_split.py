"""The steps of :meth:`RunDir.create_split`: compute the split and its leakage, check the test cases, build the seal.

This module owns how a split is made and sealed, one named step each: checking the id map's place
(:func:`check_id_map`), splitting the cases and checking for leakage (:func:`compute_split`), refusing test cases
that cannot be decoded or loaded while nothing is sealed (:func:`check_test_cases`), building the case table,
``test.lock`` and ``split.json`` (:func:`case_table`, :func:`build_lock`, :func:`build_info`), and, under the
run-directory lock, comparing with an existing seal and writing the files and the ``sealed`` / ``resealed`` event
(:func:`compare_existing`, :func:`write_seal`). It also holds :class:`SplitResult`, what ``create_split`` returns.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from .._atomic import atomic_write_json, atomic_write_text
from .._errors import InputError, RunDirError
from .._options import look_up_option
from ._hashing import sha256_file
from ._leakage import check_leakage
from ._manifest import SPLITS
from ._rundir_files import _FORMAT, _HASH, _LOCK_FORMAT, _describe_differences, _now, _read_json, _same_seal, \
    _seal_entries
from ._seal import check_record, refuse_resplit, seal_fields
from ._split import split_cases

__all__ = ["SplitResult", "check_id_map", "compute_split", "check_test_cases", "case_table", "build_lock",
           "build_info", "compare_existing", "write_seal"]


class SplitResult:
    """What :meth:`RunDir.create_split` did.

    Attributes:
        state: ``"created"`` (a new split and seal), ``"unchanged"`` (the run directory already held this exact
            split and seal; nothing was written), or ``"resealed"`` (``force=True`` replaced a different split).
        leakage: the :class:`LeakageReport`.
        summary: cases, patients and cases per class for each split (see :meth:`RunDir.split_summary`).
        method: how the split was made.
    """

    def __init__(self, state, leakage, summary, method):
        self.state = state
        self.leakage = leakage
        self.summary = summary
        self.method = method

    def __repr__(self) -> str:
        return f"SplitResult(state={self.state!r}, cases={int(self.summary.loc['all', 'cases'])})"



def check_id_map(run_path: Path, id_map):
    """``id_map`` as a path (or ``None``), refused inside the run directory (run directories are meant to be shared)."""
    if id_map is None:
        return None
    id_map = Path(id_map)
    target = Path(os.path.normpath(id_map.absolute()))
    run = Path(os.path.normpath(run_path.absolute()))
    if target == run or run in target.parents:
        raise InputError(
            f"--write-id-map {id_map} is inside the run directory {run_path}; the id map holds raw "
            "patient ids and run directories are meant to be shared. Write it outside, e.g. "
            f"{run.parent / 'id_map.csv'}."
        )
    return id_map


def compute_split(manifest, *, val, test, seed, group, stratify, resplit, pixels, duplicates):
    """Split the manifest's cases and check the split for leakage: ``(frame, method, report)``."""
    frame, method = split_cases(manifest, val=val, test=test, seed=seed, group=group, stratify=stratify,
                                existing="replace" if resplit else "honour")
    leak_group = None if group is None or str(group).lower() in ("case", "none") else look_up_option(
        group, list(frame.columns), what="group column")
    report = check_leakage(frame, image_columns=manifest.image_columns, pixels=pixels, duplicates=duplicates,
                           root=manifest.root, group=leak_group)
    return frame, method, report


def check_test_cases(frame: pd.DataFrame, manifest, report, test_loader) -> None:
    """Refuse test images that cannot be decoded (or loaded by ``test_loader``) while nothing is sealed."""
    # A test image that cannot be decoded would be sealed as it is and found only by `evaluate`, after the
    # opening is recorded, and replacing it then breaks the seal; refuse it while nothing is sealed.
    sealed = frame[frame["split"] == "test"]
    where = {str(sealed.at[i, c]): (sealed.at[i, "row"], c) for i in sealed.index for c in manifest.image_columns}
    broken = [(where[str(p)], reason) for p, reason in report.unreadable if str(p) in where]
    if broken:
        raise InputError(
            f"{len(broken)} test image(s) cannot be decoded: "
            + "; ".join(f"line {row}, column {col!r}: {reason}" for (row, col), reason in broken[:10])
            + ". Nothing was sealed: replace or remove these files, then split again (once sealed, the test "
            "set is read only by `tl-radiology evaluate`)."
        )
    if test_loader is not None:
        _check_test_cases_load(frame, test_loader)


def case_table(frame: pd.DataFrame, manifest):
    """The ``splits.csv`` table (columns in the run's order) and its text: ``(table, splits_text)``."""
    columns = ["case_id", "patient", "label", "split", *manifest.image_columns, "row"]
    columns += [c for c in frame.columns if c not in columns]
    table = frame[columns]
    return table, table.to_csv(index=False, lineterminator="\n")


def build_lock(table: pd.DataFrame, manifest, method, report, key) -> dict:
    """The contents of ``test.lock`` (``sealed_at`` set when written): the test cases' labels and file hashes."""
    return {
        "format": _LOCK_FORMAT,
        "sealed_at": None,
        "hash_algorithm": _HASH,
        "split_method": method,
        "image_columns": list(manifest.image_columns),
        "num_test_cases": int((table["split"] == "test").sum()),
        "cases": _seal_entries(table[table["split"] == "test"], manifest.image_columns,
                               pixel_digests=report.pixel_digests),
        "audit": seal_fields(key),
    }


def build_info(table: pd.DataFrame, manifest, method, report, *, val, test, seed, group, stratify) -> dict:
    """The contents of ``split.json`` (``created_at`` set when written): how the split was made, counts, leakage."""
    return {
        "format": _FORMAT,
        "created_at": None,
        "manifest": manifest.source,
        "manifest_root": str(manifest.root),
        "task": manifest.task,
        "classes": list(manifest.classes),
        # Binary: the positive class (classes[1]); names for people (display only, not sealed).
        "positive_class": manifest.positive_class,
        "class_names": dict(manifest.class_names),
        "label_columns": list(manifest.label_columns),
        "image_columns": list(manifest.image_columns),
        "val": float(val),
        "test": float(test),
        "seed": int(seed),
        "group": group,
        "stratify": stratify,
        "split_method": method,
        "counts": {s: int((table["split"] == s).sum()) for s in SPLITS},
        "leakage": report.to_dict(),
    }


def compare_existing(run, splits_text: str, table: pd.DataFrame, lock: dict, *, force: bool):
    """Compare the new split with the one sealed in ``run`` (a RunDir; hold its lock): ``(state, previous)``.

    ``state`` is ``"created"`` (no seal yet), ``"unchanged"`` (the same split and seal) or ``"resealed"`` (a
    different one, replaced with ``force`` and a warning); ``previous`` is the old ``test.lock`` or ``None``.
    """
    if not run.has_split():
        # A missing test.lock in a folder with history is a deleted seal, never a fresh start.
        refuse_resplit(run.path, splits_text)
        return "created", None
    previous = _read_json(run.test_lock, "test.lock", run.path)
    check_record(run.path, previous)  # an altered record is not re-sealed over, even with force
    old_text = run.splits_csv.read_text(encoding="utf-8") if run.splits_csv.is_file() else ""
    if old_text == splits_text and _same_seal(previous.get("cases"), lock["cases"]):
        return "unchanged", previous
    differences = _describe_differences(old_text, table, previous, lock)
    if not force:
        raise RunDirError(
            f"Run directory {run.path} already has a sealed split (sealed {previous.get('sealed_at')})"
            f" and the new one differs: {differences}. Re-splitting would re-seal the test set. Use "
            "a new --out folder, or pass --force to replace the split and re-seal (recorded in "
            "audit.log)."
        )
    warnings.warn(
        f"Replacing the sealed split of {run.path} ({differences}); the test set is re-sealed and "
        "any earlier evaluation in this folder no longer matches it.",
        UserWarning,
        stacklevel=3,  # the caller of RunDir.create_split
    )
    return "resealed", previous


def write_seal(run, state: str, previous, splits_text: str, table: pd.DataFrame, lock: dict, info: dict, method,
               report) -> None:
    """Write ``splits.csv``, ``split.json``, ``test.lock`` (last) and the ``sealed`` / ``resealed`` event."""
    now = _now()
    lock["sealed_at"] = now
    info["created_at"] = now
    atomic_write_text(run.splits_csv, splits_text)
    atomic_write_json(run.split_json, info)
    atomic_write_json(run.test_lock, lock)
    counts = {s: int((table["split"] == s).sum()) for s in SPLITS}
    fields = {
        "num_cases": len(table),
        "counts": counts,
        "num_patients": int(table["patient"].nunique()),
        "test_lock_sha256": sha256_file(run.test_lock),
        "split_method": method,
        "duplicate_groups": len(report.duplicate_groups),
    }
    if state == "resealed":
        fields["previous_sealed_at"] = previous.get("sealed_at")
        fields["previous_openings"] = sum(
            1 for e in run.audit_events() if e.get("event") in ("opened", "reopened"))
    run._audit(state if state == "resealed" else "sealed", **fields)


def _check_test_cases_load(frame: pd.DataFrame, loader) -> None:
    """Every future test case loads with ``loader`` to the training cases' shape, before anything is sealed.

    A test image that decodes but does not fit the recipe (a multi-frame DICOM, other channels or size) would
    otherwise be sealed and found only by ``evaluate``, after the opening is recorded, and each retry would record
    another opening.
    """
    train = frame[frame["split"] == "train"]
    reference = train if len(train) else frame[frame["split"] == "val"]
    expected = tuple(int(v) for v in loader(reference.iloc[0]).shape) if len(reference) else None
    for _, row in frame[frame["split"] == "test"].iterrows():
        where = f"line {row['row']}" if "row" in row and pd.notna(row["row"]) else f"case {row['case_id']}"
        try:
            shape = tuple(int(v) for v in loader(row).shape)
        except InputError as exc:
            raise type(exc)(f"Test case at manifest {where} cannot be loaded by the recipe: {exc} Nothing was "
                            "sealed: fix or remove the case, then run again.") from None
        if expected is not None and shape != expected:
            raise InputError(
                f"Test case at manifest {where} loads to shape {shape}, the training cases to {expected}: the model "
                "could not take it. Nothing was sealed: fix or remove the case (or adjust the recipe), then run again."
            )

